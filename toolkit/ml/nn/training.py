"""Mini-batch training loop with per-epoch shuffling and early stopping.

Host and device meet only at the edges (see `device.py`): the rows go to the model's device once
per fit (or, when they exceed the device's memory budget, in large chunks of whole batches each
epoch); each epoch sends one shuffled order there and reads back one pair of numbers (the training
and validation loss) and the validation logits; the loss is summed on the device. Shuffles come
from the host's NumPy generator, so every device sees the same batches in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from toolkit.ml.nn.losses import Loss
from toolkit.ml.nn.model import Sequential
from toolkit.ml.nn.optimizers import Optimizer


@dataclass
class History:
    """Per-epoch records: {'epoch', 'loss', 'val_loss', plus whatever `evaluate` returned}."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def series(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]


def fit(
    model: Sequential,
    loss: Loss,
    optimizer: Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int | None = None,
    evaluate: Callable[[np.ndarray], dict] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> History:
    """Train in place on the model's device. `x`, `y` and `validation` are host arrays. With
    `validation` and `patience`, stop when the validation loss has not improved for `patience`
    epochs and restore the weights of the best epoch. `evaluate` gets the validation logits (host)."""
    device, xp = model.device, model.device.xp
    x = np.ascontiguousarray(x, dtype=model.dtype)
    y = np.ascontiguousarray(y)
    n = len(x)
    if n == 0:
        raise ValueError("cannot train on an empty dataset")
    loss.attach(device)
    optimizer.attach(model.params, model.grads, model.decay_mask, xp)
    batches = _Batches(device, x, y, batch_size)
    if validation is not None:
        x_val = device.to_device(np.ascontiguousarray(validation[0], dtype=model.dtype))
        y_val = device.to_device(np.ascontiguousarray(validation[1]))
    history = History()
    best_loss, best_params, waited = np.inf, None, 0
    for epoch in range(1, epochs + 1):
        total = xp.zeros((), dtype=np.float64)
        for xb, yb in batches.epoch(rng.permutation(n)):
            total += loss.forward(model.forward(xb), yb) * len(xb)
            model.backward(loss.backward())
            optimizer.step()
        val_logits = None
        if validation is not None:
            val_logits = model.logits(x_val)
            total = xp.stack([total, loss.forward(val_logits, y_val).astype(np.float64)])
        losses = device.to_host(total).reshape(-1)  # the epoch's one read of the losses
        record = {"epoch": epoch, "loss": float(losses[0]) / n}
        if validation is not None:
            record["val_loss"] = float(losses[1])
            if evaluate is not None:
                record.update(evaluate(device.to_host(val_logits)))
        history.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if validation is not None and patience is not None:
            if record["val_loss"] < best_loss - 1e-7:
                best_loss, best_params, waited = record["val_loss"], model.params.copy(), 0
                history.best_epoch = epoch
            else:
                waited += 1
                if waited >= patience:
                    history.stopped_early = True
                    break
    if best_params is not None:
        model.params[...] = best_params
    elif history.best_epoch is None:
        history.best_epoch = len(history.epochs)
    return history


class _Batches:
    """An epoch's mini-batches on the device, in the order of a host permutation.

    When the rows fit the device's budget they are uploaded once and each epoch gathers them into
    fixed shuffle buffers there (batches are contiguous views); otherwise each epoch uploads chunks
    of whole batches gathered on the host. Both give the same batches in the same order."""

    def __init__(self, device, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        self.device, self.x, self.y, self.batch_size = device, x, y, batch_size
        budget = device.memory_budget
        # Two copies of the rows live on the device when resident: the rows and their shuffle.
        self.resident = budget is None or 2 * (x.nbytes + y.nbytes) <= budget
        if self.resident:
            self._x, self._y = device.to_device(x), device.to_device(y)
            self._x_shuffled, self._y_shuffled = device.xp.empty_like(self._x), device.xp.empty_like(self._y)
        else:
            row_bytes = (x.nbytes + y.nbytes) // max(len(x), 1) or 1
            self.chunk_rows = max(1, budget // row_bytes // batch_size) * batch_size

    def epoch(self, order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        device, xp, size = self.device, self.device.xp, self.batch_size
        if self.resident:
            order = device.to_device(order)
            xp.take(self._x, order, axis=0, out=self._x_shuffled)
            xp.take(self._y, order, axis=0, out=self._y_shuffled)
            for start in range(0, len(order), size):
                yield self._x_shuffled[start : start + size], self._y_shuffled[start : start + size]
            return
        for chunk in range(0, len(order), self.chunk_rows):
            rows = order[chunk : chunk + self.chunk_rows]
            xs, ys = device.to_device(self.x[rows]), device.to_device(self.y[rows])
            for start in range(0, len(rows), size):
                yield xs[start : start + size], ys[start : start + size]
