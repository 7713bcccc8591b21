"""Hostile input for every public ``fastmlp.ops`` function (issue #13), fuzzed with hypothesis.

Each drawn call mixes random shapes (0 rows and 0 columns included), dtypes (float32, float64,
ints, bool, float16, long double, byte-swapped, object, complex, str, nested and ragged lists),
layouts (Fortran, strided, reversed, read-only, broadcast, unaligned), values (NaN, +-inf, huge,
tiny, subnormal) and parameters, well formed or not.  The drawing code knows the documented
contract of ``ops``, so every case is one of

- VALID: the call must return arrays of the documented dtype and shape that match the NumPy
  oracle of ``reference.py`` (computed in float64 from the very values the kernel saw), within a
  tolerance scaled by the magnitudes involved, and must leave its inputs untouched;
- INVALID: the call must raise ``ValueError`` or ``TypeError``;
- EITHER: a corner the contract leaves open: one of the two above.

Any other outcome -- another exception type, a wrong number, a crash -- fails.  The hypothesis
run happens in a child process (``python tests/test_ops_fuzz.py``): an out-of-bounds write that
aborts or segfaults the interpreter is then a failed test here, with the child's output and the
last call it started shown, not a dead test session.  The run is derandomized (the same examples
every time, no example database) with ``FASTMLP_FUZZ_EXAMPLES`` examples per property (default
150); ``python tests/test_ops_fuzz.py --seed N --examples M`` explores other examples.

After the run the child also checks that every signature the kernels were compiled for takes
C-contiguous, aligned, writeable arrays only: hostile layouts are normalised in ``ops`` and never
reach (or recompile) a kernel.
"""

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = int(os.environ.get("FASTMLP_FUZZ_EXAMPLES", "150"))
CHILD_TIMEOUT_S = 180  # a heap corrupted by an out-of-bounds write can hang the child


# =================================================================================================
# the pytest side: run the child, report what it says
# =================================================================================================


def _run_child(tmp_path, *args):
    last = tmp_path / "last_call.txt"
    env = dict(os.environ, FASTMLP_FUZZ_LAST=str(last), PYTHONFAULTHANDLER="1")
    cmd = [sys.executable, os.path.join(HERE, "test_ops_fuzz.py"), *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        last_call = last.read_text() if last.exists() else "(none recorded)"
        pytest.fail(f"the fuzz child hung (killed after {CHILD_TIMEOUT_S} s; a heap corrupted "
                    f"by an out-of-bounds write can do that)\n"
                    f"--- last calls started, the most recent last ---\n{last_call}\n"
                    f"--- child output (tail) ---\n{out[-20000:]}", pytrace=False)
    out = proc.stdout + proc.stderr
    rc = proc.returncode
    if rc != 0:
        if rc < 0:
            how = f"was killed by signal {-rc} ({signal.Signals(-rc).name})"
        else:
            how = f"exited with status {rc}"
        last_call = last.read_text() if last.exists() else "(none recorded)"
        pytest.fail(f"the fuzz child {how} after {time.perf_counter() - t0:.1f} s\n"
                    f"--- last calls started, the most recent last ---\n{last_call}\n"
                    f"--- child output (tail) ---\n{out[-20000:]}", pytrace=False)
    return out


def test_ops_fuzz(tmp_path):
    """Hand-written hostile calls, then every property with EXAMPLES examples, in a child."""
    out = _run_child(tmp_path, "--examples", str(EXAMPLES))
    assert "all properties passed" in out, out[-5000:]


# --- messages: checked in this process (none of these reaches a kernel) -------------------------


def test_maxout_grad_mismatch_message():
    from fastmlp import ops
    Z = np.ones((2, 8))
    with pytest.raises(ValueError, match=r"dH has 3 columns but Z has 8 = 4 units x 2 pieces"):
        ops.activation_grad("maxout", np.ones((2, 3)), Z, pieces=2, argmax=np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"pieces"):
        ops.activation_grad("maxout", np.ones((2, 1)), np.ones((2, 4)), pieces=10**6,
                            argmax=np.zeros((2, 1), int))
    with pytest.raises(ValueError, match=r"argmax .*\[0, 2\)"):
        ops.activation_grad("maxout", np.ones((2, 4)), Z, pieces=2, argmax=np.full((2, 4), 2))


def test_edge_case_messages():
    from fastmlp import ops
    with pytest.raises(ValueError, match="sample_weight .*sum"):
        ops.squared_error(np.ones((2, 2)), np.ones((2, 2)), sample_weight=np.zeros(2))
    with pytest.raises(ValueError, match="0 rows"):
        ops.softmax_cross_entropy(np.ones((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        ops.dense_forward(np.ones((3, 2)), np.ones((2, 4)), np.ones((2, 2)))
    with pytest.raises(TypeError, match="Z .*object"):
        ops.relu(np.array([[1.0, None]], dtype=object))
    with pytest.raises(ValueError, match="cache"):
        ops.dense_backward(np.ones((3, 4)), {})
    assert ops.relu(np.ones((0, 3))).shape == (0, 3)
    H, cache = ops.dense_forward(np.ones((3, 2)), np.ones((2, 4)), np.ones(4))
    cache["X"] = np.asfortranarray(cache["X"])
    dW, db, dX = ops.dense_backward(np.ones((3, 4)), cache)
    np.testing.assert_array_equal(dW, np.full((2, 4), 3.0))


# =================================================================================================
# the child side
# =================================================================================================

VALID, INVALID, EITHER = "valid", "invalid", "either"


class _LastCall:
    """Keeps the last few calls (the one in progress last) in a file, so a crash can name them.

    Several, not one: a heap corrupted by an out-of-bounds write may only abort or hang the
    process a few calls later.
    """

    KEEP = 8

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if path else None
        self.recent = []

    def set(self, text):
        if self.fd is not None:
            self.recent = (self.recent + [text])[-self.KEEP:]
            data = "\n\n".join(self.recent).encode("utf-8", "replace")
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)


def _describe(v):
    if isinstance(v, np.ndarray):
        flags = "".join(c for c, f in (("C", "C_CONTIGUOUS"), ("F", "F_CONTIGUOUS"),
                                       ("W", "WRITEABLE"), ("A", "ALIGNED")) if v.flags[f])
        head = f"ndarray(shape={v.shape}, dtype={v.dtype.str}, strides={v.strides}, flags={flags}"
        if v.size <= 24:
            with np.printoptions(precision=17, threshold=30):
                head += f", values={v.tolist()!r}"
        return head + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        r = repr(v)
        return r if len(r) < 400 else r[:400] + "..."
    return repr(v)


def _call_text(fname, args, kwargs, status):
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return f"[{status}] ops.{fname}(\n    " + ",\n    ".join(parts) + ")"


# --- tolerances and comparison -------------------------------------------------------------------


def _eps(cdt):
    return float(np.finfo(cdt).eps)


def _tiny(cdt):
    return float(np.finfo(cdt).tiny)


def _cdt_of(a):
    """The computation dtype ops promises for a float-valued input: float32 stays, else float64."""
    return np.float32 if a.dtype.kind == "f" and a.dtype.itemsize == 4 else np.float64


def _cast(a, cdt):
    """What the kernel sees: the input as an array of the computation dtype (rows for 1-D)."""
    a = np.asarray(a)
    with np.errstate(all="ignore"):
        a = a.astype(cdt)
    return a[None, :] if a.ndim == 1 else a


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _close(what, got, ref, tol, out_dtype=None):
    """got == ref elementwise: the same NaNs, the same infinities, finite ones within tol.

    ref is computed in float64; with out_dtype it is first rounded to the dtype the kernel writes
    (so an exact result beyond float32's range is compared as the infinity it rounds to).
    """
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    if out_dtype is not None:
        with np.errstate(all="ignore"):
            ref = ref.astype(out_dtype).astype(np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, reference shape {ref.shape}"
    g = got.astype(np.float64)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), g.shape)
    gn, rn = np.isnan(g), np.isnan(ref)
    with np.errstate(all="ignore"):
        inf = np.isinf(g) | np.isinf(ref)
        diff = np.abs(g - ref)
        bad = (gn != rn) | (~gn & ~rn & inf & (g != ref)) | (~gn & ~rn & ~inf & (diff > tol))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])[:g.ndim]
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ from the "
                             f"reference; first at {idx}: got {g[idx]!r}, reference {ref[idx]!r}, "
                             f"tolerance {tol[idx]!r}")


