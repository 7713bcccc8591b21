"""The flat-buffer description of a network, shared by both backends.

``make_layout`` turns layer sizes into ``NetSpec``: the int64 ``layers`` table
the compiled kernels index (its columns are named here, once), the length of
the parameter vector and the widths of the workspaces.  ``pack``/``unpack``
convert between the flat vector and scikit-learn's ``coefs_`` /
``intercepts_`` lists.  ``OptimizerState`` is the SGD/Adam state both
backends' trainers update in place; its ``hyper`` entries are named here too.
``csr_arrays`` is the form in which both backends take a sparse X.
"""

from dataclasses import dataclass, field

import numpy as np

from .._registry import ACTIVATIONS, ADAM, MAXOUT, PRELU
from .scalar import DROP_ALL_KEPT, dropout_key

# columns of the `layers` table (the kernels import these names)
W_OFF, FAN_IN, ZCOLS, B_OFF, A_OFF, UNITS, Z_OFF, H_OFF, DZ_OFF, DH_OFF, ARG_OFF = range(11)
N_COLS = 11

# entries of the float64 `hyper` array of OptimizerState (mutable optimizer scalars)
LR, MOMENTUM, NESTEROV, BETA1, BETA2, EPS, ADAM_T = range(7)
N_HYPER = 7


@dataclass
class NetSpec:
    """Everything the kernels need to know about a network's shape."""

    n_features: int
    hidden: tuple
    n_outputs: int
    activation: str
    code: int
    param: float
    pieces: int
    out_code: int
    dtype: np.dtype
    layers: np.ndarray = field(repr=False)
    n_params: int = 0
    ws_cols: int = 0
    iws_cols: int = 0

    @property
    def n_layers(self):
        return self.layers.shape[0]

    def coef_shapes(self):
        return [(int(r[FAN_IN]), int(r[ZCOLS])) for r in self.layers]


