"""The numpy core: every layer's and loss's gradient against central finite differences,
optimizers against their textbook update, early stopping, determinism. Each runs on NumPy and on
the strict stand-in for CuPy (tests/strict_array_module.py), whose arrays refuse any host round
trip: the `device` fixture."""

from __future__ import annotations

import numpy as np
import pytest
from strict_array_module import strict_device

from toolkit.ml.nn.device import CPU
from toolkit.ml.nn.layers import Dense, ReLU, Sigmoid, Softmax, Tanh, sigmoid
from toolkit.ml.nn.losses import BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy, balanced_class_weights
from toolkit.ml.nn.losses import get as get_loss
from toolkit.ml.nn.metrics import classification_report, roc_auc
from toolkit.ml.nn.model import Sequential, mlp_spec
from toolkit.ml.nn.optimizers import SGD, Adam
from toolkit.ml.nn.training import fit

EPS = 1e-6


@pytest.fixture(params=["numpy", "strict"])
def device(request):
    """The CPU device, or a device on the strict stand-in for CuPy."""
    return CPU if request.param == "numpy" else strict_device()


def numeric_grad(f, x) -> np.ndarray:
    """Central differences of `f()` with respect to each element of `x` (a host or device array)."""
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + EPS
        plus = f()
        x[i] = saved - EPS
        minus = f()
        x[i] = saved
        grad[i] = (plus - minus) / (2 * EPS)
    return grad


def bound_dense(rng, device, n_in=4, n_out=3) -> Dense:
    layer = Dense(n_in, n_out, device=device)
    xp = device.xp
    params = {"W": xp.zeros((n_in, n_out)), "b": xp.zeros(n_out)}
    grads = {"W": xp.zeros((n_in, n_out)), "b": xp.zeros(n_out)}
    layer.bind(params, grads)
    layer.W[...] = device.to_device(layer.initial_params(rng)["W"])
    layer.b[...] = device.to_device(rng.standard_normal(n_out))
    return layer


@pytest.mark.parametrize("make_layer", [ReLU, Tanh, Sigmoid, Softmax, "dense"])
def test_layer_input_gradient(make_layer, device):
    rng = np.random.default_rng(0)
    up, down = device.to_device, device.to_host
    layer = bound_dense(rng, device) if make_layer == "dense" else make_layer(device)
    x = rng.standard_normal((5, 4))
    x[np.abs(x) < 0.05] = 0.3  # keep ReLU away from its kink
    upstream = rng.standard_normal(layer.forward(up(x.copy())).shape)

    def f():
        return float(down((layer.forward(up(x.copy())) * up(upstream)).sum()))

    f()
    analytic = down(layer.backward(up(upstream.copy())))
    np.testing.assert_allclose(analytic, numeric_grad(f, x), rtol=1e-5, atol=1e-7)


