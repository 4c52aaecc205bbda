"""Losses. `forward(output, y)` returns the mean loss and caches what `backward()` needs;
`backward()` returns d(loss)/d(output), a buffer owned by the loss.

The cross-entropies take logits, not probabilities: fusing the final sigmoid/softmax into
the loss keeps them finite for any logit and makes the gradient a plain `p - y`. Given
`class_weights` (one per class index), each sample's loss and gradient are scaled by its class's
weight and the mean is still over samples (balanced weights average 1, so the learning rate keeps
its meaning).

The mean loss is a 0-d array on the loss's device (`attach`), not a Python float: the training
loop sums it there and reads it once per epoch. `float()` it outside the loop.
"""

from __future__ import annotations

import numpy as np

from toolkit.ml.nn.device import CPU, Device
from toolkit.ml.nn.layers import Buffers, sigmoid


class Loss:
    name = "loss"
    # What the model's output means and which layer turns it into probabilities.
    output_activation = "identity"

    def __init__(self, class_weights: np.ndarray | None = None) -> None:
        self.class_weights = class_weights  # host array; `attach` puts a copy on the device
        self.attach(CPU)

    def attach(self, device: Device) -> Loss:
        """Compute on `device` from now on (the model's)."""
        self.xp = device.xp
        self._weights = None if self.class_weights is None else device.to_device(np.asarray(self.class_weights))
        return self

    def forward(self, output: np.ndarray, y: np.ndarray):
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def _sample_weights(self, y, dtype):
        """Each sample's class weight, or None without class weights."""
        return None if self._weights is None else self._weights.astype(dtype)[y.astype(np.intp)]


class MeanSquaredError(Loss):
    """mean((output - y)^2) over every element."""

    name = "mse"

    def forward(self, output, y):
        self._diff = output - y.reshape(output.shape)
        return self.xp.square(self._diff).mean()

    def backward(self):
        return self._diff * (2.0 / self._diff.size)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits: mean(w_y * (max(z,0) - z*y + log(1 + exp(-|z|))))."""

    name = "binary_cross_entropy"
    output_activation = "sigmoid"

    def forward(self, output, y):
        xp, z = self.xp, output
        y = y.reshape(z.shape).astype(z.dtype, copy=False)
        self._z, self._y = z, y
        per_sample = xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
        self._w = self._sample_weights(y, z.dtype)
        if self._w is not None:
            per_sample *= self._w
        return per_sample.mean()

    def backward(self):
        grad = sigmoid(self._z, xp=self.xp)
        grad -= self._y
        if self._w is not None:
            grad *= self._w
        grad /= self._z.shape[0]
        return grad


class SoftmaxCrossEntropy(Loss):
    """Categorical cross-entropy from logits, `y` holds class indices."""

    name = "categorical_cross_entropy"
    output_activation = "softmax"

    def attach(self, device: Device) -> Loss:
        self._buffers = Buffers(device.xp)
        return super().attach(device)

    def forward(self, output, y):
        xp, n = self.xp, output.shape[0]
        p = self._buffers.get("p", output.shape, output.dtype)
        xp.subtract(output, output.max(axis=1, keepdims=True), out=p)
        rows = xp.arange(n)
        shifted_true = p[rows, y]
        xp.exp(p, out=p)
        total = p.sum(axis=1, keepdims=True)
        p /= total
        self._p, self._rows, self._y = p, rows, y
        per_sample = xp.log(total[:, 0]) - shifted_true
        self._w = self._sample_weights(y, output.dtype)
        if self._w is not None:
            per_sample *= self._w
        return per_sample.mean()

    def backward(self):
        grad = self._p  # softmax - onehot, scaled: reuse the probability buffer
        grad[self._rows, self._y] -= 1
        if self._w is not None:
            grad *= self._w[:, None]
        grad /= grad.shape[0]
        return grad


LOSSES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError,
    "binary_cross_entropy": BinaryCrossEntropy,
    "categorical_cross_entropy": SoftmaxCrossEntropy,
}


def get(name: str, class_weights: np.ndarray | None = None) -> Loss:
    """The loss `name`; `class_weights` (per class index) for the cross-entropies only."""
    try:
        kind = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss '{name}'; known: {', '.join(LOSSES)}") from None
    if class_weights is not None and kind is MeanSquaredError:
        raise ValueError("class weights apply to a classification loss only")
    return kind(class_weights)


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """n / (k · count_c) per class (scikit-learn's 'balanced'): every class weighs as much in total."""
    counts = np.bincount(y.astype(np.intp), minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
