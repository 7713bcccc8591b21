"""``fastmlp._config``: read, override in a block, reset; the backends read it at call time."""

import numpy as np
import pytest

from fastmlp import MLPClassifier, _config
from fastmlp.backends import cpu


def test_override_restores_and_reset_restores_defaults():
    before = _config.current()
    with _config.override(PREDICT_CHUNK_ROWS=7, CPU_SPLIT_PART_ROWS=0):
        assert _config.PREDICT_CHUNK_ROWS == 7 and _config.CPU_SPLIT_PART_ROWS == 0
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

    # batches cut into parts by their size alone (run in several threads where they may)
    def parts(cap):
        return cpu.Trainer(*args[:5], cap, *args[6:]).parts

    assert cpu.Trainer(*args[:5], 64, *args[6:]).split == (cpu.epoch_threads(2) > 1)
    assert [parts(c) for c in (63, 64, 255, 256, 511, 512, 1024, 4096)] == [1, 2, 2, 2, 2, 4,
                                                                          8, 16]
    with _config.override(CPU_SPLIT_MAX_PARTS=4):
        assert [parts(c) for c in (64, 512, 4096)] == [2, 4, 4]
    with _config.override(CPU_SPLIT_PART_ROWS=16):
        assert [parts(c) for c in (63, 64, 100, 128)] == [1, 4, 4, 8]
    # the parts' extra gradients (parts - 1 parameter vectors) within CPU_SPLIT_MAX_BYTES
    size = clf._spec.n_params * clf._spec.dtype.itemsize
    with _config.override(CPU_SPLIT_MAX_BYTES=3 * size):
        assert [parts(c) for c in (64, 512, 4096)] == [2, 4, 4]
    with _config.override(CPU_SPLIT_MAX_BYTES=size - 1):
        assert parts(4096) == 1
    with _config.override(CPU_SPLIT_MIN_ROWS=65):
        assert parts(64) == 1 and parts(512) == 4
    with _config.override(CPU_SPLIT_MIN_ROWS=0):
        assert parts(64) == 1 and parts(4096) == 1
    # lbfgs's full-batch sums: parts of n rows, from 1
    assert [cpu.split_parts(clf._spec, n) for n in (1, 255, 256, 2048, 10**6)] == [1, 1, 2, 16,
                                                                                    16]
    # the threads: the largest power of two dividing the parts, up to the threads allowed
    assert [cpu.epoch_threads(p, 3) for p in (1, 2, 4, 8)] == [1, 2, 2, 2]
    assert [cpu.epoch_threads(p, 8) for p in (1, 2, 4, 16)] == [1, 2, 4, 8]
    with _config.override(CPU_THREADS=4):
        assert cpu.cpu_threads() == (4 if cpu.sync.SPLIT else 1)