def _same_inputs(before, after_args):
    for i, (snap, a) in enumerate(zip(before, after_args)):
        if snap is not None:
            assert np.array_equal(snap, a, equal_nan=True), f"argument {i} was modified"


def _snapshot(args):
    out = []
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind in "biuf":
            out.append(a.copy())
        else:
            out.append(None)
    return out


# --- drawing -------------------------------------------------------------------------------------

FLOAT_DTYPES = [np.float64, np.float32]
OTHER_NUMERIC = [np.int64, np.int32, np.uint8, np.bool_, np.float16, np.longdouble, ">f8", ">f4",
                 ">i4"]
NON_NUMERIC = [object, np.complex128, np.str_, "datetime64[s]"]
LAYOUTS = ["C", "C", "C", "F", "strided", "reversed", "readonly", "broadcast", "unaligned", "list"]
ACT_NAMES = ["identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu",
             "maxout"]
BAD_NAMES = ["swish", "", "RELU", 3, None, b"relu"]
# Lipschitz bound of each activation given its parameter (for the tolerance of what follows it).
LIPSCHITZ = {"identity": 1.0, "logistic": 0.25, "sigmoid": 0.25, "tanh": 1.0, "relu": 1.0,
             "maxout": 1.0}


class Draw:
    """Small helpers over hypothesis' ``data``; bulk values come from a drawn NumPy seed."""

    def __init__(self, data):
        import hypothesis.strategies as st
        self.st = st
        self.data = data
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))

    def pick(self, seq, label=None):
        return self.data.draw(self.st.sampled_from(seq), label=label)

    def int(self, lo, hi, label=None):
        return self.data.draw(self.st.integers(lo, hi), label=label)

    def coin(self, p_true=0.5):
        return self.data.draw(self.st.integers(0, 999)) < int(1000 * p_true)

    # values ------------------------------------------------------------------------------------

    def values(self, shape, cdt, extreme=False):
        """float64 values for an array computed in cdt: mostly normal, with specials sprinkled."""
        big = 1e9 if cdt == np.float32 else 1e60
        top = float(np.finfo(cdt).max) if extreme else big
        mode = self.pick(["normal", "normal", "specials", "wide", "ints", "tiny"])
        rng = self.rng
        if mode == "ints":
            v = rng.integers(-4, 5, shape).astype(np.float64)
        elif mode == "wide":
            v = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, math.log10(big), shape)
        elif mode == "tiny":
            v = rng.standard_normal(shape) * float(np.finfo(cdt).tiny) * rng.uniform(0, 4, shape)
        else:
            v = 3.0 * rng.standard_normal(shape)
        v = np.asarray(v, dtype=np.float64)
        if mode == "specials" and v.size:
            pool = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, big, -big, top, -top,
                             float(np.finfo(cdt).tiny), float(np.finfo(cdt).smallest_subnormal)])
            mask = rng.random(shape) < rng.uniform(0.1, 0.9)
            v = np.where(mask, rng.choice(pool, size=shape), v)
        return np.asarray(v, dtype=np.float64)

    def as_dtype(self, v, dtype):
        dt = np.dtype(dtype)
        with np.errstate(all="ignore"):
            if dt.kind in "iu":
                info = np.iinfo(dt)
                w = np.nan_to_num(np.round(v), nan=0.0, posinf=info.max, neginf=info.min)
                return np.clip(w, max(info.min, -1e6), min(info.max, 1e6)).astype(dt)
            if dt.kind == "b":
                return v > 0
            if dt.kind == "f" and dt.itemsize == 2:
                return np.clip(v, -6e4, 6e4).astype(dt)
            if dt.kind == "c":
                return (v + 0.5j).astype(dt)
            if dt.kind == "U":
                return v.astype(str)
            if dt.kind == "M":
                return np.zeros(v.shape, dtype=dt)
            return v.astype(dt)

    def layout(self, a):
        kind = self.pick(LAYOUTS, label="layout")
        if a.ndim == 0:
            return a.tolist() if kind == "list" else a
        if kind == "F":
            return np.asfortranarray(a)
        if kind == "strided":
            big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
            view = big[tuple(slice(1, None, 2) for _ in a.shape)]
            view[...] = a
            return view
        if kind == "reversed" and a.ndim:
            r = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
            return r[(slice(None, None, -1),) * a.ndim]
        if kind == "readonly":
            a = a.copy()
            a.flags.writeable = False
            return a
        if kind == "broadcast" and a.ndim and a.shape[0] > 1:
            return np.broadcast_to(a[:1], a.shape)
        if kind == "unaligned" and a.dtype.itemsize > 1 and a.dtype.kind != "O":
            buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
            u = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
            u[...] = a
            return u
        if kind == "list" and a.dtype.kind in "biufO":
            return a.tolist()
        return a

    def array(self, shape, cdt=None, extreme=False, dtypes=None, label=None):
        """An argument of the given shape: its dtype drawn (mostly float), values, then layout.

        cdt sets the value range (so that values computed in that dtype do not overflow where
        the float64 oracle would not); None draws it.
        """
        if dtypes is None:
            r = self.int(0, 99)
            dtypes = FLOAT_DTYPES if r < 80 else OTHER_NUMERIC if r < 95 else NON_NUMERIC
        dtype = self.pick(dtypes, label=label)
        if cdt is None:
            cdt = _cdt_of(np.empty(0, dtype=dtype)) if np.dtype(dtype).kind in "biuf" else np.float64
        a = self.as_dtype(self.values(shape, cdt, extreme), dtype)
        return self.layout(a)

    def ragged(self):
        return [[1.0, 2.0], [3.0]]

    def weights(self, n, cdt):
        """sample_weight: None, good weights, or bad ones (wrong shape, negative, NaN, zero sum)."""
        kind = self.pick(["none"] * 4 + ["good"] * 4 + ["zeros_some", "all_zero", "negative",
                          "nan", "inf", "huge", "wrong_len", "2d", "object", "bool", "int"],
                         label="weights")
        rng = self.rng
        if kind == "none":
            return None
        w = rng.uniform(0.1, 3.0, n)
        if kind == "zeros_some" and n:
            w[rng.random(n) < 0.5] = 0.0
        elif kind == "all_zero":
            w[:] = 0.0
        elif kind == "negative" and n:
            w[rng.integers(0, n)] = -1.0
        elif kind == "nan" and n:
            w[rng.integers(0, n)] = np.nan
        elif kind == "inf" and n:
            w[rng.integers(0, n)] = np.inf
        elif kind == "huge":
            w *= 1e30 if cdt == np.float32 else 1e200
        elif kind == "wrong_len":
            w = rng.uniform(0.1, 3.0, n + self.pick([1, -1]) if n else 1)
        elif kind == "2d":
            w = w[:, None]
        elif kind == "object":
            w = w.astype(object)
        elif kind == "bool":
            w = w > 1.0
        elif kind == "int":
            w = np.round(w).astype(np.int64)
        if kind in ("good", "huge", "zeros_some") and self.coin(0.5):
            with np.errstate(over="ignore"):
                w = w.astype(self.pick(FLOAT_DTYPES))
        return self.layout(w) if isinstance(w, np.ndarray) else w

    def labels(self, n, k):
        kind = self.pick(["good"] * 8 + ["float_int", "float_frac", "nan", "neg", "big",
                          "bool", "object", "2d", "wrong_len", "uint", "list"], label="labels")
        y = self.rng.integers(0, max(k, 1), n)
        if kind == "float_int":
            return y.astype(np.float64)
        if kind == "float_frac":
            return y + 0.5
        if kind == "nan":
            return np.where(self.rng.random(n) < 0.5, np.nan, y)
        if kind == "neg" and n:
            y[self.rng.integers(0, n)] = -1
        if kind == "big" and n:
            y[self.rng.integers(0, n)] = self.pick([k, k + 1, 2**31, 2**62])
        if kind == "bool":
            return y > 0
        if kind == "object":
            return y.astype(object)
        if kind == "2d":
            return y[:, None]
        if kind == "wrong_len":
            return self.rng.integers(0, max(k, 1), n + 1)
        if kind == "uint":
            return y.astype(np.uint16)
        if kind == "list":
            return y.tolist()
        return self.layout(y.astype(self.pick([np.int64, np.int32, np.int8])))

    def real_param(self, valid_pool):
        """A float hyper-parameter: one of valid_pool, or something that is not a finite real."""
        return self.pick(list(valid_pool) + [-1.0, np.nan, np.inf, "0.1", None, True,
                                             np.array([0.1, 0.2]), 1j, np.array(0.5)])

    def pieces(self):
        return self.pick([2, 2, 3, 4, np.int64(3), 1, 0, -2, 2.5, "2", True, None, 10**6, 10**30])


