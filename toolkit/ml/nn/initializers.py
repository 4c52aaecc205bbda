"""Weight initializers: He for ReLU networks, Xavier/Glorot for tanh and sigmoid."""

from __future__ import annotations

from typing import Callable

import numpy as np


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def xavier_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


INITIALIZERS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "he": he_normal,
    "xavier": xavier_uniform,
}

# The initializer each activation wants in front of it.
FOR_ACTIVATION = {"relu": "he", "tanh": "xavier", "sigmoid": "xavier"}


def get(name: str):
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown initializer '{name}'; known: {', '.join(INITIALIZERS)}") from None
