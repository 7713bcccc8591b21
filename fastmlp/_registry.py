"""The name -> code tables shared by the estimators and both backends.

An activation or an output is added by adding one row here and one branch to
the scalar functions of each backend.  Validation of the ``activation=``
parameter reads the same table, so the accepted names and the kernels can
never disagree.
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


ACTIVATIONS = {
    "identity": Activation(0, "H"),
    "logistic": Activation(1, "H", init_factor=2.0),
    "tanh": Activation(2, "H"),
    "relu": Activation(3, "H"),
    "leaky_relu": Activation(4, "H"),
    "prelu": Activation(5, "Z"),
    "elu": Activation(6, "H"),
    "maxout": Activation(7, "argmax"),
}
# "sigmoid" is accepted as another name for scikit-learn's "logistic".
ACTIVATION_ALIASES = {"sigmoid": "logistic"}

IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU, PRELU, ELU, MAXOUT = range(8)

# Output layer + loss pairs.  Each is canonical (its gradient w.r.t. the
# logits is prediction - target), which is what lets the loss kernels return
# dO in the same pass as the loss.
OUTPUTS = {
    "softmax": 0,   # multiclass: softmax + mean cross-entropy, integer labels
    "logistic": 1,  # binary / multilabel: sigmoid + summed binary cross-entropy
    "identity": 2,  # regression: identity + half squared error
    "exp": 3,       # regression, loss="poisson": exp + half Poisson deviance
}
OUT_SOFTMAX, OUT_LOGISTIC, OUT_IDENTITY, OUT_EXP = range(4)

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
