"""The dask test files' shared data: labelled blobs and their dask blocks.

(Their shared LocalCluster is the ``client`` fixture of tests/conftest.py.)
"""

import numpy as np

ROWS = (100, 250, 50, 200)  # four blocks of unequal size, two per worker


def blobs(seed=0, n=600, d=8, k=3):
    """(X, y): k Gaussian blobs in d dimensions, n rows."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    return centers[y] + rng.normal(size=(n, d)), y


def blocks(X, *others):
    """X and the per-row arrays ``others`` as dask arrays in blocks of ``ROWS`` rows."""
    import dask.array as da

    out = [da.from_array(X, chunks=(ROWS, X.shape[1]))]
    out += [da.from_array(a, chunks=(ROWS,) + a.shape[1:]) for a in others]
    return out
