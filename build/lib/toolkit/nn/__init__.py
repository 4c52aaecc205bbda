"""A small numpy neural-network core: explicit forward/backward layers, fused optimizers,
a deterministic mini-batch training loop and classification metrics."""

from toolkit.nn.layers import Dense, ReLU, Sigmoid, Softmax, Tanh, sigmoid, softmax
from toolkit.nn.losses import BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy
from toolkit.nn.model import Sequential, mlp_spec
from toolkit.nn.optimizers import SGD, Adam
from toolkit.nn.training import History, fit

__all__ = [
    "Adam", "BinaryCrossEntropy", "Dense", "History", "MeanSquaredError", "ReLU", "SGD", "Sequential",
    "Sigmoid", "Softmax", "SoftmaxCrossEntropy", "Tanh", "fit", "mlp_spec", "sigmoid", "softmax",
]
