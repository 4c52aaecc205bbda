"""Optimizers over the model's flat parameter and gradient arrays.

Because every parameter lives in one contiguous array, one step is a handful of fused
numpy calls with preallocated scratch, whatever the number of layers.
L2 weight decay adds `l2 * w` to the gradient of weights (not biases), as in classic
"coupled" L2 regularization.

The step runs on the model's device with its array module (`attach`); the step count and step
size are host numbers passed as scalars, never read back from the device.
"""

from __future__ import annotations

import math

import numpy as np


class Optimizer:
    def __init__(self, learning_rate: float, l2: float = 0.0) -> None:
        self.learning_rate, self.l2 = learning_rate, l2
        self.params: np.ndarray | None = None

    def attach(self, params: np.ndarray, grads: np.ndarray, decay_mask: np.ndarray, xp=np) -> None:
        """Bind to the model's flat arrays (on the device of `xp`); `decay_mask` is 1 where L2
        applies, 0 elsewhere."""
        self.xp = xp
        self.params, self.grads = params, grads
        self._decay = (decay_mask * self.l2).astype(params.dtype) if self.l2 else None
        self._scratch = xp.empty_like(params)
        self._init_state()

    def _init_state(self) -> None:
        pass

    def _regularized_grad(self) -> np.ndarray:
        if self._decay is not None:
            self.xp.multiply(self.params, self._decay, out=self._scratch)
            self.grads += self._scratch
        return self.grads

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum: v = mu*v - lr*g; w += v."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.9, l2: float = 0.0) -> None:
        super().__init__(learning_rate, l2)
        self.momentum = momentum

    def _init_state(self) -> None:
        self.velocity = self.xp.zeros_like(self.params)

    def step(self) -> None:
        grad = self._regularized_grad()
        self.velocity *= self.momentum
        self.xp.multiply(grad, self.learning_rate, out=self._scratch)
        self.velocity -= self._scratch
        self.params += self.velocity


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction folded into the step size.

    The moments are kept unnormalized, M = m / (1 - b1) and V = v / (1 - b2), so each update is
    M = b1·M + g and V = b2·V + g² (two and three passes over the flat arrays instead of three and
    four) and the constant factors move into the step size and epsilon: ten passes a step."""

    def __init__(
        self, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, l2: float = 0.0
    ) -> None:
        super().__init__(learning_rate, l2)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _init_state(self) -> None:
        self.m = self.xp.zeros_like(self.params)  # M = m / (1 - b1)
        self.v = self.xp.zeros_like(self.params)  # V = v / (1 - b2)
        self.t = 0

    def step(self) -> None:
        grad = self._regularized_grad()
        self.t += 1
        xp, b1, b2, scratch = self.xp, self.beta1, self.beta2, self._scratch
        self.m *= b1
        self.m += grad
        self.v *= b2
        xp.square(grad, out=scratch)
        self.v += scratch
        # w -= lr * m_hat / (sqrt(v_hat) + eps), with m_hat = (1 - b1) M / c1 and v_hat = (1 - b2) V / c2:
        # w -= step * M / (sqrt(V) + eps * r), r = sqrt(c2 / (1 - b2)), step = lr (1 - b1) r / c1.
        # Python floats (math, not np) keep float32 arrays in float32 loops under NEP 50.
        correction1, correction2 = 1 - b1**self.t, 1 - b2**self.t
        r = math.sqrt(correction2 / (1 - b2))
        xp.sqrt(self.v, out=scratch)
        scratch += self.eps * r
        xp.divide(self.m, scratch, out=scratch)
        scratch *= self.learning_rate * (1 - b1) * r / correction1
        self.params -= scratch


def get(name: str, learning_rate: float, l2: float = 0.0, momentum: float = 0.9) -> Optimizer:
    if name == "adam":
        return Adam(learning_rate, l2=l2)
    if name == "sgd":
        return SGD(learning_rate, momentum=momentum, l2=l2)
    raise ValueError(f"unknown optimizer '{name}'; known: adam, sgd")
