"""Slow, obvious NumPy versions of every fastmlp kernel: the oracle the tests compare against.

Everything here is written for clarity, not speed, and always computes in float64 whatever the
input dtype, so it is at least as accurate as the kernel under test.  Formulas follow
the maths page of the documentation (``docs/user_guide/maths.rst``) and scikit-learn (``neural_network/_base.py``,
``_multilayer_perceptron.py``, ``_stochastic_optimizers.py``).  Where a textbook formula would
overflow for extreme inputs (sigmoid, elu of a large positive number) the oracle uses a different
but equally obvious stable form (``e^-|z|``, clamped exponent), so it never emits a RuntimeWarning
and it does not share the kernel's implementation choices.  The log-losses are scikit-learn's:
the probabilities clipped to ``[eps, 1 - eps]`` (``eps`` of the logits' dtype) before the log, as
the kernels report them; their gradients are exact (``P - Y``, unclipped).

Conventions shared with the kernels:

- activation derivatives are given as ``act'(z)`` and the backward pass is ``dZ = dH * act'(Z)``;
- maxout: piece ``p`` of unit ``j`` lives in column ``j * pieces + p``; ties go to the first piece;
- losses take an optional per-row weight ``sw`` (None = all ones) and return the weighted *mean*
  ``sum_i w_i l_i / sum_i w_i`` and ``dO = w_i (P - Y) / sum_i w_i``.
"""

import numpy as np

from fastmlp._registry import OUT_EXP, OUT_IDENTITY, OUT_LOGISTIC, OUT_SOFTMAX

from fastmlp.backends.layout import unpack

# --- hidden activations and their derivatives act'(z) -------------------------------------------


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def identity(Z):
    return _f64(Z).copy()


def identity_grad(Z):
    return np.ones_like(_f64(Z))


def logistic(Z):
    # 1 / (1 + e^-z) written with e^-|z| <= 1 so it never overflows.
    Z = _f64(Z)
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def logistic_grad(Z):
    h = logistic(Z)
    return h * (1.0 - h)


def tanh(Z):
    return np.tanh(_f64(Z))


def tanh_grad(Z):
    return 1.0 - np.tanh(_f64(Z)) ** 2


def relu(Z):
    # np.maximum propagates NaN, which is what the kernel must do as well.
    return np.maximum(_f64(Z), 0.0)


def relu_grad(Z):
    return (_f64(Z) > 0).astype(np.float64)


def leaky_relu(Z, slope=0.01):
    Z = _f64(Z)
    return np.where(Z > 0, Z, slope * Z)


def leaky_relu_grad(Z, slope=0.01):
    return np.where(_f64(Z) > 0, 1.0, slope)


def prelu(Z, slopes):
    Z = _f64(Z)
    return np.where(Z > 0, Z, _f64(slopes)[None, :] * Z)


def prelu_grad(Z, slopes):
    Z = _f64(Z)
    return np.where(Z > 0, 1.0, np.broadcast_to(_f64(slopes)[None, :], Z.shape))


def prelu_slope_grad(dH, Z):
    """dL/da_j = sum over rows of dH * z where z <= 0."""
    Z = _f64(Z)
    return np.sum(_f64(dH) * np.where(Z <= 0, Z, 0.0), axis=0)


def elu(Z, alpha=1.0):
    Z = _f64(Z)
    return np.where(Z > 0, Z, alpha * np.expm1(np.minimum(Z, 0.0)))


def elu_grad(Z, alpha=1.0):
    Z = _f64(Z)
    return np.where(Z > 0, 1.0, alpha * np.exp(np.minimum(Z, 0.0)))


