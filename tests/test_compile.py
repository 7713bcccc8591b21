"""A first fit compiles only the code its network uses.

The CPU kernels take what a network does not use as None (SGD's velocity for
an Adam fit, float targets for a softmax classifier, the argmax workspace for
anything but maxout), and numba compiles them without the code behind
``if x is not None:`` (see ``fastmlp.backends.cpu.train``).  In a fresh
process with an empty numba cache, a softmax / relu / Adam classifier must
therefore not compile the SGD step, the maxout kernels or the float outputs'
row losses, and a squared-error / tanh / SGD regressor not the Adam step or the
softmax; each must compile what it does use (the check would pass vacuously
otherwise).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

FIT = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    from numba.core import event

    compiled = set()

    class Listener(event.Listener):
        def on_start(self, ev):
            compiled.add(ev.data["dispatcher"].py_func.__name__)

        def on_end(self, ev):
            pass

    event.register("numba:compile", Listener())
    from fastmlp import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6))
    if sys.argv[1] == "classifier":
        y = rng.integers(0, 3, 90)  # three classes: the softmax output
        est = MLPClassifier(hidden_layer_sizes=(7,), max_iter=2, batch_size=30, random_state=0)
    else:
        y = rng.normal(size=90)
        est = MLPRegressor(hidden_layer_sizes=(7,), activation="tanh", solver="sgd",
                           max_iter=2, batch_size=30, random_state=0)
    est.fit(X, y)
    print(json.dumps(sorted(compiled)))
""")

COMMON = {"train_epoch", "forward_batch", "bias_act_forward", "act_backward", "dense_grads",
          "output_loss"}
CASES = {
    # (kernels the fit must compile, kernels it must not)
    "classifier": (COMMON | {"adam_step", "softmax_row"},
                   {"sgd_step", "maxout_forward", "maxout_backward", "sigmoid_bce_row",
                    "squared_error_row", "poisson_row", "dense_backward"}),
    "regressor": (COMMON | {"sgd_step", "squared_error_row"},
                  {"adam_step", "_adam_update", "softmax_row", "maxout_forward",
                   "maxout_backward", "dense_backward"}),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_first_fit_compiles_only_its_own_code(kind, tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-W", "ignore", "-c", FIT, kind], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    compiled = set(json.loads(run.stdout.strip().splitlines()[-1]))
    used, unused = CASES[kind]
    assert used <= compiled, used - compiled
    assert not unused & compiled, unused & compiled
