"""Training pipeline: dataset → preprocessing → network → metrics → artifact.

`toolkit train` is a thin wrapper over `train_and_save`; using a saved model is `toolkit.ml.predict`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.config import TrainingConfig
from toolkit.errors import ConfigError, DataError
from toolkit.ml import artifacts
from toolkit.ml.data import Dataset, prepare_dataset, stratified_kfold, stratified_split
from toolkit.ml.data_report import REPORT, data_report
from toolkit.ml.nn import device as devices
from toolkit.ml.nn import losses, optimizers
from toolkit.ml.nn.metrics import classification_report, regression_report, summarize_folds
from toolkit.ml.nn.model import (
    Sequential,
    mlp_spec,
    probabilities_from_logits,
    values_from_logits,
)
from toolkit.ml.nn.training import History, fit
from toolkit.ml.preprocess import Preprocessor
from toolkit.ml.reference import reference_distributions, value_distribution
from toolkit.ml.table import read_csv, sha256_file
from toolkit.paths import project_root

EpochCallback = Callable[[dict], None]
MIN_TEST_ROWS = 30  # fewer test rows than this, and the test metrics come with a warning


@dataclass
class DatasetChoice:
    """Which CSV to train on and how to read it; built from the config and CLI flags."""

    path: Path
    label: str
    target: str | None = None
    categorical: list[str] = field(default_factory=list)
    drop_columns: list[str] = field(default_factory=list)
    delimiter: str | None = None
    max_categories: int = 1000
    task: str = "auto"  # TrainingConfig.dataset_task()

    @classmethod
    def from_config(cls, settings: TrainingConfig, root: Path | None = None, **overrides) -> DatasetChoice:
        """The config's dataset settings, with flags applied.

        A `label` that differs from the config's means a different dataset: the config's
        target, categorical and dropped columns then no longer apply unless given again."""
        overrides = {k: v for k, v in overrides.items() if v not in (None, (), [])}
        path = Path(overrides.pop("path", None) or (root or project_root()) / settings.dataset)
        base = dict(
            label=settings.label, target=settings.target, categorical=list(settings.categorical),
            drop_columns=list(settings.drop_columns), delimiter=settings.delimiter, max_categories=settings.max_categories,
            task=settings.dataset_task(),
        )
        if "label" in overrides and overrides["label"] != settings.label:
            base = dict(label=overrides["label"], target=None, categorical=[], drop_columns=[], delimiter=None,
                        max_categories=settings.max_categories, task=settings.dataset_task())
        base.update({k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()})
        return cls(path=path, **base)

    def load(self) -> Dataset:
        table = read_csv(self.path, self.delimiter)
        return prepare_dataset(table, self.label, self.target, self.categorical, self.drop_columns, self.max_categories, self.task)


@dataclass
class FittedModel:
    model: Sequential
    preprocessor: Preprocessor
    history: History
    output: str  # "sigmoid" or "softmax"; "identity" for regression
    target_scaling: tuple[float, float] | None = None  # regression: the label's (mean, std) on the training rows

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (rows, classes), or for regression the values in the label's units (rows,)."""
        return self.from_logits(self.model.predict_logits(x))

    def from_logits(self, logits: np.ndarray) -> np.ndarray:
        """What `predict` answers, from the network's (host) logits."""
        if self.target_scaling is None:
            return probabilities_from_logits(logits, self.output)
        return values_from_logits(logits, *self.target_scaling)


def training_device(wanted: str, env: str = "ENV") -> devices.Device:
    """The device for `training.device` (auto, cpu or gpu); gpu without a usable one is exit 2."""
    try:
        return devices.select(wanted)
    except devices.DeviceUnavailable as missing:
        raise ConfigError(f"training.device is gpu (environments/{env}.yaml) and {missing}. Set training.device: auto "
                          "to fall back to the CPU, or train on a GPU node with the GPU training image.") from None


