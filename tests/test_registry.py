"""Every code has one definition (``fastmlp/_registry.py``), and an activation is one row + one branch.

Two checks:

- a scan of the package: no code is compared with a literal number, and the
  code of each elementwise activation is named only in ``_registry.py`` (its
  row) and ``backends/scalar.py`` (its branch in ``act`` and ``act_grad``),
  plus relu's vectorised fast path in ``backends/cpu/activations.py``.
  prelu and maxout are structural (extra parameters, another buffer layout,
  kernels of their own) and are named where their layout and kernels are.
  Docstrings and comments are not scanned.  The activations' *string* names
  also appear outside the registry, in code a new activation does not need:
  the estimators' per-activation parameters (``negative_slope``,
  ``elu_alpha``, ``prelu_init``, ``maxout_pieces``) and ``"relu"`` defaults,
  ``fastmlp.ops``'s one public function per activation (``ops.activation``
  takes any registered name) and ``fastmlp.onnx``'s graph of each activation.
- the proof by doing: a copy of the package gets a new activation (softsign)
  by exactly those two edits, and then fits and predicts with it on both
  backends (kernels run as Python, ``NUMBA_DISABLE_JIT=1``, and the CUDA
  backend in the simulator), with the gradient checked by finite differences.
"""

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import fastmlp
from fastmlp import _registry

PKG = Path(fastmlp.__file__).parent
REPO = PKG.parent
ELEMENTWISE = ["IDENTITY", "LOGISTIC", "TANH", "RELU", "LEAKY_RELU", "ELU"]
STRUCTURAL = ["PRELU", "MAXOUT"]
CODE_NAMES = ELEMENTWISE + STRUCTURAL + ["OUT_SOFTMAX", "OUT_LOGISTIC", "OUT_IDENTITY",
                                         "OUT_EXP", "SGD", "ADAM"]


def _py_files(*roots):
    for root in roots:
        yield from sorted(p for p in (REPO / root).rglob("*.py") if "__pycache__" not in p.parts)


