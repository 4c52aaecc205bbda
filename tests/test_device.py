"""The core on a device: training on the strict stand-in for CuPy (tests/strict_array_module.py)
gives NumPy's bytes, moves data only at the declared edges (a number of transfers that does not
grow with the batches), and `training.device` picks a device or says why not."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from strict_array_module import HostRoundTrip, StrictArray, strict_device

from conftest import HEART
from toolkit.config import TrainingConfig
from toolkit.errors import ConfigError
from toolkit.ml.data import stratified_split
from toolkit.ml.nn import device as devices
from toolkit.ml.nn.device import CPU
from toolkit.ml.nn.losses import BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy
from toolkit.ml.nn.model import Sequential, mlp_spec
from toolkit.ml.nn.optimizers import SGD, Adam
from toolkit.ml.nn.training import fit
from toolkit.ml.train import DatasetChoice, fit_model, training_device

EPOCHS = 4


def _data(n: int, task: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    score = x[:, 0] - 0.7 * x[:, 1] + 0.3 * x[:, 2] * x[:, 3]
    if task == "binary":
        return x, (score > 0).astype(np.float32)[:, None]
    if task == "softmax":
        return x, np.digitize(score, [-0.5, 0.5]).astype(np.int64)
    return x, score.astype(np.float32)[:, None]


CASES = {
    # name: (task, loss, optimizer, activation, output units)
    "softmax-adam-relu-weighted": ("softmax", lambda: SoftmaxCrossEntropy(np.array([1.5, 0.5, 1.0])), lambda: Adam(0.01, l2=0.01), "relu", 3),
    "binary-sgd-tanh-weighted": ("binary", lambda: BinaryCrossEntropy(np.array([0.7, 1.8])), lambda: SGD(0.05, l2=0.001), "tanh", 1),
    "mse-adam-sigmoid": ("mse", MeanSquaredError, lambda: Adam(0.01), "sigmoid", 1),
}


def _train(device, case: str, n: int = 300, batch_size: int = 32, patience: int | None = 2):
    task, make_loss, make_optimizer, activation, units = CASES[case]
    x, y = _data(n, task)
    x_val, y_val = _data(60, task, seed=1)
    rng = np.random.default_rng(7)
    model = Sequential(5, mlp_spec([16, 8], units, activation), device=device).initialize(rng)
    seen = []
    history = fit(model, make_loss(), make_optimizer(), x, y, epochs=EPOCHS, batch_size=batch_size, rng=rng,
                  validation=(x_val, y_val), patience=patience, evaluate=lambda logits: seen.append(logits) or {})
    return model, history, seen


@pytest.mark.parametrize("case", list(CASES))
def test_the_stand_in_trains_to_numpys_bytes(case):
    """Every layer, loss and optimizer on the stand-in: the same weights, history and validation
    logits as NumPy, byte for byte (the same host generator draws the weights and the shuffles)."""
    on_cpu, cpu_history, cpu_logits = _train(CPU, case)
    on_device, device_history, device_logits = _train(strict_device(), case)
    assert on_device.weights().keys() == on_cpu.weights().keys()
    for name, value in on_cpu.weights().items():
        assert on_device.weights()[name].tobytes() == value.tobytes(), name
    assert device_history.epochs == cpu_history.epochs
    assert all(a.tobytes() == b.tobytes() for a, b in zip(cpu_logits, device_logits, strict=True))
    x, _ = _data(50, CASES[case][0], seed=2)
    assert on_device.predict_logits(x).tobytes() == on_cpu.predict_logits(x).tobytes()


def test_transfers_per_fit_do_not_grow_with_the_batches():
    """Per fit: up once the decay mask, the initial weights, the class weights, the rows and labels
    and the validation rows and labels; per epoch one order up and the losses and the validation
    logits down. Four times the batches, the same transfers: nothing per batch."""
    counts = []
    for n in (256, 1024):
        device = strict_device()
        _train(device, "softmax-adam-relu-weighted", n=n, patience=None)
        counts.append((device.xp.uploads, device.xp.downloads))
    assert counts[0] == counts[1]
    uploads, downloads = counts[0]
    assert (uploads, downloads) == (7 + EPOCHS, 2 * EPOCHS)


def test_rows_beyond_the_memory_budget_go_up_in_chunks_of_whole_batches():
    """A budget below the data's size: chunks of whole batches each epoch, the same bytes as resident."""
    resident, _, _ = _train(strict_device(), "softmax-adam-relu-weighted", n=300)
    chunked_device = strict_device(budget=5 * 32 * (5 * 4 + 8))  # about 5 batches of rows
    chunked, _, _ = _train(chunked_device, "softmax-adam-relu-weighted", n=300)
    assert chunked.weights()["layer0.W"].tobytes() == resident.weights()["layer0.W"].tobytes()
    assert chunked_device.xp.uploads > 2 * EPOCHS  # the chunks did go up each epoch


