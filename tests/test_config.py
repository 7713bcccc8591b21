"""``fastmlp._config``: read, override in a block, reset; the backends read it at call time."""

import numpy as np
import pytest

from fastmlp import MLPClassifier, _config
from fastmlp.backends import cpu


def test_override_restores_and_reset_restores_defaults():
    before = _config.current()
    with _config.override(PREDICT_CHUNK_ROWS=7, CPU_SERIAL_GEMM_BELOW=0):
        assert _config.PREDICT_CHUNK_ROWS == 7 and _config.CPU_SERIAL_GEMM_BELOW == 0
        with _config.override(PREDICT_CHUNK_ROWS=3):  # nests
            assert _config.current()["PREDICT_CHUNK_ROWS"] == 3
        assert _config.PREDICT_CHUNK_ROWS == 7
    assert _config.current() == before
    with pytest.raises(RuntimeError):
        with _config.override(FULL_BATCH_CHUNK_ROWS=5):
            raise RuntimeError("an error inside the block")
    assert _config.current() == before

    _config.FULL_BATCH_CHUNK_ROWS = 5  # a stray assignment ...
    _config.reset()  # ... is undone
    assert _config.current() == before


def test_override_refuses_unknown_and_compile_time_settings():
    with pytest.raises(ValueError, match="Unknown setting"):
        with _config.override(PREDICT_CHUNK_ROW=7):
            pass
    with pytest.raises(ValueError, match="compile-time"):
        with _config.override(FASTMATH=set()):
            pass
    assert "FASTMATH" in _config.COMPILE_TIME and "FASTMATH" in _config.current()


def test_cpu_backend_reads_settings_at_call_time(rng, monkeypatch):
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = rng.integers(0, 2, 40)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, backend="cpu").fit(X, y)
    caps = []
    real = cpu.predict_forward

    def spy(*args):
        caps.append(args[-3])  # (..., ws, iws, cap, out, check)
        return real(*args)

    monkeypatch.setattr(cpu, "predict_forward", spy)
    whole = cpu.predict(clf._spec, clf._theta, X, True)
    with _config.override(PREDICT_CHUNK_ROWS=7):
        chunked = cpu.predict(clf._spec, clf._theta, X, True)
    assert caps == [40, 7]
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)

    args = (clf._spec, X, np.zeros((0, 2), np.float32), y.astype(np.int64),
            np.zeros(0, np.float32), 8, clf._theta.copy(), clf._new_optimizer(clf._theta), 0.0)
    assert cpu.Trainer(*args).parts == 1

    # halved batches (in two threads where numba's thread count allows), whatever the threads: batches of at least CPU_SPLIT_MIN_ROWS rows and GEMMs below the limit
    args = args[:5] + (64,) + args[6:]
    assert cpu.Trainer(*args).split == cpu._can_split()
    assert cpu.Trainer(*args).parts == 2
    with _config.override(CPU_SPLIT_GEMM_BELOW=64 * 3 * 4):  # the 64 x 3 x 4 GEMM is not below
        assert cpu.Trainer(*args).parts == 1
    with _config.override(CPU_SPLIT_MIN_ROWS=65):
        assert cpu.Trainer(*args).parts == 1
    with _config.override(CPU_SPLIT_MIN_ROWS=0):
        assert cpu.Trainer(*args).parts == 1