def _label_status(y, n, k):
    """VALID / INVALID / EITHER for labels against n rows and k classes."""
    if isinstance(y, list):
        y = np.asarray(y)
    y = np.asarray(y)
    if y.dtype.kind == "b":
        return EITHER
    if y.dtype.kind not in "iuf" or y.ndim != 1 or y.shape[0] != n:
        return INVALID
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(np.mod(y, 1) != 0):
            return INVALID
    if n and (y.min() < 0 or y.max() >= k):
        return INVALID
    return VALID


def _real_status(v, low=None, low_open=False):
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return EITHER
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return INVALID
    if not math.isfinite(float(v)):
        return INVALID
    if low is not None and (float(v) < low or (low_open and float(v) == low)):
        return INVALID
    return VALID


def _int_status(v, low, high=2**31 - 1):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        return INVALID
    return VALID if low <= int(v) <= high else INVALID


def _array_status(a, ndims=(1, 2)):
    """Status of a float-valued array argument by dtype and dimensions, and the array itself."""
    try:
        arr = np.asarray(a)
    except ValueError:  # ragged nested lists
        return INVALID, None
    if arr.dtype.kind not in "biuf" or arr.ndim not in ndims:
        return INVALID, None
    return VALID, arr


def _worst(*statuses):
    if INVALID in statuses:
        return INVALID
    return EITHER if EITHER in statuses else VALID


def _param_of(name, kw):
    if name == "leaky_relu":
        return float(kw.get("negative_slope", 0.01))
    if name == "elu":
        return float(kw.get("elu_alpha", 1.0))
    return None


# --- running one case ----------------------------------------------------------------------------

_LAST = None
_COUNTS = {}  # (status, outcome) -> calls, per property run


def _run_case(fname, args, kwargs, status, check):
    """Call ops.<fname>(*args, **kwargs) and judge the outcome against status; check(result)
    compares a VALID result with the oracle."""
    from fastmlp import ops

    _LAST.set(_call_text(fname, args, kwargs, status))
    snaps = _snapshot(list(args) + list(kwargs.values()))
    try:
        with np.errstate(all="ignore"):
            result = getattr(ops, fname)(*args, **kwargs)
    except (ValueError, TypeError) as e:
        if status == VALID:
            raise AssertionError(f"ops.{fname} rejected a valid call: {type(e).__name__}: {e}\n"
                                 + _call_text(fname, args, kwargs, status)) from e
        msg = str(e)
        assert len(msg) > 10, f"ops.{fname}: uninformative message {msg!r}"
        _COUNTS[status, "raised"] = _COUNTS.get((status, "raised"), 0) + 1
        return None
    except Exception as e:  # noqa: BLE001 - any other type is the bug under test
        raise AssertionError(f"ops.{fname} raised {type(e).__name__} (expected a result, "
                             f"ValueError or TypeError): {e}\n"
                             + _call_text(fname, args, kwargs, status)) from e
    if status == INVALID:
        raise AssertionError(f"ops.{fname} accepted an invalid call (returned "
                             f"{type(result).__name__})\n" + _call_text(fname, args, kwargs, status))
    _same_inputs(snaps, list(args) + list(kwargs.values()))
    _COUNTS[status, "returned"] = _COUNTS.get((status, "returned"), 0) + 1
    if status == VALID:
        try:
            check(result)
        except AssertionError as e:
            raise AssertionError(f"ops.{fname}: {e}\n"
                                 + _call_text(fname, args, kwargs, status)) from None
    return result


def _check_maxout(H, arg, Zc, pieces, cdt, what):
    """maxout (H, argmax) from Zc: argmax in range and pointing at H everywhere; equal to the
    oracle on every unit without NaN (which piece wins against a NaN is left open)."""
    import reference as ref

    n, m = Zc.shape
    units = m // pieces
    assert H.shape == (n, units) and arg.shape == (n, units), f"{what}: shapes {H.shape} {arg.shape}"
    assert H.dtype == cdt, f"{what}: H dtype {H.dtype}, expected {np.dtype(cdt)}"
    assert np.issubdtype(arg.dtype, np.integer), f"{what}: argmax dtype {arg.dtype}"
    assert np.all((arg >= 0) & (arg < pieces)), f"{what}: argmax out of [0, {pieces})"
    G = Zc.reshape(n, units, pieces)
    picked = np.take_along_axis(G, arg[:, :, None].astype(np.int64), axis=2)[:, :, 0]
    assert np.array_equal(H, picked, equal_nan=True), f"{what}: H is not Z at argmax"
    ok = ~np.isnan(G).any(axis=2)
    if units and n:
        H_ref, arg_ref = ref.maxout(Zc, pieces)
        assert np.array_equal(H[ok], H_ref[ok].astype(cdt)), f"{what}: H differs from reference"
        assert np.array_equal(arg[ok], arg_ref[ok]), f"{what}: argmax differs from reference"
    return ok


# =================================================================================================
# properties, one per public entry point (the named activation wrappers share one)
# =================================================================================================


