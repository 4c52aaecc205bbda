"""A sequential network whose parameters live in one flat array.

Each layer gets views into `params`/`grads`; the optimizer works on the flat arrays. The
architecture is a JSON-able spec so an artifact can rebuild the exact network.
"""

from __future__ import annotations

import numpy as np

from toolkit.ml.nn.initializers import FOR_ACTIVATION
from toolkit.ml.nn.layers import Layer, layer_from_spec, sigmoid, softmax


def mlp_spec(hidden_layers: list[int], output_dim: int, activation: str = "relu") -> list[dict]:
    """Dense/activation pairs, then a linear output layer (logits)."""
    init = FOR_ACTIVATION.get(activation, "xavier")
    specs: list[dict] = []
    for units in hidden_layers:
        specs += [{"type": "dense", "units": units, "init": init}, {"type": activation}]
    specs.append({"type": "dense", "units": output_dim, "init": "xavier"})
    return specs


class Sequential:
    def __init__(self, input_dim: int, layers: list[dict], dtype: str | np.dtype = "float32") -> None:
        self.input_dim = input_dim
        self.layer_specs = [dict(s) for s in layers]
        self.dtype = np.dtype(dtype)
        self.layers: list[Layer] = []
        dim = input_dim
        for i, spec in enumerate(self.layer_specs):
            layer = layer_from_spec(spec, dim, needs_input_grad=i > 0)
            self.layers.append(layer)
            dim = layer.output_dim(dim)
        self.output_dim = dim
        self._allocate()

    def _allocate(self) -> None:
        shapes = [(i, name, shape) for i, layer in enumerate(self.layers) for name, shape in layer.param_shapes().items()]
        total = sum(int(np.prod(shape)) for _, _, shape in shapes)
        self.params = np.zeros(total, dtype=self.dtype)
        self.grads = np.zeros(total, dtype=self.dtype)
        self.decay_mask = np.zeros(total, dtype=self.dtype)
        self.param_names: list[str] = []
        self._views: dict[str, np.ndarray] = {}
        offset = 0
        per_layer: dict[int, tuple[dict, dict]] = {}
        for i, name, shape in shapes:
            size = int(np.prod(shape))
            p = self.params[offset : offset + size].reshape(shape)
            g = self.grads[offset : offset + size].reshape(shape)
            if name in self.layers[i].decayed_params():
                self.decay_mask[offset : offset + size] = 1
            per_layer.setdefault(i, ({}, {}))
            per_layer[i][0][name], per_layer[i][1][name] = p, g
            full = f"layer{i}.{name}"
            self.param_names.append(full)
            self._views[full] = p
            offset += size
        for i, (params, grads) in per_layer.items():
            self.layers[i].bind(params, grads)

    def initialize(self, rng: np.random.Generator) -> Sequential:
        for layer in self.layers:
            layer.init_params(rng)
        return self

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad: np.ndarray) -> None:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    def predict_logits(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if len(x) <= batch_size:
            return self.forward(x, training=False)
        return np.concatenate([self.forward(x[i : i + batch_size], False) for i in range(0, len(x), batch_size)])

    # --- weights and serialization

    def weights(self) -> dict[str, np.ndarray]:
        """Copies of every parameter by name, e.g. 'layer0.W'."""
        return {name: view.copy() for name, view in self._views.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        missing = set(self._views) - set(weights)
        extra = set(weights) - set(self._views)
        if missing or extra:
            raise ValueError(f"weights do not match the architecture: missing {sorted(missing)}, extra {sorted(extra)}")
        for name, view in self._views.items():
            if weights[name].shape != view.shape:
                raise ValueError(f"{name}: shape {weights[name].shape} does not match the architecture's {view.shape}")
            view[...] = weights[name]

    def spec(self) -> dict:
        return {"input_dim": self.input_dim, "layers": self.layer_specs, "dtype": self.dtype.name}

    @classmethod
    def from_spec(cls, spec: dict) -> Sequential:
        return cls(spec["input_dim"], spec["layers"], spec.get("dtype", "float32"))

    def n_params(self) -> int:
        return int(self.params.size)


def regression_values(model: Sequential, x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(n,) a regressor's values in the label's units, float64: the network learns the label
    standardized with the training rows' `mean` and `std` and answers it so."""
    return model.predict_logits(x)[:, 0].astype(np.float64) * std + mean


def class_probabilities(model: Sequential, x: np.ndarray, output: str) -> np.ndarray:
    """(n, n_classes) probabilities from the logits; `output` is the loss's output activation.
    A sigmoid output (one logit) becomes two columns: [P(class 0), P(class 1)]."""
    logits = model.predict_logits(x).astype(np.float64)
    if output == "sigmoid":
        probabilities = np.empty((len(logits), 2))
        positive = sigmoid(logits[:, 0], out=probabilities[:, 1])
        np.subtract(1, positive, out=probabilities[:, 0])
        return probabilities
    return softmax(logits)
