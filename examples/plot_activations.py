"""
=========================================
The eight activations and their gradients
=========================================

Every hidden activation fastmlp offers, drawn with the kernels of
:mod:`fastmlp.ops`: :func:`~fastmlp.ops.activation` for the forward pass and
:func:`~fastmlp.ops.activation_grad` for the backward pass, which returns
``dH * f'(z)``; with ``dH`` all ones that is the derivative itself.  The
formulas are in the user guide's page on the maths.
"""

import matplotlib.pyplot as plt
import numpy as np

from fastmlp import ops

z = np.linspace(-4.0, 4.0, 801)
Z = z[None, :]                      # one row, 801 "units"
ones = np.ones_like(Z)

curves = {}
for name in ["identity", "logistic", "tanh", "relu", "leaky_relu", "prelu", "elu"]:
    # leaky_relu's default slope 0.01 is hard to see at this scale: use 0.1
    params = {"negative_slope": 0.1} if name == "leaky_relu" else {}
    H = ops.activation(name, Z, **params)
    dZ = ops.activation_grad(name, ones, Z, **params)
    if name == "prelu":             # prelu also returns the gradient of its slopes
        dZ, _ = dZ
    curves[name] = (H[0], dZ[0])

# %%
# Maxout is not a function of one number: each unit takes the maximum of
# ``pieces`` affine maps of its input.  With two pieces of a scalar input x,
# z1 = x and z2 = -0.5 x - 1, the unit outputs max(z1, z2).  The backward pass
# routes the gradient to the winning piece only, so dh/dx is the slope of the
# piece that won: 1 on one side of the crossing, -0.5 on the other.

slopes = np.array([1.0, -0.5])
offsets = np.array([0.0, -1.0])
pieces = z[:, None] * slopes + offsets          # (801, 2): unit u's pieces in columns 2u, 2u+1
H, argmax = ops.maxout(pieces, pieces=2)
d_pieces = ops.activation_grad("maxout", np.ones_like(H), pieces, pieces=2, argmax=argmax)
curves["maxout"] = (H[:, 0], d_pieces @ slopes)  # chain rule back to x

# %%
# Eight panels: the function in blue, its derivative in orange.

fig, axes = plt.subplots(2, 4, figsize=(12, 5.5), sharex=True, layout="constrained")
titles = {"logistic": "logistic (sigmoid)", "leaky_relu": "leaky_relu (slope 0.1)",
          "prelu": "prelu (slope 0.25)", "elu": "elu (alpha 1)",
          "maxout": "maxout (x, -0.5x - 1)"}
for ax, (name, (h, dh)) in zip(axes.ravel(), curves.items()):
    ax.axhline(0, color="0.85", lw=0.8)
    ax.axvline(0, color="0.85", lw=0.8)
    ax.plot(z, h, color="tab:blue", lw=2, label="f(z)")
    ax.plot(z, dh, color="tab:orange", lw=1.5, ls="--", label="f'(z)")
    ax.set_title(titles.get(name, name))
    ax.set_ylim(-2.2, 4.2)
    ax.grid(alpha=0.3)
for ax in axes[1]:
    ax.set_xlabel("z")
axes[0, 0].legend(loc="upper left")
fig.suptitle("fastmlp.ops: hidden activations and their derivatives")
plt.show()

# %%
# What the panels show: the logistic function and tanh saturate, and their
# derivatives (at most 0.25 and 1) vanish far from 0; relu's derivative is
# 0 for every negative input, leaky_relu and prelu keep a small slope there,
# and elu's derivative decays smoothly to 0 as its output approaches -alpha.
# Maxout learns where its kink is and what the slopes on either side are.