@dataclass
class OptimizerState:
    """SGD or Adam state of one network, updated in place by a backend's Trainer.

    solver: ``fastmlp._registry.SGD`` or ``ADAM``.
    state1: SGD velocity or Adam first moment, like theta.
    state2: Adam second moment, like theta (empty for SGD).
    hyper: float64 (N_HYPER,): learning rate, momentum, nesterov flag (0/1),
        beta1, beta2, epsilon and Adam's step count, at the indices named above.
        The compiled epoch reads it and advances ``hyper[ADAM_T]``.
    """

    solver: int
    state1: np.ndarray
    state2: np.ndarray
    hyper: np.ndarray

    @classmethod
    def new(cls, solver, theta, *, learning_rate, momentum=0.9, nesterov=True,
            beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        """Fresh state (zero moments, step 0) for the flat parameter vector ``theta``."""
        hyper = np.zeros(N_HYPER, dtype=np.float64)
        hyper[LR], hyper[MOMENTUM], hyper[NESTEROV] = learning_rate, momentum, float(bool(nesterov))
        hyper[BETA1], hyper[BETA2], hyper[EPS] = beta_1, beta_2, epsilon
        state2 = np.zeros_like(theta) if solver == ADAM else np.zeros(0, dtype=theta.dtype)
        return cls(int(solver), np.zeros_like(theta), state2, hyper)

    def copy(self):
        """A deep copy (a fit trains a copy and publishes it only when it succeeds)."""
        return OptimizerState(self.solver, self.state1.copy(), self.state2.copy(),
                              self.hyper.copy())

    @property
    def learning_rate(self):
        return float(self.hyper[LR])

    @learning_rate.setter
    def learning_rate(self, value):
        self.hyper[LR] = value

    @property
    def steps(self):
        """Adam steps taken so far."""
        return int(self.hyper[ADAM_T])


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout of a stochastic fit's hidden layers, as the trainers take it.

    rates: one rate in [0, 1) per hidden layer (0: none there).  seed: an int in
    [0, 2^31), drawn once per model from the fit's ``random_state``.  A unit's mask is
    ``scalar.dropout_keep(key(epoch), layer, row, unit, threshold)``: a function of
    the seed, the epoch count, the row's index in the training data, the layer and
    the unit, the same on every backend, thread count and batch split.
    """

    rates: tuple
    seed: int

    def arrays(self, spec):
        """(thresholds, scales) for the kernels: int64 (L,) keep thresholds
        round((1 - rate) 2^32) (``DROP_ALL_KEPT`` for the output layer and rate 0) and
        (2, L) in the model's dtype: 1 / (1 - rate) and 1 - rate (1 where none)."""
        L = spec.n_layers
        thr = np.full(L, DROP_ALL_KEPT, dtype=np.int64)
        fl = np.ones((2, L), dtype=spec.dtype)
        for l, rate in enumerate(self.rates):
            if rate > 0:
                keep = 1.0 - float(rate)
                thr[l] = min(DROP_ALL_KEPT, int(round(keep * 2.0 ** 32)))
                fl[0, l] = 1.0 / keep
                fl[1, l] = keep
        return thr, fl

    def key(self, epoch):
        """The key of epoch number ``epoch`` (the fit's epochs counted over warm starts
        and partial_fit calls: the length of the loss curve before it)."""
        return int(dropout_key(int(self.seed), int(epoch)))


def make_layout(n_features, hidden, n_outputs, activation, param, pieces, out_code, dtype):
    """Build the ``NetSpec`` of a network; offsets are in elements."""
    info = ACTIVATIONS[activation]
    code = info.code
    pieces = int(pieces) if code == MAXOUT else 1
    sizes = [int(n_features)] + [int(h) for h in hidden] + [int(n_outputs)]
    L = len(sizes) - 1
    layers = np.zeros((L, N_COLS), dtype=np.int64)
    p = 0  # parameter offset
    c = 0  # float workspace column offset
    ic = 0  # integer workspace column offset
    for l in range(L):
        hidden_layer = l < L - 1
        units = sizes[l + 1]
        zc = units * pieces if (hidden_layer and code == MAXOUT) else units
        r = layers[l]
        r[FAN_IN], r[ZCOLS], r[UNITS] = sizes[l], zc, units
        r[W_OFF] = p
        p += sizes[l] * zc
        r[B_OFF] = p
        p += zc
        if hidden_layer and code == PRELU:
            r[A_OFF] = p
            p += units
        else:
            r[A_OFF] = -1
        # forward cache: Z always; H separate only where backward needs Z too
        r[Z_OFF] = c
        c += zc
        if hidden_layer and (code == PRELU or code == MAXOUT):
            r[H_OFF] = c
            c += units
        else:
            r[H_OFF] = r[Z_OFF]
        # backward: dZ always; dH (gradient w.r.t. this layer's output) for hidden
        # layers, computed in place into dZ unless maxout needs both widths
        r[DZ_OFF] = c
        c += zc
        if hidden_layer and code == MAXOUT:
            r[DH_OFF] = c
            c += units
            r[ARG_OFF] = ic
            ic += units
        else:
            r[DH_OFF] = r[DZ_OFF]
            r[ARG_OFF] = 0
    return NetSpec(
        n_features=sizes[0], hidden=tuple(sizes[1:-1]), n_outputs=sizes[-1],
        activation=activation, code=code, param=float(param), pieces=pieces,
        out_code=int(out_code), dtype=np.dtype(dtype), layers=layers,
        n_params=p, ws_cols=c, iws_cols=ic,
    )


def pack(spec, coefs, intercepts, slopes=None, out=None):
    """Copy coefs_/intercepts_ (and prelu slopes) into one flat vector of spec.dtype."""
    theta = np.empty(spec.n_params, dtype=spec.dtype) if out is None else out
    for l, r in enumerate(spec.layers):
        fi, zc = int(r[FAN_IN]), int(r[ZCOLS])
        theta[r[W_OFF]:r[W_OFF] + fi * zc] = np.asarray(coefs[l]).reshape(-1)
        theta[r[B_OFF]:r[B_OFF] + zc] = np.asarray(intercepts[l]).reshape(-1)
        if r[A_OFF] >= 0:
            theta[r[A_OFF]:r[A_OFF] + r[UNITS]] = np.asarray(slopes[l]).reshape(-1)
    return theta


def unpack(spec, theta):
    """Views of the flat vector: (coefs, intercepts, slopes), scikit-learn shaped."""
    coefs, intercepts, slopes = [], [], []
    for r in spec.layers:
        fi, zc = int(r[FAN_IN]), int(r[ZCOLS])
        coefs.append(theta[r[W_OFF]:r[W_OFF] + fi * zc].reshape(fi, zc))
        intercepts.append(theta[r[B_OFF]:r[B_OFF] + zc])
        if r[A_OFF] >= 0:
            slopes.append(theta[r[A_OFF]:r[A_OFF] + r[UNITS]])
    return coefs, intercepts, slopes


def is_packed_view(spec, theta, coefs, intercepts, slopes):
    """True when every array is still the view of ``theta`` that ``unpack`` made.

    The estimators keep ``coefs_`` as views of their flat vector; a user who
    assigns new arrays breaks that, and predict then packs what is there.
    """
    base_ptr = theta.__array_interface__["data"][0]
    isz = theta.itemsize

    def ok(a, off, shape):
        return (
            isinstance(a, np.ndarray)
            and a.base is theta
            and a.shape == shape
            and a.__array_interface__["data"][0] == base_ptr + off * isz
        )

    if len(coefs) != spec.n_layers or len(intercepts) != spec.n_layers:
        return False
    k = 0
    for l, r in enumerate(spec.layers):
        fi, zc = int(r[FAN_IN]), int(r[ZCOLS])
        if not ok(coefs[l], r[W_OFF], (fi, zc)) or not ok(intercepts[l], r[B_OFF], (zc,)):
            return False
        if r[A_OFF] >= 0:
            if slopes is None or k >= len(slopes) or not ok(slopes[k], r[A_OFF], (int(r[UNITS]),)):
                return False
            k += 1
    return True


def csr_arrays(X):
    """(data, indices, indptr) of the CSR matrix X, as the kernels take a sparse X.

    C-contiguous; indices and indptr of one integer type, int32 where the
    matrix allows it (one compiled variant for the usual matrices) and int64
    otherwise.  Views of X's own arrays where they already are so (X is never
    modified: the kernels only read them).
    """
    big = X.indptr[-1] >= 2**31 or X.shape[1] >= 2**31
    itype = np.int64 if big else np.int32
    return (np.ascontiguousarray(X.data), np.ascontiguousarray(X.indices, dtype=itype),
            np.ascontiguousarray(X.indptr, dtype=itype))