def resolve_loss(name: str, n_classes: int, env: str = "ENV", regression: bool = False) -> str:
    if regression:
        if name not in ("auto", "mse"):
            raise DataError(f"loss {name} is a classification loss, and the label is a quantity to predict (regression); "
                            f"pass --loss auto (or mse), or set training.loss: auto in environments/{env}.yaml.")
        return "mse"
    if name == "mse":
        raise DataError(f"loss mse is for regression, and the label's {n_classes} values are classes; pass --task regression "
                        "to predict it as a number, or --loss auto.")
    if name == "auto":
        return "binary_cross_entropy" if n_classes == 2 else "categorical_cross_entropy"
    if name == "binary_cross_entropy" and n_classes != 2:
        raise DataError(
            f"loss binary_cross_entropy needs exactly 2 classes but the label has {n_classes}; pass --loss auto "
            f"(or categorical_cross_entropy), or set training.loss: auto in environments/{env}.yaml."
        )
    return name


def _targets(y: np.ndarray, loss_name: str, dtype) -> np.ndarray:
    """BCE and MSE want (n, 1) floats; softmax cross-entropy wants class indices."""
    return y.astype(dtype)[:, None] if loss_name in ("binary_cross_entropy", "mse") else y


def fit_model(
    dataset: Dataset,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    settings: TrainingConfig,
    seed: int,
    on_epoch: EpochCallback | None = None,
    device: devices.Device = devices.CPU,
) -> FittedModel:
    """Fit preprocessing on `train_rows` only, then train with early stopping on `val_rows` on
    `device`; the fitted model comes back to the CPU. A regressor learns the label standardized
    with the training rows' mean and std (so the learning rate means the same whatever the
    label's units) and answers in the label's units."""
    n_classes = len(dataset.classes)
    loss_name = resolve_loss(settings.loss, n_classes, regression=dataset.regression)
    preprocessor = Preprocessor.fit(dataset, train_rows)
    x_train = preprocessor.transform_table(dataset.table, train_rows)
    x_val = preprocessor.transform_table(dataset.table, val_rows)
    output_dim = 1 if loss_name in ("binary_cross_entropy", "mse") else n_classes
    rng = np.random.default_rng(seed)
    model = Sequential(x_train.shape[1], mlp_spec(settings.hidden_layers, output_dim, settings.activation), device=device)
    model.initialize(rng)
    weights = None
    if settings.class_weight == "balanced" and not dataset.regression:
        weights = losses.balanced_class_weights(dataset.y[train_rows], n_classes)
    loss = losses.get(loss_name, weights)
    optimizer = optimizers.get(settings.optimizer, settings.learning_rate, settings.l2, settings.momentum)
    y_train, y_val = dataset.y[train_rows], dataset.y[val_rows]
    scaling = (float(y_train.mean()), float(y_train.std()) or 1.0) if dataset.regression else None
    fitted = FittedModel(model, preprocessor, History(), loss.output_activation, scaling)

    def evaluate(val_logits: np.ndarray) -> dict:
        report = score_report(dataset, val_rows, fitted.from_logits(val_logits))
        if scaling is not None:
            return {"val_r2": report["r2"], "val_rmse": report["rmse"]}
        return {"val_accuracy": report["accuracy"], "val_roc_auc": report["roc_auc"]}

    def targets(y: np.ndarray) -> np.ndarray:
        return _targets((y - scaling[0]) / scaling[1] if scaling else y, loss_name, model.dtype)

    fitted.history = fit(
        model, loss, optimizer, x_train, targets(y_train),
        epochs=settings.epochs, batch_size=settings.batch_size, rng=rng,
        validation=(x_val, targets(y_val)),
        patience=settings.patience, evaluate=evaluate, on_epoch=on_epoch,
    )
    fitted.model = model.to(devices.CPU)  # the weights' one trip back: scoring, saving and serving run on the CPU
    return fitted


def evaluate_rows(fitted: FittedModel, dataset: Dataset, rows: np.ndarray) -> dict:
    return score_report(dataset, rows, fitted.predict(fitted.preprocessor.transform_table(dataset.table, rows)))


def score_report(dataset: Dataset, rows: np.ndarray, out: np.ndarray) -> dict:
    """The metrics of `out` (FittedModel.predict of `rows`) against the rows' labels."""
    if dataset.regression:
        return regression_report(dataset.y[rows], out)
    return classification_report(dataset.y[rows], out, len(dataset.classes))