def _z_shape(d, cols=None):
    nd = d.pick([2] * 12 + [1, 1, 0, 3], label="ndim")
    n = d.pick([0, 1, 2, 3, 5, 7, 300], label="rows")
    m = cols if cols is not None else d.pick([0, 1, 2, 3, 4, 6, 8], label="cols")
    return {2: (n, m), 1: (m,), 0: (), 3: (n, m, 2)}[nd]


def prop_activation(d):
    import reference as ref

    entry = d.pick(["activation", "activation", "identity", "sigmoid", "logistic", "tanh", "relu",
                    "leaky_relu", "prelu", "elu", "maxout"], label="entry")
    name = d.pick(ACT_NAMES + BAD_NAMES) if entry == "activation" else entry
    canon = {"sigmoid": "logistic"}.get(name, name) if isinstance(name, str) else name
    pieces = d.pieces() if canon == "maxout" else 2
    shape = _z_shape(d)
    if canon == "maxout" and isinstance(pieces, int) and 1 < pieces < 5 and len(shape) == 2 \
            and d.coin(0.7):
        shape = (shape[0], pieces * d.pick([0, 1, 2, 3]))
    Z = d.ragged() if d.coin(0.02) else d.array(shape, extreme=True, label="Z")
    zs, Za = _array_status(Z)
    status = zs if canon in ACTIVATIONS_OK else INVALID
    cdt = _cdt_of(Za) if Za is not None else np.float64
    Zc = _cast(Za, cdt) if Za is not None else None
    m = Zc.shape[1] if Zc is not None else 0
    kw, args, slopes_c, param = {}, [Z], None, None
    pkey = {"leaky_relu": "negative_slope", "elu": "elu_alpha", "prelu": "slopes",
            "maxout": "pieces"}.get(canon)
    if canon == "leaky_relu":
        pval = d.real_param([0.0, 0.01, 0.3, 2.0])
        status = _worst(status, _real_status(pval, low=0.0))
    elif canon == "elu":
        pval = d.real_param([0.5, 1.0, 3.0])
        status = _worst(status, _real_status(pval, low=0.0, low_open=True))
    elif canon == "prelu":
        kind = d.pick(["none", "vector", "vector", "scalar", "wrong_len", "2d", "object"])
        pval = {"none": lambda: None,
                "vector": lambda: d.array((m,), cdt=cdt, dtypes=FLOAT_DTYPES),
                "scalar": lambda: 0.3,
                "wrong_len": lambda: np.full(m + 1, 0.2),
                "2d": lambda: np.full((2, max(m, 1)), 0.2),
                "object": lambda: np.full(m, 0.2).astype(object)}[kind]()
        if kind in ("wrong_len", "2d", "object"):
            status = INVALID
        elif pval is None:
            slopes_c = np.full(m, 0.25)
        else:
            slopes_c = np.broadcast_to(_f64(np.asarray(pval).astype(cdt)), (m,))
    elif canon == "maxout":
        pval = pieces
        st = _int_status(pieces, 2)
        if st == VALID and Zc is not None and m % int(pieces):
            st = INVALID
        status = _worst(status, st)
    if pkey is not None:
        if entry == "activation":
            kw[pkey] = pval
        else:
            args.append(pval)
    if entry == "activation":
        args = [name] + args
    if status == VALID and canon in ("leaky_relu", "elu"):
        param = float(pval)

    def check(res):
        eps, tiny = _eps(cdt), _tiny(cdt)
        if canon == "maxout":
            H, arg = res
            _check_maxout(H, arg, Zc, int(pieces), cdt, "maxout")
            return
        assert isinstance(res, np.ndarray) and res.dtype == cdt, f"dtype {getattr(res, 'dtype', None)}"
        with np.errstate(all="ignore"):
            expect = ref.activation(canon, Zc, param, slopes_c)
        _close(canon, res, expect, 8 * eps * np.abs(expect) + 8 * tiny, out_dtype=cdt)

    _run_case(entry, args, kw, status, check)


ACTIVATIONS_OK = {"identity", "logistic", "tanh", "relu", "leaky_relu", "prelu", "elu", "maxout"}