def test_a_host_round_trip_inside_the_loop_fails():
    """What the stand-in exists for: a loss that reads its value on the host per batch (as the
    loop did before the device path) stops the fit."""

    class ReadsEachBatch(SoftmaxCrossEntropy):
        def forward(self, output, y):
            return float(super().forward(output, y))

    x, y = _data(64, "softmax")
    model = Sequential(5, mlp_spec([4], 3), device=strict_device()).initialize(np.random.default_rng(0))
    with pytest.raises(HostRoundTrip, match="float"):
        fit(model, ReadsEachBatch(), Adam(0.01), x, y, epochs=1, batch_size=16, rng=np.random.default_rng(0))


def test_the_stand_in_refuses_what_cupy_would_sync_or_reject():
    xp = strict_device().xp
    a = xp.asarray(np.arange(6.0).reshape(2, 3))
    assert isinstance(a.sum(), StrictArray)  # reductions stay on the device as 0-d arrays
    for attempt in (lambda: np.asarray(a), lambda: float(a.sum()), lambda: a.sum().item(), lambda: bool(a.max() > 1),
                    lambda: np.exp(a), lambda: np.mean(a), lambda: a.tolist(), lambda: a[a > 1],
                    lambda: a + np.ones(3), lambda: xp.multiply(a, np.ones(3)), lambda: list(a)):
        with pytest.raises(HostRoundTrip):
            attempt()
    np.testing.assert_array_equal(xp.asnumpy(xp.exp(a)), np.exp(np.arange(6.0).reshape(2, 3)))


def _heart_fit(device, regression: bool):
    settings = TrainingConfig(dataset=str(HEART), label="age" if regression else "num", target=None if regression else "num > 0",
                              categorical=["cp", "thal"], hidden_layers=[8], epochs=6, patience=3,
                              task="regression" if regression else "classification")
    dataset = DatasetChoice.from_config(settings, path=HEART).load()
    train, val, test = stratified_split(dataset.strata, 0.15, 0.15, 0)
    fitted = fit_model(dataset, train, val, settings, seed=0, device=device)
    return fitted, fitted.preprocessor.transform_table(dataset.table, test)


@pytest.mark.parametrize("regression", [False, True], ids=["classifier", "regressor"])
def test_fit_model_on_the_stand_in_predicts_as_numpy_and_comes_back_to_the_cpu(regression):
    on_cpu, rows = _heart_fit(CPU, regression)
    on_device, _ = _heart_fit(strict_device(), regression)
    assert on_device.model.device == CPU  # the weights came back once: scoring and saving run on the CPU
    np.testing.assert_array_equal(on_device.predict(rows), on_cpu.predict(rows))
    assert on_device.history.epochs == on_cpu.history.epochs


def test_device_selection_says_why_it_is_the_cpu():
    assert devices.select("cpu") is CPU
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here; this is the CPU training image's case")
    auto = devices.select("auto")
    assert auto.kind == "cpu" and "CuPy is not installed" in auto.info["reason"]
    assert devices.summary(auto).startswith("training on the CPU: CuPy is not installed")
    with pytest.raises(ConfigError) as refused:
        training_device("gpu", "dev")
    assert refused.value.exit_code == 2
    assert "training.device is gpu (environments/dev.yaml) and CuPy is not installed" in str(refused.value)
