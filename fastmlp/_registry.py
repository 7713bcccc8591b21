"""The name -> code tables shared by the estimators and both backends.

Every code the compiled kernels switch on is defined here, once, as a named
constant; kernels, tests and benchmarks import the name (numba freezes a
module global at compile time, so a name costs nothing at run time).

An elementwise activation is added by one entry here (its code name and its
row in ``ACTIVATIONS``) and one branch in each of ``act`` and ``act_grad`` of
``fastmlp/backends/scalar.py``, which both backends compile; nothing else
changes (``tests/test_registry.py`` adds one that way and trains with it).
Validation of the ``activation=`` parameter reads the same table, so the
accepted names and the kernels can never disagree.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Activation:
    """What a hidden activation is and what its backward pass reads.

    code: the integer the compiled kernels switch on.
    cache: "H" when the derivative is computed from the output (the
        pre-activation buffer is then overwritten in place), "Z" when it needs
        the pre-activation, "argmax" for maxout.
    init_factor: numerator of the Glorot uniform bound sqrt(f / (fan_in + fan_out)),
        as scikit-learn uses it (2 for logistic, 6 otherwise).
    """

    code: int
    cache: str
    init_factor: float = 6.0


# the activation codes the kernels switch on (prelu and maxout also shape the
# parameter layout and have kernels of their own; the others are elementwise)
IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU, PRELU, ELU, MAXOUT = range(8)

ACTIVATIONS = {
    "identity": Activation(IDENTITY, "H"),
    "logistic": Activation(LOGISTIC, "H", init_factor=2.0),
    "tanh": Activation(TANH, "H"),
    "relu": Activation(RELU, "H"),
    "leaky_relu": Activation(LEAKY_RELU, "H"),
    "prelu": Activation(PRELU, "Z"),
    "elu": Activation(ELU, "H"),
    "maxout": Activation(MAXOUT, "argmax"),
}
# "sigmoid" is accepted as another name for scikit-learn's "logistic".
ACTIVATION_ALIASES = {"sigmoid": "logistic"}

# Output layer + loss pairs.  Each is canonical (its gradient w.r.t. the
# logits is prediction - target), which is what lets the loss kernels return
# dO in the same pass as the loss.
OUT_SOFTMAX, OUT_LOGISTIC, OUT_IDENTITY, OUT_EXP = range(4)
OUTPUTS = {
    "softmax": OUT_SOFTMAX,    # multiclass: softmax + mean cross-entropy, integer labels
    "logistic": OUT_LOGISTIC,  # binary / multilabel: sigmoid + summed binary cross-entropy
    "identity": OUT_IDENTITY,  # regression: identity + half squared error
    "exp": OUT_EXP,            # regression, loss="poisson": exp + half Poisson deviance
}

# the stochastic solvers and the code the compiled epoch switches on;
# "lbfgs" runs in scipy over the backends' full-batch loss and gradient
SGD, ADAM = range(2)
SOLVERS = {"sgd": SGD, "adam": ADAM}
ALL_SOLVERS = ("lbfgs", "sgd", "adam")


def resolve_activation(name):
    """Return the canonical activation name, or raise a ValueError naming the choices."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string, got {type(name).__name__}.")
    canonical = ACTIVATION_ALIASES.get(name, name)
    if canonical not in ACTIVATIONS:
        choices = sorted(set(ACTIVATIONS) | set(ACTIVATION_ALIASES))
        raise ValueError(f"Unknown activation {name!r}; choose one of {choices}.")
    return canonical
