"""Mini-batch training loop with per-epoch shuffling and early stopping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

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
    evaluate: Callable[[Sequential], dict] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> History:
    """Train in place. With `validation` and `patience`, stop when the validation loss has not
    improved for `patience` epochs and restore the weights of the best epoch."""
    x = np.ascontiguousarray(x, dtype=model.dtype)
    n = len(x)
    if n == 0:
        raise ValueError("cannot train on an empty dataset")
    optimizer.attach(model.params, model.grads, model.decay_mask)
    # One shuffled copy per epoch, written into fixed buffers; batches are contiguous views.
    x_shuffled = np.empty_like(x)
    y_shuffled = np.empty_like(y)
    if validation is not None:
        x_val = np.ascontiguousarray(validation[0], dtype=model.dtype)
        y_val = validation[1]
    history = History()
    best_loss, best_params, waited = np.inf, None, 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        np.take(x, order, axis=0, out=x_shuffled)
        np.take(y, order, axis=0, out=y_shuffled)
        total = 0.0
        for start in range(0, n, batch_size):
            xb = x_shuffled[start : start + batch_size]
            yb = y_shuffled[start : start + batch_size]
            total += loss.forward(model.forward(xb), yb) * len(xb)
            model.backward(loss.backward())
            optimizer.step()
        record = {"epoch": epoch, "loss": total / n}
        if validation is not None:
            record["val_loss"] = loss.forward(model.predict_logits(x_val), y_val)
            if evaluate is not None:
                record.update(evaluate(model))
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