def predictions_reference(dataset: Dataset, out: np.ndarray) -> dict:
    """What serving compares its answers with to see the inputs or the model drift, from `out` on
    the test split: how often each class is predicted (the PredictedClassShareShifted alert), or a
    regressor's distribution of values."""
    if dataset.regression:
        return {"predicted_value": value_distribution(out)}
    counts = np.bincount(out.argmax(axis=1), minlength=len(dataset.classes))
    return {"predicted_class_share": {name: round(float(count / max(len(out), 1)), 6)
                                      for name, count in zip(dataset.classes, counts, strict=True)}}


def cross_validate(
    dataset: Dataset, settings: TrainingConfig, folds: int, on_fold: Callable[[int, dict], None] | None = None,
    device: devices.Device = devices.CPU,
) -> dict:
    """K-fold, stratified for classes (plain for regression): each fold trains on the rest (with its
    own validation split for early stopping) and is scored on its held-out rows."""
    reports = []
    for index, (train_rows, held_out) in enumerate(fold_rows(dataset, np.arange(len(dataset.y)), folds, settings.seed)):
        report = fold_report(dataset, settings, train_rows, held_out, index, device)
        reports.append(report)
        if on_fold is not None:
            on_fold(index, report)
    return {"folds": folds, **summarize_folds(reports)}