def prop_activation_grad(d):
    import reference as ref

    name = d.pick(["maxout"] * 6 + ACT_NAMES + ACT_NAMES + BAD_NAMES, label="name")
    canon = {"sigmoid": "logistic"}.get(name, name) if isinstance(name, str) else name
    pieces = d.pieces() if canon == "maxout" else 2
    shape = _z_shape(d)
    if canon == "maxout" and isinstance(pieces, int) and 1 < pieces < 5 and len(shape) == 2 \
            and d.coin(0.7):
        shape = (shape[0], pieces * d.pick([0, 1, 2, 3]))
    Z = d.array(shape, extreme=True, label="Z")
    zs, Za = _array_status(Z)
    status = zs if canon in ACTIVATIONS_OK else INVALID
    cdt = _cdt_of(Za) if Za is not None else np.float64
    Zc = _cast(Za, cdt) if Za is not None else np.zeros((1, 1))
    n, m = Zc.shape
    pieces_ok = _int_status(pieces, 2) == VALID
    units = m // int(pieces) if canon == "maxout" and pieces_ok else m
    # dH: the right shape, or columns / rows off (the case that used to write out of bounds)
    how = d.pick(["right"] * 6 + ["cols", "rows", "1d", "extra_dim"], label="dH shape")
    dshape = {"right": (n, units), "cols": (n, d.pick([0, 1, 3, 5, 9])),
              "rows": (n + d.pick([1, 2]), units), "1d": (units,), "extra_dim": (n, units, 1)}[how]
    dH = d.array(dshape, cdt=cdt, label="dH")
    ds, dHa = _array_status(dH)
    status = _worst(status, ds)
    dHc = _cast(dHa, cdt) if dHa is not None else None
    if dHc is not None and dHc.shape != (n, units):
        status = INVALID
    kw = {}
    slopes_c, argmax_used = None, None
    if canon == "leaky_relu":
        kw["negative_slope"] = d.real_param([0.0, 0.01, 0.3, 2.0])
        status = _worst(status, _real_status(kw["negative_slope"], low=0.0))
    elif canon == "elu":
        kw["elu_alpha"] = d.real_param([0.5, 1.0, 3.0])
        status = _worst(status, _real_status(kw["elu_alpha"], low=0.0, low_open=True))
    elif canon == "prelu":
        if d.coin(0.8):
            kw["slopes"] = d.array((m,), cdt=cdt, dtypes=FLOAT_DTYPES)
            slopes_c = _f64(np.asarray(kw["slopes"]).astype(cdt))
        else:
            kw["slopes"] = np.full(m + 1, 0.1)
            status = INVALID
    elif canon == "maxout":
        kw["pieces"] = pieces
        if not pieces_ok or m % int(pieces):
            status = INVALID
        akind = d.pick(["none", "none", "forward", "forward", "random", "random", "random_dH_shape",
                        "random_dH_shape", "oob", "oob", "float_int",
                        "float_frac", "bool", "object", "3d"], label="argmax")
        p = int(pieces) if pieces_ok else 2
        ashape = (n, units) if akind != "random_dH_shape" else (dHc.shape if dHc is not None
                                                                  else (n, units))
        rng = d.rng
        a = {"none": None,
             "forward": None,
             "random": rng.integers(0, p, ashape),
             "random_dH_shape": rng.integers(0, p, ashape),
             "oob": np.where(rng.random(ashape) < 0.5, d.pick([-1, p, 2**31 - 1, 2**40]),
                             rng.integers(0, p, ashape)),
             "float_int": rng.integers(0, p, ashape).astype(np.float64),
             "float_frac": rng.integers(0, p, ashape) + 0.25,
             "bool": rng.integers(0, 2, ashape).astype(bool),
             "object": rng.integers(0, p, ashape).astype(object),
             "3d": rng.integers(0, p, ashape + (1,))}[akind]
        if akind == "oob" and a.size:
            a.flat[0] = d.pick([-1, p, 2**31 - 1, 2**40])
        if akind == "forward" and status != INVALID and Zc.size:
            a = ref.maxout(Zc, p)[1].astype(d.pick([np.int32, np.int64, np.int8]))
        if a is not None:
            a = d.layout(a)
            kw["argmax"] = a
            aa = np.asarray(a)
            aa2 = aa[None, :] if aa.ndim == 1 else aa
            if akind in ("object", "3d") or (akind in ("oob", "float_frac") and aa.size):
                status = INVALID
            elif akind == "float_frac":
                status = _worst(status, EITHER)
            elif akind == "bool":
                status = _worst(status, EITHER if aa.size == 0 else INVALID)
            elif akind == "float_int":
                status = _worst(status, EITHER)
            if aa2.shape != (n, units):
                status = INVALID
            if status != INVALID:
                argmax_used = aa2.astype(np.int64)
        elif status != INVALID:
            argmax_used = ref.maxout(Zc, p)[1] if n * m else np.zeros((n, units), np.int64)
    param = _param_of(canon, kw) if status == VALID else None

    def check(res):
        eps, tiny = _eps(cdt), _tiny(cdt)
        if canon == "maxout":
            assert isinstance(res, np.ndarray) and res.dtype == cdt and res.shape == (n, m), \
                f"dZ {getattr(res, 'dtype', None)} {getattr(res, 'shape', None)}"
            expect = ref.maxout_backward(dHc, argmax_used, int(pieces)) if n * m else \
                np.zeros((n, m))
            mask = np.ones((n, m), bool)
            if "argmax" not in kw and n * m:  # recomputed: skip units where NaN makes it open
                G = Zc.reshape(n, units, int(pieces))
                mask = np.repeat(~np.isnan(G).any(axis=2), int(pieces), axis=1)
            _close("maxout dZ", res[mask], expect[mask], 0.0, out_dtype=cdt)
            return
        if canon == "prelu":
            res, dsl = res
            with np.errstate(all="ignore"):
                expect_s = ref.prelu_slope_grad(dHc, Zc)
                scale = np.sum(np.abs(_f64(dHc) * np.where(Zc <= 0, Zc, 0.0)), axis=0)
            assert dsl.dtype == cdt and dsl.shape == (m,), f"dslopes {dsl.dtype} {dsl.shape}"
            _close("prelu dslopes", dsl, expect_s, 8 * eps * (n + 2) * scale + 8 * tiny,
                   out_dtype=cdt)
        assert isinstance(res, np.ndarray) and res.dtype == cdt, f"dZ dtype {res.dtype}"
        with np.errstate(all="ignore"):
            expect = ref.activation_backward(canon, dHc, Zc, param, slopes_c)
            p = 0.0 if param is None else param
            ps = np.abs(slopes_c)[None, :] if slopes_c is not None else p
            tol = 16 * eps * (np.abs(expect) + np.abs(_f64(dHc)) * (1 + ps)) \
                + 8 * tiny * (1 + np.abs(_f64(dHc)))
        _close(f"{canon} dZ", res, expect, tol, out_dtype=cdt)

    _run_case("activation_grad", [name, dH, Z], kw, status, check)


def prop_softmax(d):
    import reference as ref

    fname = d.pick(["softmax", "log_softmax"])
    Z = d.ragged() if d.coin(0.02) else d.array(_z_shape(d), extreme=True, label="Z")
    status, Za = _array_status(Z)
    cdt = _cdt_of(Za) if Za is not None else np.float64
    Zc = _cast(Za, cdt) if Za is not None else None
    if Zc is not None and Zc.shape[1] == 0:
        status = INVALID

    def check(res):
        eps, tiny = _eps(cdt), _tiny(cdt)
        assert isinstance(res, np.ndarray) and res.dtype == cdt, f"dtype {res.dtype}"
        k = Zc.shape[1]
        with np.errstate(all="ignore"):
            O = _f64(Zc)
            mx = O.max(axis=1, keepdims=True) if O.shape[0] else np.zeros((0, 1))
            if fname == "softmax":
                expect = ref.softmax(O) if O.shape[0] else np.zeros(O.shape)
                tol = 8 * eps * (k + 2 + np.abs(O - mx)) * np.abs(expect) + 8 * tiny
            else:
                expect = ref.log_softmax(O) if O.shape[0] else np.zeros(O.shape)
                tol = 8 * eps * (k + 2) * (np.abs(O) + np.abs(mx) + 1)
        _close(fname, res, expect, tol, out_dtype=cdt)

    _run_case(fname, [Z], {}, status, check)


def _loss_inputs(d, with_labels):
    shape = _z_shape(d)
    Z = d.array(shape, label="Z")
    status, Za = _array_status(Z)
    cdt = _cdt_of(Za) if Za is not None else np.float64
    Zc = _cast(Za, cdt) if Za is not None else np.zeros((1, 1))
    n, k = Zc.shape
    if n == 0:
        status = INVALID  # a mean over no rows
    if with_labels:
        if k == 0:
            status = INVALID
        y = d.labels(n, k)
        status = _worst(status, _label_status(y, n, k))
        second = y
    else:
        how = d.pick(["same", "same", "same", "other", "1d"])
        yshape = {"same": (n, k), "other": (n + 1, k), "1d": (k,)}[how]
        second = d.array(yshape, cdt=cdt, label="Y")
        ys, Ya = _array_status(second)
        status = _worst(status, ys)
        if Ya is not None and _cast(Ya, cdt).shape != (n, k):
            status = INVALID
    sw = d.weights(n, cdt)
    kw = {} if sw is None and d.coin(0.5) else {"sample_weight": sw}
    wc = None
    if sw is not None:
        ws, wa = _array_status(sw, ndims=(1,))
        status = _worst(status, ws)
        if wa is not None:
            with np.errstate(all="ignore"):
                wc = _f64(wa.astype(cdt))
                total = wc.sum()
            if wc.shape != (n,) or not np.all(np.isfinite(wc)) or np.any(wc < 0) \
                    or not (0 < total < np.inf) or not np.isfinite(1.0 / total):
                status = INVALID
    return Z, Zc, cdt, second, kw, wc, status


def _row_weights(wc, n):
    w = np.ones(n) if wc is None else wc
    return w, w / w.sum()