def maxout(Z, pieces):
    """(H, argmax): H[i, j] = max_p Z[i, j * pieces + p], argmax the first winning p."""
    Z = _f64(Z)
    n, m = Z.shape
    G = Z.reshape(n, m // pieces, pieces)
    return G.max(axis=2), G.argmax(axis=2)


def maxout_backward(dH, argmax, pieces):
    """dZ: dH routed to the winning piece of each unit, zero elsewhere."""
    dH = _f64(dH)
    n, units = dH.shape
    dZ = np.zeros((n, units, pieces))
    for i in range(n):
        for j in range(units):
            dZ[i, j, argmax[i, j]] = dH[i, j]
    return dZ.reshape(n, units * pieces)


def activation(name, Z, param=None, slopes=None, pieces=2):
    """H = act(Z) by name; ``param`` is the leaky slope or the elu alpha.  Maxout returns H only."""
    if name in ("logistic", "sigmoid"):
        return logistic(Z)
    if name == "leaky_relu":
        return leaky_relu(Z, 0.01 if param is None else param)
    if name == "elu":
        return elu(Z, 1.0 if param is None else param)
    if name == "prelu":
        return prelu(Z, slopes)
    if name == "maxout":
        return maxout(Z, pieces)[0]
    return {"identity": identity, "tanh": tanh, "relu": relu}[name](Z)


def activation_backward(name, dH, Z, param=None, slopes=None, pieces=2):
    """dZ = dH * act'(Z) by name (maxout: routed through the argmax of Z)."""
    if name == "maxout":
        return maxout_backward(dH, maxout(Z, pieces)[1], pieces)
    if name in ("logistic", "sigmoid"):
        g = logistic_grad(Z)
    elif name == "leaky_relu":
        g = leaky_relu_grad(Z, 0.01 if param is None else param)
    elif name == "elu":
        g = elu_grad(Z, 1.0 if param is None else param)
    elif name == "prelu":
        g = prelu_grad(Z, slopes)
    else:
        g = {"identity": identity_grad, "tanh": tanh_grad, "relu": relu_grad}[name](Z)
    return _f64(dH) * g


# --- output functions and losses -----------------------------------------------------------------


def softmax(O):
    O = _f64(O)
    E = np.exp(O - O.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def log_softmax(O):
    O = _f64(O)
    S = O - O.max(axis=1, keepdims=True)
    return S - np.log(np.exp(S).sum(axis=1, keepdims=True))


def one_hot(labels, k):
    return np.eye(k)[np.asarray(labels).reshape(-1)]


def _weights(sw, n):
    return np.ones(n) if sw is None or len(sw) == 0 else _f64(sw)


def _log_loss_eps(O):
    """scikit-learn clips probabilities to [eps, 1 - eps] in its log-loss, eps the machine
    epsilon of the model's dtype (the dtype of the logits O)."""
    dt = np.asarray(O).dtype
    return float(np.finfo(dt if dt.kind == "f" else np.float64).eps)


def softmax_cross_entropy(O, y, sw=None, clip=True):
    """(loss, dO, P): weighted mean of -log P[i, y_i], P = softmax(O) clipped to [eps, 1 - eps]
    as scikit-learn's log-loss takes it (the gradient is exact: dO = w_i (P - onehot) / sum w).
    clip=False: the exact loss, -log_softmax(O)[i, y_i] (what the gradient is the gradient of,
    well conditioned for finite differences)."""
    eps = _log_loss_eps(O)
    O = _f64(O)
    n, k = O.shape
    w = _weights(sw, n)
    P = softmax(O)
    if clip:
        per_row = -np.log(np.clip(P[np.arange(n), y], eps, 1.0 - eps))
    else:
        per_row = -log_softmax(O)[np.arange(n), y]
    dO = w[:, None] * (P - one_hot(y, k)) / w.sum()
    return np.sum(w * per_row) / w.sum(), dO, P


def sigmoid_binary_cross_entropy(O, Y, sw=None, clip=True):
    """(loss, dO, P): per row sum_j -y log p - (1-y) log(1-p), p clipped to [eps, 1 - eps]
    as scikit-learn's log-loss takes it, weighted mean (the gradient is exact).
    clip=False: the exact loss in its stable form, softplus(o) - y o (log(1 - p) loses
    all precision as p nears 1, so finite differences need this one)."""
    eps = _log_loss_eps(O)
    O, Y = _f64(O), _f64(Y)
    w = _weights(sw, O.shape[0])
    P = logistic(O)
    if clip:
        Pc = np.clip(P, eps, 1.0 - eps)
        per_row = -np.sum(Y * np.log(Pc) + (1.0 - Y) * np.log(1.0 - Pc), axis=1)
    else:
        per_row = np.sum(np.logaddexp(0.0, O) - Y * O, axis=1)
    dO = w[:, None] * (P - Y) / w.sum()
    return np.sum(w * per_row) / w.sum(), dO, P


def squared_error(O, Y, sw=None):
    """(loss, dO, P): per row 0.5 sum_j (o - y)^2, weighted mean; P = O."""
    O, Y = _f64(O), _f64(Y)
    w = _weights(sw, O.shape[0])
    per_row = 0.5 * np.sum((O - Y) ** 2, axis=1)
    dO = w[:, None] * (O - Y) / w.sum()
    return np.sum(w * per_row) / w.sum(), dO, O.copy()


def poisson(O, Y, sw=None):
    """(loss, dO, P): exp output, half Poisson deviance as scikit-learn reports it:
    per row sum_j xlogy(y, y / exp(o)) - y + exp(o), weighted mean; P = exp(O)."""
    O, Y = _f64(O), _f64(Y)
    w = _weights(sw, O.shape[0])
    P = np.exp(O)
    ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
    per_row = np.sum(ylogy - Y * O - Y + P, axis=1)
    dO = w[:, None] * (P - Y) / w.sum()
    return np.sum(w * per_row) / w.sum(), dO, P


OUTPUT_LOSSES = {  # by the codes of fastmlp._registry.OUTPUTS
    OUT_SOFTMAX: softmax_cross_entropy, OUT_LOGISTIC: sigmoid_binary_cross_entropy,
    OUT_IDENTITY: squared_error, OUT_EXP: poisson,
}


def output_activation(out_code, O):
    return {OUT_SOFTMAX: softmax, OUT_LOGISTIC: logistic, OUT_IDENTITY: identity,
            OUT_EXP: lambda a: np.exp(_f64(a))}[out_code](O)


# --- dense layer ---------------------------------------------------------------------------------


def dense_forward(X, W, b, name, param=None, slopes=None, pieces=2):
    """(Z, H): Z = X W + b, H = act(Z)."""
    Z = _f64(X) @ _f64(W) + _f64(b)
    return Z, activation(name, Z, param, slopes, pieces)


def dense_backward(X, W, dZ, lam=0.0):
    """(dW, db, dX): dW = X^T dZ + lam W, db = column sums of dZ, dX = dZ W^T."""
    X, W, dZ = _f64(X), _f64(W), _f64(dZ)
    return X.T @ dZ + lam * W, dZ.sum(axis=0), dZ @ W.T


# --- optimizers (scikit-learn's SGDOptimizer and AdamOptimizer, one step) ------------------------


def sgd_step(theta, grad, velocity, lr, momentum, nesterov):
    """Returns (theta, velocity) after one step; inputs untouched."""
    theta, grad, velocity = _f64(theta), _f64(grad), _f64(velocity)
    v = momentum * velocity - lr * grad
    update = momentum * v - lr * grad if nesterov else v
    return theta + update, v


def adam_step(theta, grad, m, v, lr, beta1, beta2, eps, t):
    """Returns (theta, m, v) after step number t (1-based); inputs untouched."""
    theta, grad, m, v = _f64(theta), _f64(grad), _f64(m), _f64(v)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    return theta - lr_t * m / (np.sqrt(v) + eps), m, v


# --- the whole network ---------------------------------------------------------------------------


def network_forward(spec, theta, X):
    """(O, Zs): the logits and the list of hidden pre-activations, from the flat vector theta."""
    coefs, intercepts, slopes = unpack(spec, _f64(theta))
    H = _f64(X)
    Zs = []
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = H @ W + b
        if l == len(coefs) - 1:
            return Z, Zs
        Zs.append(Z)
        H = activation(spec.activation, Z, spec.param, slopes[l] if slopes else None, spec.pieces)
    raise AssertionError("a network has at least one layer")


def network_predict(spec, theta, X, apply_out=True):
    O, _ = network_forward(spec, theta, X)
    return output_activation(spec.out_code, O) if apply_out else O


def network_loss(spec, theta, X, Y, y, sw, alpha, clip=True):
    """scikit-learn's objective: weighted mean loss + alpha / (2 sum w) * sum of squared weights.

    Y (n, k) targets for the logistic/identity/exp outputs, y (n,) labels for softmax; sw (n,)
    weights or empty for none.  Biases and prelu slopes are not penalised.  clip=False: the
    log-losses unclipped and stable (the objective whose gradient the kernels compute, for
    finite differences); clip=True: as the kernels and scikit-learn report it.
    """
    O, _ = network_forward(spec, theta, X)
    w = _weights(sw, O.shape[0])
    target = y if spec.out_code == OUT_SOFTMAX else Y
    kw = {"clip": clip} if spec.out_code in (OUT_SOFTMAX, OUT_LOGISTIC) else {}
    loss = OUTPUT_LOSSES[spec.out_code](O, target, w, **kw)[0]
    coefs, _, _ = unpack(spec, _f64(theta))
    sq = sum(float(np.sum(W ** 2)) for W in coefs)
    return loss + alpha / (2.0 * w.sum()) * sq
