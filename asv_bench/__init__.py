"""asv benchmarks of fastmlp: the estimators (``bench_estimators``) and the kernels (``bench_kernels``).

Each class is one subject, parametrised over backend ("cpu", "cuda"), dtype
and size; ``setup`` builds the data and runs the code once, so numba's
compilation is never timed.  A backend this machine lacks raises
NotImplementedError in ``setup``, which asv reports as skipped.
"""

import os
import sys

try:  # installed (pip install -e ., or asv's own environments): use that
    import fastmlp  # noqa: F401
except ImportError:  # "asv run --python=same" from a plain checkout: use the checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
