"""A first fit compiles only the code its network uses.

The CPU kernels take what a network does not use as None (SGD's velocity for
an Adam fit, float targets for a softmax classifier, the argmax workspace for
anything but maxout), and numba compiles them without the code behind
``if x is not None:`` (see ``fastmlp.backends.cpu.train``).  In a fresh
process with an empty numba cache, a softmax / relu / Adam fit must therefore
not compile the SGD step, the maxout kernels or the float outputs' row losses,
and must compile what it does use (the check would pass vacuously otherwise).
"""

import json
import os
import subprocess
import sys
import textwrap

FIT = textwrap.dedent("""
    import json
    import numpy as np
    from numba.core import event

    compiled = set()

    class Listener(event.Listener):
        def on_start(self, ev):
            compiled.add(ev.data["dispatcher"].py_func.__name__)

        def on_end(self, ev):
            pass

    event.register("numba:compile", Listener())
    from fastmlp import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6))
    y = rng.integers(0, 3, 90)  # three classes: the softmax output
    MLPClassifier(hidden_layer_sizes=(7,), max_iter=2, batch_size=30,
                  random_state=0).fit(X, y)
    print(json.dumps(sorted(compiled)))
""")


def test_a_softmax_relu_adam_fit_compiles_only_its_own_code(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-W", "ignore", "-c", FIT], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    compiled = set(json.loads(run.stdout.strip().splitlines()[-1]))
    used = {"train_epoch", "forward_batch", "bias_act_forward", "act_backward",
            "dense_backward", "output_loss", "adam_step", "softmax_row"}
    assert used <= compiled, used - compiled
    unused = {"sgd_step", "maxout_forward", "maxout_backward", "sigmoid_bce_row",
              "squared_error_row", "poisson_row"}
    assert not unused & compiled, unused & compiled