def fold_rows(dataset: Dataset, rows: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training, held-out) rows of each fold over `rows`, stratified for classes (plain for regression)."""
    if dataset.regression and len(rows) < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} rows; the data has {len(rows)}.")
    return [(rows[train], rows[held_out]) for train, held_out in stratified_kfold(dataset.strata[rows], folds, seed)]


def fold_report(dataset: Dataset, settings: TrainingConfig, train_rows: np.ndarray, held_out: np.ndarray, index: int,
                device: devices.Device = devices.CPU) -> dict:
    """Fold `index`: train on `train_rows` (with a validation split of them for early stopping) and
    score the held-out rows."""
    inner_train, inner_val, _ = stratified_split(dataset.strata[train_rows], settings.validation_fraction, 0.0, settings.seed + index)
    fitted = fit_model(dataset, train_rows[inner_train], train_rows[inner_val], settings, settings.seed + index, device=device)
    return evaluate_rows(fitted, dataset, held_out)


@dataclass
class TrainResult:
    artifact_dir: Path
    metrics: dict
    metrics_path: Path
    curves_path: Path | None  # None without matplotlib
    version: str
    warnings: list[str] = field(default_factory=list)  # what the data made us leave out or assume
    data_report: dict = field(default_factory=dict)  # data_report.json
    task_note: str | None = None  # how the task was chosen, when the data chose it
    trained_on: dict = field(default_factory=dict)  # the device (Device.describe())


def train_and_save(
    choice: DatasetChoice,
    settings: TrainingConfig,
    out_root: Path,
    *,
    env: str,
    cv_folds: int | None = None,
    on_epoch: EpochCallback | None = None,
    on_fold: Callable[[int, dict], None] | None = None,
    dataset: Dataset | None = None,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    data_info: dict | None = None,
    device: devices.Device | None = None,
    on_start: Callable[[], None] | None = None,
    sweep: dict | None = None,
) -> TrainResult:
    """Split, train, evaluate on the held-out test split, optionally cross-validate, save.

    `dataset`, `splits` and `data_info`: an already prepared dataset (the base data plus labelled
    feedback, for `toolkit retrain`), its (train, validation, test) rows and what to record of it.
    `device`: where to train (default: `training.device` of the settings); the manifest records it.
    `on_start()` is called once the data is checked, before the first fold or epoch. `sweep`: the
    sweep that chose the settings (id, trial, setting, metric), recorded in the manifest's training."""
    device = device or training_device(settings.device, env)
    dataset = dataset or choice.load()
    resolve_loss(settings.loss, len(dataset.classes), env, dataset.regression)  # before any fold trains
    train_rows, val_rows, test_rows = splits or stratified_split(
        dataset.strata, settings.validation_fraction, settings.test_fraction, settings.seed
    )
    for name, rows in (("training", train_rows), ("validation", val_rows), ("test", test_rows)):
        if len(np.unique(dataset.y[rows])) < 2:
            what = "fewer than 2 distinct label values" if dataset.regression else "not every class"
            raise DataError(
                f"{choice.path}: the {name} split has {len(rows)} rows and {what}; "
                "the dataset is too small for the configured validation/test fractions."
            )
    warnings = list(dataset.warnings)
    if len(test_rows) < MIN_TEST_ROWS:
        warnings.append(f"the test split has {len(test_rows)} rows (under {MIN_TEST_ROWS}): its metrics say little; "
                        "use --cv K, or more data.")
    metrics: dict = {}
    if on_start is not None:
        on_start()
    if cv_folds:
        metrics["cv"] = cross_validate(dataset, settings, cv_folds, on_fold, device)
    fitted = fit_model(dataset, train_rows, val_rows, settings, settings.seed, on_epoch, device)
    test_out = fitted.predict(fitted.preprocessor.transform_table(dataset.table, test_rows))  # scored once: metrics, reference, plot
    metrics["test"] = score_report(dataset, test_rows, test_out)
    reference = {**predictions_reference(dataset, test_out),
                 "inputs": reference_distributions(fitted.preprocessor.transform_table(dataset.table, train_rows),
                                                   fitted.preprocessor.feature_names, dataset.numeric)}
    metrics["validation"] = evaluate_rows(fitted, dataset, val_rows)
    metrics["splits"] = {"train": len(train_rows), "validation": len(val_rows), "test": len(test_rows)}
    metrics["training"] = {
        "epochs_run": len(fitted.history.epochs),
        "best_epoch": fitted.history.best_epoch,
        "stopped_early": fitted.history.stopped_early,
        "history": fitted.history.epochs,
    }
    dataset_info = {
        "path": str(choice.path), "sha256": sha256_file(choice.path), "rows": len(dataset.table),
        "rows_without_label": dataset.dropped_rows, "delimiter": dataset.table.delimiter, **(data_info or {}),
    }

    report = data_report(dataset, fitted.preprocessor, metrics["splits"], warnings, choice.drop_columns)

    def write_curves(directory: Path) -> None:
        (directory / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        try:
            import matplotlib  # noqa: F401  (absent in the training image: no plot there, the history is in metrics.json)
        except ImportError:
            return
        from toolkit.ml.plots import plot_confusion_matrix, plot_predicted_vs_true, plot_training_curves

        plot_training_curves(fitted.history, directory / artifacts.CURVES, f"{env}: {choice.path.name} → {choice.label}")
        if dataset.regression:
            plot_predicted_vs_true(dataset.y[test_rows], test_out, directory / artifacts.PREDICTED_VS_TRUE,
                                   f"test split ({len(test_rows)} rows): R² {metrics['test']['r2']:.3f}")
        else:
            plot_confusion_matrix(metrics["test"]["confusion_matrix"], dataset.classes, directory / artifacts.CONFUSION,
                                  f"test split ({len(test_rows)} rows)")

    from toolkit.version import code_version

    directory = artifacts.save_artifact(
        out_root, fitted.model, fitted.preprocessor,
        output=fitted.output, classes=dataset.classes, label=dataset.label, target=dataset.target,
        metrics=metrics, dataset=dataset_info, task=dataset.task, target_scaling=fitted.target_scaling,
        training=settings.model_dump(mode="json", exclude={"sweep"}) | {"categorical": choice.categorical, "drop_columns": choice.drop_columns}
        | ({"sweep": sweep} if sweep else {}),
        code_version=code_version(), write_extras=write_curves, reference=reference, env=env,
        trained_on=device.describe(),
    )
    curves = directory / artifacts.CURVES
    note = None
    if dataset.regression:
        how = "asked for" if choice.task == "regression" else \
            f"the label '{dataset.label}' looks continuous: {len(np.unique(dataset.y))} distinct numbers in {len(dataset.y)} rows"
        note = f"regression ({how}); mean squared error on the standardized label; --task classification refuses it"
    return TrainResult(directory, metrics, directory / artifacts.METRICS, curves if curves.exists() else None, directory.name,
                       warnings, report, note, device.describe())