def prop_softmax_cross_entropy(d):
    import reference as ref

    Z, Zc, cdt, y, kw, wc, status = _loss_inputs(d, with_labels=True)

    def check(res):
        eps, tiny = _eps(cdt), _tiny(cdt)
        loss, dZ, P = res
        n, k = Zc.shape
        yi = np.asarray(y).astype(np.int64)
        with np.errstate(all="ignore"):
            # Zc in the computing dtype: the loss clips P at that dtype's eps
            l_ref, d_ref, p_ref = ref.softmax_cross_entropy(Zc, yi, wc)
            O = _f64(Zc)
            mx = O.max(axis=1, keepdims=True)
            w, g = _row_weights(wc, n)
            row = np.abs(O[np.arange(n), yi])[:, None] + np.abs(mx) + 1
            ltol = 8 * eps * (k + 2) * (abs(l_ref) + np.sum(g[:, None] * row)) + 8 * tiny * k
            spread = k + 2 + np.abs(O - mx)
            dtol = 8 * eps * spread * (np.abs(d_ref) + g[:, None]) + 8 * tiny
            ptol = 8 * eps * spread * np.abs(p_ref) + 8 * tiny
        assert dZ.dtype == cdt and P.dtype == cdt, f"dtypes {dZ.dtype} {P.dtype}"
        _close("loss", np.float64(loss), l_ref, ltol)
        _close("dZ", dZ, d_ref, dtol, out_dtype=cdt)
        _close("P", P, p_ref, ptol, out_dtype=cdt)

    _run_case("softmax_cross_entropy", [Z, y], kw, status, check)


def prop_sigmoid_binary_cross_entropy(d):
    import reference as ref

    Z, Zc, cdt, Y, kw, wc, status = _loss_inputs(d, with_labels=False)

    def check(res):
        eps, tiny = _eps(cdt), _tiny(cdt)
        loss, dZ, P = res
        n, k = Zc.shape
        Yc = _f64(_cast(Y, cdt))
        with np.errstate(all="ignore"):
            l_ref, d_ref, p_ref = ref.sigmoid_binary_cross_entropy(Zc, Yc, wc)
            O = _f64(Zc)
            w, g = _row_weights(wc, n)
            # each log is at most -log(eps) <= 37 once p is clipped to [eps, 1 - eps]
            row = np.sum((np.abs(O) + 37) * (1 + np.abs(Yc)) + 1, axis=1)
            ltol = 8 * eps * (k + 2) * (abs(l_ref) + np.sum(g * row)) + 8 * tiny * k
            dtol = 8 * eps * (np.abs(d_ref) + g[:, None] * (1 + np.abs(Yc))) + 8 * tiny
        assert dZ.dtype == cdt and P.dtype == cdt, f"dtypes {dZ.dtype} {P.dtype}"
        if np.isnan(l_ref) and not np.all(np.isfinite(Yc)):
            # an infinite target: y log p + (1 - y) log(1 - p) is inf - inf, and the
            # kernels (compiled with reassoc) may group it as y (log p - log(1 - p)) + ...
            assert not np.isfinite(loss), f"loss {loss!r} finite for an infinite target"
        else:
            _close("loss", np.float64(loss), l_ref, ltol)
        _close("dZ", dZ, d_ref, dtol, out_dtype=cdt)
        _close("P", P, p_ref, 8 * eps * np.abs(p_ref) + 8 * tiny, out_dtype=cdt)

    _run_case("sigmoid_binary_cross_entropy", [Z, Y], kw, status, check)


def prop_squared_error(d):
    import reference as ref

    Z, Zc, cdt, Y, kw, wc, status = _loss_inputs(d, with_labels=False)

    def check(res):
        eps, tiny = _eps(cdt), _tiny(cdt)
        loss, dO = res
        n, k = Zc.shape
        Yc = _f64(_cast(Y, cdt))
        with np.errstate(all="ignore"):
            l_ref, d_ref, _ = ref.squared_error(_f64(Zc), Yc, wc)
            a = np.abs(_f64(Zc)) + np.abs(Yc)
            w, g = _row_weights(wc, n)
            ltol = 8 * eps * (k + 2) * (abs(l_ref) + np.sum(g * np.sum(a * a, axis=1))) \
                + 8 * tiny * k
            dtol = 8 * eps * (np.abs(d_ref) + g[:, None] * a) + 8 * tiny
        assert dO.dtype == cdt, f"dtype {dO.dtype}"
        _close("loss", np.float64(loss), l_ref, ltol)
        _close("dO", dO, d_ref, dtol, out_dtype=cdt)

    _run_case("squared_error", [Z, Y], kw, status, check)


def prop_one_hot(d):
    import reference as ref

    n = d.pick([0, 1, 2, 5, 300])
    k = d.pick([1, 2, 3, 7, np.int64(4), 0, -1, 2.5, True, "3", None, 2**62])
    k_ok = _int_status(k, 1, high=2**63) == VALID
    labels = d.labels(n, int(k) if k_ok and k < 100 else 3)
    if d.coin(0.05):
        labels = 1  # a scalar
    n_given = len(labels) if np.ndim(labels) else 0
    status = _worst(INVALID if not k_ok else VALID,
                    EITHER if np.ndim(labels) == 0
                    else _label_status(labels, n_given, int(k) if k_ok else 1))
    kw = {}
    dtype = np.float64
    if d.coin(0.6):
        dtype = d.pick([np.float64, np.float32, np.int64, np.int32, np.uint8, np.bool_,
                        np.float16, ">f8", "float64", object, np.complex128, "U3", "nonsense",
                        "datetime64[s]", None])
        kw["dtype"] = dtype
        if dtype is None:
            status = _worst(status, EITHER)  # np.dtype(None) is float64
        elif dtype in (object, np.complex128, "U3", "nonsense", "datetime64[s]"):
            status = INVALID
    if k_ok and k > 10**6:
        status = _worst(status, EITHER)  # too large to allocate once there is a row

    def check(out):
        want = np.dtype(np.float64 if dtype is None else dtype)
        assert isinstance(out, np.ndarray) and out.dtype == want, f"dtype {out.dtype} != {want}"
        expect = ref.one_hot(np.asarray(labels).astype(np.int64), int(k)) if n_given else \
            np.zeros((0, int(k)))
        assert out.shape == expect.shape, f"shape {out.shape} != {expect.shape}"
        assert np.array_equal(out.astype(np.float64), expect), "values differ from the reference"

    _run_case("one_hot", [labels, k], kw, status, check)


