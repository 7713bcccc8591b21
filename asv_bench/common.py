"""Data, sizes and the backend check shared by the asv benchmarks."""

import numpy as np

BACKENDS = ["cpu", "cuda"]
DTYPES = ["float32", "float64"]

# name -> rows, features, classes, hidden layers, batch size, epochs
SIZES = {
    "small": dict(n=2000, d=40, k=10, hidden=(100, 100), batch=100, epochs=5),
    "mnist": dict(n=10000, d=784, k=10, hidden=(256, 128), batch=256, epochs=1),
}


def require(backend):
    """Raise NotImplementedError (asv: skipped) unless ``backend`` runs here for real."""
    import fastmlp

    if backend not in fastmlp.available_backends():
        raise NotImplementedError(f"backend {backend!r} is not available on this machine")
    if backend == "cuda":
        from fastmlp.backends import cuda

        if cuda.is_simulated():
            raise NotImplementedError("the CUDA simulator is not worth timing")


def make_data(size, dtype, seed=0):
    """A learnable classification problem of the named size: labels of a random linear map."""
    c = SIZES[size]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((c["n"], c["d"])).astype(dtype)
    W = rng.standard_normal((c["d"], c["k"]))
    y = np.argmax(X @ W + 0.5 * rng.standard_normal((c["n"], c["k"])), axis=1)
    return X, y


def estimator(size, backend, dtype, **kw):
    """fastmlp.MLPClassifier for the named size, running every epoch (no early stop)."""
    import fastmlp

    c = SIZES[size]
    params = dict(hidden_layer_sizes=c["hidden"], batch_size=c["batch"], max_iter=c["epochs"],
                  random_state=0, tol=0.0, n_iter_no_change=10**9, backend=backend, dtype=dtype)
    params.update(kw)
    return fastmlp.MLPClassifier(**params)
