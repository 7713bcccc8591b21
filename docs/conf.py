"""Sphinx configuration of the fastmlp site.

Build (warnings are errors)::

    pip install -e ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

The gallery (``examples/`` -> ``docs/auto_examples/``) runs at build time; the
API pages (``docs/api/generated/``) and the benchmark table
(``docs/_generated/``) are generated too.  All three are git-ignored.
"""

import importlib
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

import fastmlp  # noqa: E402  (the installed package, e.g. ``pip install -e .``)

# -- project -----------------------------------------------------------------

project = "fastmlp"
author = "the fastmlp developers"
copyright = "the fastmlp developers"
version = release = fastmlp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated"]
root_doc = "index"
default_role = "literal"   # `x` renders as code, never as a broken cross-reference
nitpicky = False
pygments_style = "sphinx"

# -- API reference -----------------------------------------------------------

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"          # the numpydoc sections carry the types

numpydoc_show_class_members = False  # autosummary pages list the methods instead
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()   # the docstrings are checked by tests/test_docs.py
numpydoc_xref_param_type = False

# -- gallery -----------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("fastmlp",),
    "backreferences_dir": "api/generated/backreferences",
    "reference_url": {"fastmlp": None},
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    "abort_on_example_error": True,
    "run_stale_examples": False,
    "min_reported_time": 1,
}

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"fastmlp {release}"
html_static_path = ["_static"]
html_css_files = ["fastmlp.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # the gallery pages keep their width for code and figures (their download
    # links are at the bottom of each page as well)
    "secondary_sidebar_items": {
        "**": ["page-toc", "sg_download_links", "sg_launcher_links"],
        **{f"auto_examples/{p.stem}": [] for p in (ROOT / "examples").glob("plot_*.py")},
        "user_guide/performance": [],   # room for the benchmark table
    },
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "install": [], "auto_examples/index": []}

# -- generated pieces --------------------------------------------------------
# Written here, before Sphinx reads the sources, so that autosummary sees them.

GENERATED = DOCS / "_generated"
GENERATED.mkdir(exist_ok=True)


def _write_if_changed(path, text):
    """Rewrite ``path`` only when its text changes (keeps incremental builds cheap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _benchmark_table():
    """The measured table of benchmarks/results.json as a reST list-table."""
    res = json.loads((ROOT / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    cols = ["fastmlp", "scikit-learn", "PyTorch", "BLAS floor"]
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 30 10 10 10 10 10 10 10",
        "",
        "   * - case",
    ]
    lines += [f"     - {c}" for c in cols]
    lines += ["     - sklearn / fastmlp", "     - PyTorch / fastmlp", "     - fastmlp / floor"]

    def fmt(time):
        return "—" if time is None else f"{time[0]:g} {time[1]}"

    for case in res["cases"]:
        t = case["times"]
        lines.append(f"   * - {case['label']}")
        lines += [f"     - {fmt(t.get(c))}" for c in cols]
        r = case.get("ratios", {})
        for key in ("scikit-learn / fastmlp", "PyTorch / fastmlp", "fastmlp / floor"):
            lines.append(f"     - {r[key]:.2f}×" if key in r else "     -")
    m, mem, start = res["machine"], res["memory"], res["startup"]
    lines += [
        "",
        f"{mem['label'][0].upper()}{mem['label'][1:]}: fastmlp {fmt(mem['fastmlp'])}, "
        f"scikit-learn {fmt(mem['scikit-learn'])}. "
        f"{start['label'][0].upper()}{start['label'][1:]}: "
        f"{fmt(start['numba cache warm'])} with numba's cache warm, "
        f"{fmt(start['numba cache cold'])} cold (everything compiles).",
        "",
        f"Measured {m['date']} with ``{res['command']}`` ({res['method']}) on {m['summary']}.",
        "",
    ]
    return "\n".join(lines)


_write_if_changed(GENERATED / "benchmark_table.rst", _benchmark_table())

# Modules that are planned or being written: their API page is built from
# their ``__all__`` when they import, and says "not part of this version" when
# the module does not exist.  Once one has landed, give it a hand-written
# section in api/index.rst and take it off this list.  ``tests/test_docs_site.py`` keeps this list and ``fastmlp``'s
# modules in step.
OPTIONAL_MODULES = {
    "fastmlp.dask": "Distributed training with dask",
}


def _optional_module_page(modname, title):
    lines = [title, "=" * len(title), ""]
    try:
        module = importlib.import_module(modname)
        names = list(module.__all__)
    except ModuleNotFoundError as exc:
        if exc.name != modname:
            raise RuntimeError(f"{modname} exists but cannot be imported: {exc}. "
                               "Install the [docs] extra, which brings its dependencies.")
        lines += [f"``{modname}`` is not part of this version of fastmlp.", ""]
        return "\n".join(lines)
    lines += [f".. automodule:: {modname}", "   :no-members:", "", f".. currentmodule:: {modname}",
              "", ".. autosummary::", "   :toctree: generated/", ""]
    lines += [f"   {n}" for n in names]
    return "\n".join(lines) + "\n"


for _mod, _title in OPTIONAL_MODULES.items():
    _write_if_changed(DOCS / "api" / f"{_mod.replace('.', '_')}.rst",
                      _optional_module_page(_mod, _title))

# -- docstrings written as plain text ------------------------------------------
# Two spellings that read well in a terminal are reST markup: ``coefs_`` written
# bare is a link to a target that does not exist, and ``|Z|`` is a substitution.
# Both stop a ``-W`` build.  This hook, run before numpydoc, quotes them in prose
# lines; parameter lines ("name : type"), doctests and literal blocks are left
# alone.  The docstrings themselves would be better off writing ``coefs_`` and
# ``|Z|`` in double backquotes.

import re  # noqa: E402

# a bare word ending in "_", where docutils would read a reference: after a space or
# an opening bracket or quote, before a space or closing punctuation
_TRAILING_UNDERSCORE = re.compile(
    r"""(?:(?<=^)|(?<=[\s(\["'{]))([A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?_)(?=[\s\-.,:;!?)\]}"']|$)""")
_BARS = re.compile(r"""(?:(?<=^)|(?<=[\s(\["'{]))\|([A-Za-z0-9_]+)\|(?=[\s\-.,:;!?)\]}"']|$)""")
_PARAM_LINE = re.compile(r"^\s*[\w\\*]+(,\s*[\w\\*]+)*(,\s*\.\.\.)?\s*:(\s|$)")


def _quote_plain_text_traps(app, what, name, obj, options, lines):
    literal_indent = None   # indentation of the line that opened a literal block
    in_doctest = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if stripped and indent <= literal_indent:
                literal_indent = None
            else:
                continue
        if stripped.startswith((">>>", "...")):
            in_doctest = True
            continue
        if in_doctest:
            if stripped:
                continue
            in_doctest = False
        if stripped.endswith("::"):
            literal_indent = indent
        if _PARAM_LINE.match(line):
            continue
        line = _TRAILING_UNDERSCORE.sub(r"``\1``", line)
        lines[i] = _BARS.sub(r"``|\1|``", line)


def setup(app):
    app.connect("autodoc-process-docstring", _quote_plain_text_traps, priority=400)