def test_dense_parameter_gradients(device):
    rng = np.random.default_rng(1)
    layer = bound_dense(rng, device)
    x, upstream = device.to_device(rng.standard_normal((6, 4))), device.to_device(rng.standard_normal((6, 3)))

    def f():
        return float(device.to_host((layer.forward(x) * upstream).sum()))

    f()
    layer.backward(upstream.copy())
    np.testing.assert_allclose(device.to_host(layer.dW), numeric_grad(f, layer.W), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(device.to_host(layer.db), numeric_grad(f, layer.b), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "loss, targets",
    [
        (MeanSquaredError(), lambda rng: rng.standard_normal((6, 3))),
        (BinaryCrossEntropy(), lambda rng: rng.integers(0, 2, (6, 1)).astype(float)),
        (SoftmaxCrossEntropy(), lambda rng: rng.integers(0, 3, 6)),
        (BinaryCrossEntropy(np.array([0.4, 2.5])), lambda rng: np.array([0, 1, 1, 0, 0, 1], dtype=float)[:, None]),
        (SoftmaxCrossEntropy(np.array([0.5, 3.0, 1.2])), lambda rng: np.array([0, 1, 2, 0, 0, 2])),
    ],
)
def test_loss_gradients(loss, targets, device):
    rng = np.random.default_rng(2)
    up, down = device.to_device, device.to_host
    loss.attach(device)
    y = up(targets(rng))
    z = rng.standard_normal((6, 1 if isinstance(loss, BinaryCrossEntropy) else 3)) * 3
    loss.forward(up(z.copy()), y)
    analytic = down(loss.backward().copy())
    np.testing.assert_allclose(analytic, numeric_grad(lambda: float(down(loss.forward(up(z.copy()), y))), z), rtol=1e-5, atol=1e-8)


def test_class_weights_scale_each_sample_by_its_class():
    """Balanced weights (n / (k · count)) make each class weigh the same in the loss."""
    y = np.array([0, 0, 0, 1])
    weights = balanced_class_weights(y, 2)
    np.testing.assert_allclose(weights, [4 / 6, 2.0])
    z = np.zeros((4, 2))
    plain, weighted = SoftmaxCrossEntropy().forward(z, y), SoftmaxCrossEntropy(weights).forward(z, y)
    assert weighted == pytest.approx(plain)  # equal per-sample losses: the weights average 1
    z[:, 1] = 2.0  # every sample leans to class 1: the one class-1 sample now counts 3 times as much as one class-0 sample
    per_sample = np.log1p(np.exp(-2.0)), np.log1p(np.exp(2.0))
    assert SoftmaxCrossEntropy(weights).forward(z, y) == pytest.approx((3 * weights[0] * per_sample[1] + weights[1] * per_sample[0]) / 4)
    with pytest.raises(ValueError, match="classification loss only"):
        get_loss("mse", weights)


def test_cross_entropies_are_stable_for_huge_logits():
    z = np.array([[1000.0], [-1000.0]], dtype=np.float32)
    y = np.array([[0.0], [1.0]], dtype=np.float32)
    bce = BinaryCrossEntropy()
    assert bce.forward(z, y) == pytest.approx(1000.0)
    assert np.all(np.isfinite(bce.backward()))
    sce = SoftmaxCrossEntropy()
    assert sce.forward(np.array([[1000.0, -1000.0, 0.0]], dtype=np.float32), np.array([1])) == pytest.approx(2000.0)
    assert np.all(np.isfinite(sce.backward()))
    assert np.all(np.isfinite(sigmoid(np.array([-1e4, 1e4], dtype=np.float32))))


@pytest.mark.parametrize("activation, loss, out", [("relu", SoftmaxCrossEntropy(), 3), ("tanh", BinaryCrossEntropy(), 1), ("sigmoid", MeanSquaredError(), 2)])
def test_model_parameter_gradients_with_l2(activation, loss, out, device):
    """Whole-network backprop, including the L2 term the optimizer adds, against finite differences."""
    rng = np.random.default_rng(3)
    up, down = device.to_device, device.to_host
    model = Sequential(4, mlp_spec([5, 4], out, activation), dtype="float64", device=device).initialize(rng)
    loss.attach(device)
    x = rng.standard_normal((7, 4))
    y = up({3: rng.integers(0, 3, 7), 1: rng.integers(0, 2, (7, 1)).astype(float), 2: rng.standard_normal((7, 2))}[out])
    l2 = 0.1

    def objective():
        value = loss.forward(model.forward(up(x.copy())), y) + 0.5 * l2 * (model.decay_mask * model.params**2).sum()
        return float(down(value))

    objective()
    model.backward(loss.backward())
    optimizer = SGD(learning_rate=0.0, momentum=0.0, l2=l2)
    optimizer.attach(model.params, model.grads, model.decay_mask, device.xp)
    analytic = down(optimizer._regularized_grad().copy())
    np.testing.assert_allclose(analytic, numeric_grad(objective, model.params), rtol=1e-4, atol=1e-7)
    # biases are not decayed
    assert down(model.decay_mask).sum() == sum(v.size for k, v in model.weights().items() if k.endswith(".W"))


def test_adam_matches_reference_update(device):
    rng = np.random.default_rng(4)
    up, down = device.to_device, device.to_host
    ref_p = rng.standard_normal(10)
    params, grads = up(ref_p.copy()), device.xp.zeros(10)
    opt = Adam(learning_rate=0.01)
    opt.attach(params, grads, up(np.ones(10)), device.xp)
    m, v = np.zeros(10), np.zeros(10)
    for t in range(1, 6):
        g = rng.standard_normal(10)
        grads[...] = up(g)
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref_p -= 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(down(params), ref_p, rtol=1e-6, atol=1e-9)


def test_sgd_momentum_matches_reference_update(device):
    up, down = device.to_device, device.to_host
    ref = np.array([1.0, -2.0])
    params, grads = up(ref.copy()), device.xp.zeros(2)
    opt = SGD(learning_rate=0.1, momentum=0.5)
    opt.attach(params, grads, up(np.ones(2)), device.xp)
    velocity = np.zeros(2)
    for g in ([1.0, 1.0], [0.5, -1.0], [0.0, 2.0]):
        grads[...] = up(np.array(g))
        opt.step()
        velocity = 0.5 * velocity - 0.1 * np.array(g)
        ref += velocity
        np.testing.assert_allclose(down(params), ref)


def _blobs(rng, n=400):
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def test_training_learns_and_is_float32(device):
    rng = np.random.default_rng(5)
    x, y = _blobs(rng)
    model = Sequential(2, mlp_spec([8], 2), device=device).initialize(rng)
    fit(model, SoftmaxCrossEntropy(), Adam(0.02), x, y, epochs=30, batch_size=32, rng=rng)
    assert model.params.dtype == np.float32
    proba = np.exp(model.predict_logits(x))
    assert classification_report(y, proba / proba.sum(1, keepdims=True), 2)["accuracy"] > 0.95


def test_early_stopping_restores_best_weights(device):
    rng = np.random.default_rng(6)
    x, y = _blobs(rng, 200)
    # Validation labels are flipped: validation loss rises as training succeeds.
    x_val, y_val = x[:50], 1 - y[:50]
    model = Sequential(2, mlp_spec([8], 2), device=device).initialize(rng)
    snapshots = []
    history = fit(
        model, SoftmaxCrossEntropy(), Adam(0.05), x, y, epochs=100, batch_size=32, rng=rng,
        validation=(x_val, y_val), patience=3, on_epoch=lambda r: snapshots.append(model.params.copy()),
    )
    assert history.stopped_early and len(history.epochs) < 100
    best = history.best_epoch
    losses = history.series("val_loss")
    assert losses[best - 1] == min(losses)
    np.testing.assert_array_equal(device.to_host(model.params), device.to_host(snapshots[best - 1]))


def test_same_seed_same_weights_different_seed_different():
    def train(seed):
        rng = np.random.default_rng(seed)
        x, y = _blobs(np.random.default_rng(0))
        model = Sequential(2, mlp_spec([8], 2)).initialize(rng)
        fit(model, SoftmaxCrossEntropy(), Adam(0.01), x, y, epochs=5, batch_size=16, rng=rng)
        return model.params.tobytes()

    assert train(1) == train(1)
    assert train(1) != train(2)


def test_roc_auc_with_ties_and_single_class():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_classification_report_binary_counts():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    report = classification_report(np.array([0, 1, 0, 1]), proba, 2)
    assert report["confusion_matrix"] == [[1, 1], [1, 1]]
    assert report["accuracy"] == 0.5 and report["precision"] == 0.5 and report["recall"] == 0.5