def _code_names_used(path):
    """The code constants a module refers to (imports, names, attributes)."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.alias) and node.name in CODE_NAMES:
            used.add(node.name)
        elif isinstance(node, ast.Name) and node.id in CODE_NAMES:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in CODE_NAMES:
            used.add(node.attr)
    return used


def _is_code(node):
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name == "code" or name.endswith("_code") or name == "solver"


def _literal_codes(path):
    """Lines comparing a code (``code``, ``*_code``, ``solver``) with a number literal, and
    dicts mapping activation/output names to numbers."""
    names = set(_registry.ACTIVATIONS) | set(_registry.OUTPUTS)
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_code(s) for s in sides) and any(
                    isinstance(s, ast.Constant) and type(s.value) is int for s in sides):
                bad.append(node.lineno)
        elif isinstance(node, ast.Dict):
            if any(isinstance(k, ast.Constant) and k.value in names for k in node.keys) and all(
                    isinstance(v, ast.Constant) and type(v.value) is int for v in node.values):
                bad.append(node.lineno)
    return bad


def test_codes_are_defined_once_and_never_written_as_numbers():
    # the names are distinct codes and the tables use them
    acts = [getattr(_registry, n) for n in ELEMENTWISE + STRUCTURAL]
    assert sorted(acts) == sorted(a.code for a in _registry.ACTIVATIONS.values())
    assert len(set(acts)) == len(acts)
    assert len(set(_registry.OUTPUTS.values())) == len(_registry.OUTPUTS)
    assert set(_registry.SOLVERS.values()) == {_registry.SGD, _registry.ADAM}
    offenders = {str(p.relative_to(REPO)): lines
                 for p in _py_files("fastmlp", "tests", "asv_bench", "benchmarks")
                 if (lines := _literal_codes(p))}
    assert offenders == {}


def test_elementwise_activation_codes_are_named_only_in_the_registry_and_scalar():
    where = {n: set() for n in CODE_NAMES}
    for p in _py_files("fastmlp"):
        for n in _code_names_used(p):
            where[n].add(p.relative_to(PKG).as_posix())
    row_and_branch = {"_registry.py", "backends/scalar.py"}
    for n in ELEMENTWISE:
        # relu (in place) and logistic (scikit-learn's rounding order) have loops of their own
        allowed = row_and_branch | ({"backends/cpu/activations.py"}
                                    if n in ("RELU", "LOGISTIC") else set())
        # IDENTITY is also the "no activation" of the output layer in both training loops
        allowed |= {"backends/cuda/train.py", "backends/cpu/train.py"} if n == "IDENTITY" else set()
        assert where[n] <= allowed, (n, where[n] - allowed)
        assert row_and_branch <= where[n] or n == "IDENTITY", n  # identity is the fall-through
    for n in STRUCTURAL:
        # _persist.py checks a loaded file's structure (maxout's pieces, prelu's slopes)
        assert where[n] <= {"_registry.py", "backends/scalar.py", "backends/layout.py", "ops.py",
                            "_persist.py"} | {
            f for f in where[n] if f.startswith(("backends/cpu/", "backends/cuda/"))}


# --- the proof by doing ------------------------------------------------------------------------

ROW = '    "softsign": Activation(SOFTSIGN, "H"),\n'
EDITS = {
    "_registry.py": [
        ("IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU, PRELU, ELU, MAXOUT = range(8)",
         "IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU, PRELU, ELU, MAXOUT, SOFTSIGN = range(9)"),
        ('    "maxout": Activation(MAXOUT, "argmax"),\n',
         '    "maxout": Activation(MAXOUT, "argmax"),\n' + ROW),
    ],
    "backends/scalar.py": [
        ("from .._registry import ELU,", "from .._registry import SOFTSIGN, ELU,"),
        ("    return z  # identity\n",
         "    if code == SOFTSIGN:\n        return z / (1.0 + abs(z))\n    return z  # identity\n"),
        ("    return one  # identity\n",
         "    if code == SOFTSIGN:\n        return (one - abs(h)) ** 2\n    return one  # identity\n"),
    ],
}

CHECK = textwrap.dedent('''
    import warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from fastmlp import MLPClassifier, available_backends
    from fastmlp._registry import OUTPUTS
    from fastmlp.backends import cpu
    from fastmlp.backends.layout import make_layout, pack

    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 3))
    y = np.arange(24) % 3
    kw = dict(activation="softsign", hidden_layer_sizes=(4,), max_iter=2, random_state=0,
              dtype="float64")
    clf = MLPClassifier(backend="cpu", **kw).fit(X, y)
    (W1, W2), (b1, b2) = clf.coefs_, clf.intercepts_
    Z1 = X @ W1 + b1
    O = (Z1 / (1 + np.abs(Z1))) @ W2 + b2
    P = np.exp(O - O.max(axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), P / P.sum(axis=1, keepdims=True), rtol=1e-12)

    spec = make_layout(3, (4,), 3, "softsign", 0.0, 1, OUTPUTS["softmax"], np.float64)
    theta = pack(spec, clf.coefs_, clf.intercepts_)
    Y, sw = np.zeros((0, 3)), np.zeros(0)
    yl = y.astype(np.int64)
    loss, grad = cpu.loss_grad(spec, theta, X, Y, yl, sw, 0.0)
    fd = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        fd[i] = (cpu.loss_grad(spec, theta + e, X, Y, yl, sw, 0.0)[0]
                 - cpu.loss_grad(spec, theta - e, X, Y, yl, sw, 0.0)[0]) / 2e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)

    assert "cuda" in available_backends()
    g = MLPClassifier(backend="cuda", **kw).fit(X, y)
    for a, b in zip(g.coefs_ + g.intercepts_, clf.coefs_ + clf.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    print("softsign ok")
''')


def test_a_new_activation_is_one_row_and_one_branch(tmp_path):
    copy = tmp_path / "fastmlp"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__", "*.nb[ic]"))
    for name, edits in EDITS.items():
        text = (copy / name).read_text()
        for old, new in edits:
            assert text.count(old) == 1, (name, old)
            text = text.replace(old, new)
        (copy / name).write_text(text)
    changed = [p.relative_to(copy).as_posix() for p in sorted(copy.rglob("*.py"))
               if p.read_bytes() != (PKG / p.relative_to(copy)).read_bytes()]
    assert changed == sorted(EDITS)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), NUMBA_DISABLE_JIT="1",
               NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "softsign ok" in run.stdout
