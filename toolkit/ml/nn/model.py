"""A sequential network whose parameters live in one flat array.

Each layer gets views into `params`/`grads`; the optimizer works on the flat arrays. The
architecture is a JSON-able spec so an artifact can rebuild the exact network.

A model lives on one device (`device.py`): its flat arrays and every buffer are arrays of that
device's module. Host arrays cross only at the edges: `initialize` and `set_weights` (one upload
of the whole flat vector), `weights` and `to` (one download), and `predict_logits` (host rows in,
host logits out).
"""

from __future__ import annotations

import numpy as np

from toolkit.ml.nn.device import CPU, Device
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
    def __init__(self, input_dim: int, layers: list[dict], dtype: str | np.dtype = "float32", device: Device = CPU) -> None:
        self.input_dim = input_dim
        self.layer_specs = [dict(s) for s in layers]
        self.dtype = np.dtype(dtype)
        self.device = device
        self.layers: list[Layer] = []
        dim = input_dim
        for i, spec in enumerate(self.layer_specs):
            layer = layer_from_spec(spec, dim, needs_input_grad=i > 0, device=device)
            self.layers.append(layer)
            dim = layer.output_dim(dim)
        self.output_dim = dim
        self._allocate()

    def _allocate(self) -> None:
        xp = self.device.xp
        shapes = [(i, name, shape) for i, layer in enumerate(self.layers) for name, shape in layer.param_shapes().items()]
        total = sum(int(np.prod(shape)) for _, _, shape in shapes)
        self.params = xp.zeros(total, dtype=self.dtype)
        self.grads = xp.zeros(total, dtype=self.dtype)
        decay_mask = np.zeros(total, dtype=self.dtype)
        # (layer index, name, full name, slice of the flat arrays, shape) of every parameter
        self._layout: list[tuple[int, str, str, slice, tuple[int, ...]]] = []
        offset = 0
        per_layer: dict[int, tuple[dict, dict]] = {}
        for i, name, shape in shapes:
            where = slice(offset, offset + int(np.prod(shape)))
            if name in self.layers[i].decayed_params():
                decay_mask[where] = 1
            per_layer.setdefault(i, ({}, {}))
            per_layer[i][0][name], per_layer[i][1][name] = self.params[where].reshape(shape), self.grads[where].reshape(shape)
            self._layout.append((i, name, f"layer{i}.{name}", where, shape))
            offset = where.stop
        self.decay_mask = self.device.to_device(decay_mask)
        self.param_names = [full for _, _, full, _, _ in self._layout]
        for i, (params, grads) in per_layer.items():
            self.layers[i].bind(params, grads)

    def initialize(self, rng: np.random.Generator) -> Sequential:
        """Draw every layer's initial values from `rng` on the host, in layer order, and upload them once."""
        values = [layer.initial_params(rng) for layer in self.layers]  # drawn in layer order
        flat = np.zeros(self.params.shape, dtype=self.dtype)
        for index, name, _, where, _ in self._layout:
            flat[where] = np.asarray(values[index][name]).reshape(-1)
        self.params[...] = self.device.to_device(flat)
        return self

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad: np.ndarray) -> None:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    def logits(self, x, batch_size: int = 4096):
        """Device rows in, device logits out, computed `batch_size` rows at a time."""
        if len(x) <= batch_size:
            return self.forward(x, training=False)
        return self.device.xp.concatenate([self.forward(x[i : i + batch_size], False) for i in range(0, len(x), batch_size)])

    def predict_logits(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Host rows in, host logits out."""
        return self.device.to_host(self.logits(self.device.to_device(np.asarray(x, dtype=self.dtype)), batch_size))

    def to(self, device: Device) -> Sequential:
        """The same network and weights on `device` (self when it is already there)."""
        if device == self.device:
            return self
        other = Sequential(self.input_dim, self.layer_specs, self.dtype, device)
        other.params[...] = device.to_device(self.device.to_host(self.params))
        return other

    # --- weights and serialization

    def weights(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter by name, e.g. 'layer0.W'."""
        flat = np.array(self.device.to_host(self.params), copy=True)
        return {full: flat[where].reshape(shape) for _, _, full, where, shape in self._layout}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        names = {full for _, _, full, _, _ in self._layout}
        missing, extra = names - set(weights), set(weights) - names
        if missing or extra:
            raise ValueError(f"weights do not match the architecture: missing {sorted(missing)}, extra {sorted(extra)}")
        flat = np.empty(self.params.shape, dtype=self.dtype)
        for _, _, full, where, shape in self._layout:
            if weights[full].shape != shape:
                raise ValueError(f"{full}: shape {weights[full].shape} does not match the architecture's {shape}")
            flat[where] = weights[full].reshape(-1)
        self.params[...] = self.device.to_device(flat)

    def spec(self) -> dict:
        return {"input_dim": self.input_dim, "layers": self.layer_specs, "dtype": self.dtype.name}

    @classmethod
    def from_spec(cls, spec: dict, device: Device = CPU) -> Sequential:
        return cls(spec["input_dim"], spec["layers"], spec.get("dtype", "float32"), device)

    def n_params(self) -> int:
        return int(self.params.size)


def regression_values(model: Sequential, x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(n,) a regressor's values in the label's units, float64: the network learns the label
    standardized with the training rows' `mean` and `std` and answers it so."""
    return values_from_logits(model.predict_logits(x), mean, std)


def values_from_logits(logits: np.ndarray, mean: float, std: float) -> np.ndarray:
    return logits[:, 0].astype(np.float64) * std + mean


def class_probabilities(model: Sequential, x: np.ndarray, output: str) -> np.ndarray:
    """(n, n_classes) probabilities from the logits; `output` is the loss's output activation.
    A sigmoid output (one logit) becomes two columns: [P(class 0), P(class 1)]."""
    return probabilities_from_logits(model.predict_logits(x), output)


def probabilities_from_logits(logits: np.ndarray, output: str) -> np.ndarray:
    """Host logits to (n, n_classes) float64 probabilities, as `class_probabilities`."""
    logits = logits.astype(np.float64)
    if output == "sigmoid":
        probabilities = np.empty((len(logits), 2))
        positive = sigmoid(logits[:, 0], out=probabilities[:, 1])
        np.subtract(1, positive, out=probabilities[:, 0])
        return probabilities
    return softmax(logits)
