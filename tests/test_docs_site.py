"""The documentation site keeps up with the package.

The API reference (``docs/api/index.rst``) must name every public name (the
``__all__`` of ``fastmlp``, ``fastmlp.ops``, ``fastmlp.plotting`` and any other
public module), and
the benchmark results file the gallery draws must hold only numbers that
``benchmarks/RESULTS.md`` states.  The site itself is built by ``.ci/run``
(``python -m sphinx -W -b html docs docs/_build/html``).
"""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

import fastmlp
import fastmlp.ops as ops
import fastmlp.plotting as plotting

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api" / "index.rst"


def optional_modules():
    """``OPTIONAL_MODULES`` of docs/conf.py, read without running conf.py."""
    tree = ast.parse((ROOT / "docs" / "conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "OPTIONAL_MODULES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("docs/conf.py has no OPTIONAL_MODULES")


def documented_names(text):
    """Fully qualified names that the API page documents: autosummary entries
    (under the current ``.. currentmodule::``) and ``.. py:*::`` directives."""
    names, module, in_autosummary = set(), None, False
    for line in text.splitlines():
        stripped = line.strip()
        if m := re.match(r"\.\. currentmodule:: (\S+)", stripped):
            module, in_autosummary = m.group(1), False
        elif m := re.match(r"\.\. (?:automodule|module):: (\S+)", stripped):
            names.add(m.group(1))
        elif m := re.match(r"\.\. py:\w+:: ([\w.]+)", stripped):
            names.add(f"{module}.{m.group(1)}" if module else m.group(1))
        elif stripped.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary:
            if not stripped or stripped.startswith(":"):
                continue
            if not line.startswith("   "):       # the directive's content has ended
                in_autosummary = False
                continue
            names.add(f"{module}.{stripped.lstrip('~')}")
    return names


def public_modules():
    """fastmlp's public modules (``fastmlp/<name>.py`` without a leading underscore)."""
    return sorted(f"fastmlp.{p.stem}" for p in (ROOT / "fastmlp").glob("*.py")
                  if not p.name.startswith("_"))


def public_names():
    out = [f"fastmlp.{n}" for n in fastmlp.__all__ if n not in ("__version__",)]
    out += [f"fastmlp.ops.{n}" for n in ops.__all__]
    out += [f"fastmlp.plotting.{n}" for n in plotting.__all__]
    # every other public module with a hand-written section (not OPTIONAL_MODULES,
    # whose pages conf.py generates from their __all__)
    for modname in public_modules():
        if modname in ("fastmlp.ops", "fastmlp.plotting") or modname in optional_modules():
            continue
        try:
            module = importlib.import_module(modname)
        except ImportError:     # its optional dependencies are not installed here
            continue
        out += [f"{modname}.{n}" for n in getattr(module, "__all__", [])]
    return out


@pytest.mark.parametrize("name", public_names())
def test_public_name_is_in_the_api_reference(name):
    assert name in documented_names(API.read_text(encoding="utf-8")), (
        f"{name} is public but missing from docs/api/index.rst: add it to an autosummary "
        "list there")


def test_the_parser_sees_what_it_should():
    text = ("Title\n\n.. currentmodule:: pkg\n\n.. autosummary::\n   :toctree: generated/\n\n"
            "   Foo\n   bar\n\nNot an entry\n\n.. py:class:: Alias\n")
    assert documented_names(text) == {"pkg.Foo", "pkg.bar", "pkg.Alias"}


def test_every_public_module_has_a_reference_page():
    documented = documented_names(API.read_text(encoding="utf-8")) | set(optional_modules())
    missing = [m for m in public_modules() if m not in documented]
    assert not missing, (f"public modules without an API page: {missing}; document them in "
                         "docs/api/index.rst or list them in OPTIONAL_MODULES of docs/conf.py")


def test_optional_modules_point_at_toctree_entries():
    text = API.read_text(encoding="utf-8")
    for module in optional_modules():
        assert re.search(rf"^\s+{module.replace('.', '_')}\s*$", text, re.M), module


def _numbers(obj):
    """Every number in the results file, except inside its free-text fields."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield float(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _numbers(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _numbers(value)


def test_benchmark_results_file_holds_only_measured_numbers():
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    stated_text = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    stated = {float(x) for x in re.findall(r"\d+(?:\.\d+)?", stated_text)}
    invented = [x for x in _numbers(results) if x not in stated]
    assert not invented, f"numbers in benchmarks/results.json that RESULTS.md does not state: {invented}"
    machine = results["machine"]
    for key in ("platform", "python", "numpy", "numba", "scikit-learn"):
        assert machine[key] in stated_text, key
    for case in results["cases"]:
        assert set(case["times"]) == set(results["contenders"]), case["id"]
        for value, unit in case["times"].values():
            assert unit in {"s", "ms", "µs"}
