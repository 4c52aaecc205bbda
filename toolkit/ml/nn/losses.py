"""Losses. `forward(output, y)` returns the mean loss and caches what `backward()` needs;
`backward()` returns d(loss)/d(output), a buffer owned by the loss.

The cross-entropies take logits, not probabilities: fusing the final sigmoid/softmax into
the loss keeps them finite for any logit and makes the gradient a plain `p - y`.
"""

from __future__ import annotations

import numpy as np

from toolkit.ml.nn.layers import Buffers, sigmoid


class Loss:
    name = "loss"
    # What the model's output means and which layer turns it into probabilities.
    output_activation = "identity"

    def forward(self, output: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError


class MeanSquaredError(Loss):
    """mean((output - y)^2) over every element."""

    name = "mse"

    def forward(self, output, y):
        self._diff = output - y.reshape(output.shape)
        return float(np.mean(np.square(self._diff)))

    def backward(self):
        return self._diff * (2.0 / self._diff.size)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits: mean(max(z,0) - z*y + log(1 + exp(-|z|)))."""

    name = "binary_cross_entropy"
    output_activation = "sigmoid"

    def forward(self, output, y):
        z = output
        y = y.reshape(z.shape).astype(z.dtype, copy=False)
        self._z, self._y = z, y
        per_sample = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return float(np.mean(per_sample))

    def backward(self):
        grad = sigmoid(self._z)
        grad -= self._y
        grad /= self._z.shape[0]
        return grad


class SoftmaxCrossEntropy(Loss):
    """Categorical cross-entropy from logits, `y` holds class indices."""

    name = "categorical_cross_entropy"
    output_activation = "softmax"

    def __init__(self) -> None:
        self._buffers = Buffers()

    def forward(self, output, y):
        n = output.shape[0]
        p = self._buffers.get("p", output.shape, output.dtype)
        np.subtract(output, output.max(axis=1, keepdims=True), out=p)
        rows = np.arange(n)
        shifted_true = p[rows, y]
        np.exp(p, out=p)
        total = p.sum(axis=1, keepdims=True)
        p /= total
        self._p, self._rows, self._y = p, rows, y
        return float(np.mean(np.log(total[:, 0]) - shifted_true))

    def backward(self):
        grad = self._p  # softmax - onehot, scaled: reuse the probability buffer
        grad[self._rows, self._y] -= 1
        grad /= grad.shape[0]
        return grad


LOSSES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError,
    "binary_cross_entropy": BinaryCrossEntropy,
    "categorical_cross_entropy": SoftmaxCrossEntropy,
}


def get(name: str) -> Loss:
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss '{name}'; known: {', '.join(LOSSES)}") from None