def _dense_draw(d):
    """X, W, b, name and parameters for dense_forward, with a status."""
    name = d.pick(ACT_NAMES + ["relu", "tanh", "swish"], label="name")
    canon = {"sigmoid": "logistic"}.get(name, name)
    pieces = d.pick([2, 3, 2, 1, 2.5]) if canon == "maxout" else 2
    n = d.pick([0, 1, 3, 7, 40])
    fan_in = d.pick([0, 1, 2, 5])
    units = d.pick([0, 1, 2, 4])
    zcols = units * (int(pieces) if canon == "maxout" and isinstance(pieces, int) else 1)
    X = d.array((n, fan_in) if d.coin(0.95) else (fan_in,), label="X")
    xs, Xa = _array_status(X)
    status = xs if canon in ACTIVATIONS_OK else INVALID
    cdt = _cdt_of(Xa) if Xa is not None else np.float64
    wshape = (fan_in if d.coin(0.9) else fan_in + 1, zcols)
    W = d.array(wshape if d.coin(0.97) else (fan_in * zcols,), cdt=cdt, label="W")
    bkind = d.pick(["good", "good", "good", "short", "2d", "scalar", "column"], label="b")
    bshape = {"good": (zcols,), "short": (zcols + 1,), "2d": (2, max(zcols // 2, 1)),
              "scalar": (), "column": (zcols, 1)}[bkind]
    b = d.array(bshape, cdt=cdt, label="b")
    ws, Wa = _array_status(W, ndims=(2,))
    bs, ba = _array_status(b, ndims=(1,))
    if bkind == "scalar":
        bs = EITHER if _array_status(b, ndims=(0,))[0] == VALID else INVALID
    status = _worst(status, ws, bs)
    Xc = _cast(Xa, cdt) if Xa is not None else None
    if Xc is not None and Wa is not None and Xc.shape[1] != Wa.shape[0]:
        status = INVALID
    if Wa is not None and ba is not None and ba.shape != (Wa.shape[1],):
        status = INVALID
    kw = {}
    slopes_c = None
    if canon == "leaky_relu":
        kw["negative_slope"] = d.real_param([0.0, 0.01, 0.3])
        status = _worst(status, _real_status(kw["negative_slope"], low=0.0))
    elif canon == "elu":
        kw["elu_alpha"] = d.real_param([0.5, 1.0, 3.0])
        status = _worst(status, _real_status(kw["elu_alpha"], low=0.0, low_open=True))
    elif canon == "prelu":
        if d.coin(0.7):
            kw["slopes"] = d.array((zcols,), cdt=cdt, dtypes=FLOAT_DTYPES)
            slopes_c = _f64(np.asarray(kw["slopes"]).astype(cdt))
        else:
            slopes_c = np.full(zcols, 0.25)
    elif canon == "maxout":
        kw["pieces"] = pieces
        if _int_status(pieces, 2) != VALID:
            status = INVALID
    return dict(name=name, canon=canon, X=X, W=W, b=b, kw=kw, cdt=cdt, status=status,
                slopes_c=slopes_c, pieces=pieces)


def _lip_of(c, m):
    param = _param_of(c["canon"], c["kw"])
    if c["canon"] == "prelu":
        return np.maximum(1.0, np.abs(c["slopes_c"])).reshape(1, m), param
    return (max(1.0, param) if param is not None else LIPSCHITZ[c["canon"]]), param


def _dense_reference(c):
    """float64 Z and the gemm error scale |X| @ |W| + |b| from what the kernel saw."""
    cdt = c["cdt"]
    Xc = _f64(_cast(c["X"], cdt))
    Wc = _f64(np.asarray(c["W"]).astype(cdt))
    bc = _f64(np.asarray(c["b"]).astype(cdt))
    with np.errstate(all="ignore"):
        Z = Xc @ Wc + bc
        scale = np.abs(Xc) @ np.abs(Wc) + np.abs(bc)
    return Xc, Wc, bc, Z, scale


def prop_dense_forward(d):
    import reference as ref

    c = _dense_draw(d)

    def check(res):
        H, cache = res
        cdt = c["cdt"]
        eps, tiny = _eps(cdt), _tiny(cdt)
        Xc, Wc, bc, Z, scale = _dense_reference(c)
        fan_in = Xc.shape[1]
        ztol = 8 * eps * (fan_in + 2) * scale + 8 * tiny
        assert isinstance(cache, dict), "cache is not a dict"
        _close("cache Z", cache["Z"], Z, ztol, out_dtype=cdt)
        Zk = _f64(cache["Z"])  # the activation is judged on the Z the kernel had
        if c["canon"] == "maxout":
            _check_maxout(H, cache["argmax"], Zk.astype(cdt), int(c["pieces"]), cdt, "dense maxout")
            return
        lip, param = _lip_of(c, Zk.shape[1])
        with np.errstate(all="ignore"):
            expect = ref.activation(c["canon"], Zk, param, c["slopes_c"])
        assert H.dtype == cdt, f"H dtype {H.dtype}"
        _close("H", H, expect, 8 * eps * np.abs(expect) + 8 * tiny, out_dtype=cdt)

    _run_case("dense_forward", [c["X"], c["W"], c["b"], c["name"]], c["kw"], c["status"], check)


def prop_dense_backward(d):
    import reference as ref
    from fastmlp import ops

    c = _dense_draw(d)
    if c["status"] != VALID:  # only a good forward gives a cache to start from
        return
    with np.errstate(all="ignore"):
        H, cache = ops.dense_forward(c["X"], c["W"], c["b"], c["name"], **c["kw"])
    cdt = c["cdt"]
    status = VALID
    n, zcols = cache["Z"].shape
    units = H.shape[1]
    maxout = c["canon"] == "maxout"
    tamper = d.pick(["none", "none", "none", "X_layout", "W_layout", "Z_shape", "drop_key",
                     "not_a_dict", "bad_name", "argmax_oob", "argmax_none", "argmax_shape",
                     "pieces", "X_object", "X_rows", "X_int"], label="tamper")
    cache = dict(cache)
    if tamper == "X_layout":
        cache["X"] = d.layout(cache["X"])
    elif tamper == "W_layout":
        cache["W"] = d.layout(cache["W"])
    elif tamper == "Z_shape":
        cache["Z"] = np.zeros((n, zcols + 1), cdt)
        status = INVALID
    elif tamper == "drop_key":
        key = d.pick(sorted(cache))
        del cache[key]
        # the arrays and the name are required; a parameter's key may fall back to a default
        status = INVALID if key in ("X", "W", "Z", "name") else EITHER
    elif tamper == "not_a_dict":
        cache = d.pick([None, "cache", [1, 2], (H,)])
        status = INVALID
    elif tamper == "bad_name":
        cache["name"] = d.pick(["swish", 3, None])
        status = INVALID
    elif tamper == "argmax_oob" and maxout and n * units:
        a = np.array(cache["argmax"])
        a.flat[0] = d.pick([-1, int(c["pieces"]), 2**40])
        cache["argmax"] = a
        status = INVALID
    elif tamper == "argmax_none" and maxout:
        cache["argmax"] = None
    elif tamper == "argmax_shape" and maxout:
        cache["argmax"] = np.zeros((n, units + 1), np.int32)
        status = INVALID
    elif tamper == "pieces" and maxout:
        cache["pieces"] = d.pick([1, 3 if c["pieces"] == 2 else 2, 10**6, "2"])
        status = INVALID
    elif tamper == "X_object":
        cache["X"] = np.asarray(cache["X"]).astype(object)
        status = INVALID
    elif tamper == "X_rows":
        cache["X"] = np.zeros((n + 1, cache["X"].shape[1]), cdt)
        status = INVALID
    elif tamper == "X_int":
        with np.errstate(invalid="ignore"):
            cache["X"] = np.round(np.nan_to_num(cache["X"], posinf=0, neginf=0)).astype(np.int64)
        status = EITHER  # computed in float64 (or refused): the dtype rule is X's
    dshape = (n, units) if d.coin(0.9) else (n, units + 1)
    dH = d.array(dshape, cdt=cdt, label="dH")
    ds, dHa = _array_status(dH)
    status = _worst(status, ds)
    if dHa is not None and _cast(dHa, cdt).shape != (n, units):
        status = INVALID
    args = [dH, cache]
    if d.coin(0.8):
        alpha = d.pick([0.0, 0.0, 0.25, 3.0, 1, -1.0, np.nan, np.inf, "x", None, True])
        need = d.pick([True, True, False, 1, "yes", None])
        status = _worst(status, _real_status(alpha, low=0.0),
                        VALID if isinstance(need, bool) else EITHER)
        kw = {"alpha": alpha, "need_dX": need}
    else:  # the defaults
        alpha, need, kw = 0.0, True, {}

    def check(res):
        cdt = _cdt_of(np.asarray(cache["X"]))  # a list of float32 values is float64
        eps, tiny = _eps(cdt), _tiny(cdt)
        dW, db, dX = res
        Xc = _f64(np.asarray(cache["X"]).astype(cdt))
        Wc = _f64(np.asarray(cache["W"]).astype(cdt))
        Zc = _f64(np.asarray(cache["Z"]).astype(cdt))
        dHc = _f64(_cast(dH, cdt))
        a = float(alpha)
        with np.errstate(all="ignore"):
            if maxout:
                p = int(c["pieces"])
                if cache.get("argmax") is None:
                    if np.isnan(Zc).any():
                        return  # which piece wins against a NaN is left open
                    arg = ref.maxout(Zc, p)[1] if n * zcols else np.zeros((n, units), int)
                else:
                    arg = np.asarray(cache["argmax"])
                dZ = ref.maxout_backward(dHc, arg, p) if n * zcols else np.zeros((n, zcols))
                lip, dz_err = 1.0, 0.0
            else:
                lip, param = _lip_of(c, zcols)
                dZ = ref.activation_backward(c["canon"], dHc, Zc, param, c["slopes_c"])
                dz_err = 16 * eps * (np.abs(dZ) + np.abs(dHc) * (1 + lip)) \
                    + 8 * tiny * (1 + np.abs(dHc))
            dZ = dZ.astype(cdt).astype(np.float64)
            dW_ref, db_ref, dX_ref = ref.dense_backward(Xc, Wc, dZ, a)
            if a == 0:  # no penalty term at all (0 * inf would be NaN)
                dW_ref = ref.dense_backward(Xc, np.zeros_like(Wc), dZ, 0.0)[0]
            S = np.abs(dZ)
            AX, AW = np.abs(Xc), np.abs(Wc)
            E = np.broadcast_to(dz_err, dZ.shape)
            dW_tol = 8 * eps * (n + 2) * (AX.T @ S + a * AW) + AX.T @ E + 8 * tiny
            db_tol = 8 * eps * (n + 2) * S.sum(axis=0) + E.sum(axis=0) + 8 * tiny
            dX_tol = 8 * eps * (zcols + 2) * (S @ AW.T) + E @ AW.T + 8 * tiny
        assert dW.dtype == cdt and db.dtype == cdt, f"dtypes {dW.dtype} {db.dtype}"
        _close("dW", dW, dW_ref, dW_tol, out_dtype=cdt)
        _close("db", db, db_ref, db_tol, out_dtype=cdt)
        if need:
            _close("dX", dX, dX_ref, dX_tol, out_dtype=cdt)
        else:
            assert dX is None, "dX returned though need_dX is False"

    _run_case("dense_backward", args, kw, status, check)


PROPERTIES = {
    "activation": prop_activation,
    "activation_grad": prop_activation_grad,
    "softmax": prop_softmax,
    "softmax_cross_entropy": prop_softmax_cross_entropy,
    "sigmoid_binary_cross_entropy": prop_sigmoid_binary_cross_entropy,
    "squared_error": prop_squared_error,
    "one_hot": prop_one_hot,
    "dense_forward": prop_dense_forward,
    "dense_backward": prop_dense_backward,
}


# --- the issue's own reproductions, run before the random ones -----------------------------------


def hostile_cases():
    """(function, args, kwargs) calls that must raise ValueError or TypeError."""
    Z8, Z4 = np.ones((2, 8)), np.ones((2, 4))
    return [
        # dH.shape[1] * pieces != Z.shape[1]: wrote out of bounds (abort) or returned garbage
        ("activation_grad", ["maxout", np.ones((2, 1)), Z4],
         dict(pieces=10**6, argmax=np.zeros((2, 1), np.int32))),
        ("activation_grad", ["maxout", np.ones((2, 3)), Z8],
         dict(pieces=2, argmax=np.zeros((2, 3), np.int32))),
        ("activation_grad", ["maxout", np.ones((2, 2)), Z4],
         dict(pieces=2, argmax=np.full((2, 2), 5))),
        ("activation_grad", ["maxout", np.ones((2, 2)), Z4],
         dict(pieces=2, argmax=np.full((2, 2), -1))),
        ("squared_error", [np.ones((2, 2)), np.ones((2, 2))], dict(sample_weight=np.zeros(2))),
        ("softmax_cross_entropy", [np.ones((0, 3)), np.zeros(0, int)], {}),
        ("dense_forward", [np.ones((3, 2)), np.ones((2, 4)), np.ones((2, 2))], {}),
        ("one_hot", [[0, 1], 2], dict(dtype=object)),
        ("dense_backward", [np.ones((3, 4)), {}], {}),
    ]


def run_hostile():
    for fname, args, kw in hostile_cases():
        _run_case(fname, args, kw, INVALID, None)


def check_kernel_signatures():
    """Every signature the ops kernels were compiled for takes C-contiguous, aligned, writeable
    arrays: ops normalised every hostile layout before the call (no 'A'-layout recompiles)."""
    from numba import types
    from numba.core.registry import CPUDispatcher

    from fastmlp.backends.cpu import activations, dense, losses

    bad = []
    for mod in (activations, losses, dense):
        for attr in dir(mod):
            disp = getattr(mod, attr)
            if not isinstance(disp, CPUDispatcher):
                continue
            for sig in disp.signatures:
                for t in sig:
                    if isinstance(t, types.Array) and (t.layout != "C" or not t.mutable
                                                       or not t.aligned):
                        bad.append(f"{mod.__name__}.{attr}{sig}")
    assert not bad, "kernels compiled for non-contiguous/read-only arrays:\n" + "\n".join(bad)


def _bind(prop):
    def run(data):
        prop(Draw(data))
    run.__name__ = run.__qualname__ = prop.__name__  # derandomize seeds from the name
    return run


def main(argv):
    import argparse

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    global _LAST
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=EXAMPLES)
    parser.add_argument("--only", default=None, help="comma-separated property names")
    parser.add_argument("--seed", type=int, default=None, help="random run with this seed")
    parser.add_argument("--skip-hostile", action="store_true", help="random cases only")
    opts = parser.parse_args(argv)
    _LAST = _LastCall(os.environ.get("FASTMLP_FUZZ_LAST"))
    t_start = time.perf_counter()
    if not opts.skip_hostile:
        run_hostile()
        print(f"hostile cases: {len(hostile_cases())} rejected cleanly", flush=True)
    names = opts.only.split(",") if opts.only else list(PROPERTIES)
    failed = []
    for pname in names:
        prop = PROPERTIES[pname]
        cfg = settings(max_examples=opts.examples, derandomize=opts.seed is None, database=None,
                       deadline=None, print_blob=False,
                       suppress_health_check=list(HealthCheck))

        run = cfg(given(st.data())(_bind(prop)))

        if opts.seed is not None:
            from hypothesis import seed
            run = seed(opts.seed)(run)
        t0 = time.perf_counter()
        _COUNTS.clear()
        try:
            run()
        except Exception:  # noqa: BLE001 - report every property, then fail
            import traceback
            traceback.print_exc()
            failed.append(pname)
            status = "FAILED"
        else:
            status = "ok"
        seen = ", ".join(f"{k[0]} {k[1]} {v}" for k, v in sorted(_COUNTS.items()))
        print(f"{pname}: {opts.examples} examples, {time.perf_counter() - t0:.1f} s, {status} "
              f"({seen})", flush=True)
    if not failed:
        check_kernel_signatures()
    print(f"total {time.perf_counter() - t_start:.1f} s", flush=True)
    if failed:
        print("FAILED properties: " + ", ".join(failed), flush=True)
        return 1
    print("all properties passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
