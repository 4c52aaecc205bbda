"""Accuracy (R² for a regressor) against scikit-learn's MLPClassifier / MLPRegressor on the same
folds, with the environment file as shipped (issue 27): `toolkit train --env local --data FILE
--label COL --cv 5` on a binary, a 3-class and a 10-class dataset and a continuous target, each
fold scored for both learners.

Datasets: the bundled heart data (binary, `num > 0`), and three that scikit-learn ships: wine
(3 classes, 178 rows), digits (10 classes, 1,797 rows of 8×8 pixels) and diabetes (a continuous
disease-progression score, 442 rows; the toolkit picks regression by itself), written to CSV and read by
the toolkit as a user's file would be. Both learners see the same rows: our stratified folds, our
preprocessing fitted on each fold's training rows (so the comparison is of the learners), and
MLPClassifier gets the local environment's settings where it has them (hidden layers, learning
rate, batch size, epochs, early stopping with the same patience and validation fraction).

MLPRegressor learns the raw target: it does not standardize it as the toolkit does, so it gets
the same help (the target standardized with the fold's training rows, its predictions mapped back).

    .venv/bin/pip install -c constraints.txt scikit-learn   # or make bench
    python bench/accuracy_vs_sklearn.py [--folds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from toolkit.config import load_environment  # noqa: E402
from toolkit.ml.data import stratified_kfold, stratified_split  # noqa: E402
from toolkit.ml.nn.metrics import regression_report  # noqa: E402
from toolkit.ml.train import DatasetChoice, evaluate_rows, fit_model  # noqa: E402


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray, label: str) -> Path:
    columns = [f"f{i}" for i in range(x.shape[1])]
    lines = [",".join([*columns, label])]
    lines += [",".join([*(f"{v:g}" for v in row), str(target)]) for row, target in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def datasets(workdir: Path) -> list[tuple[str, DatasetChoice]]:
    from sklearn.datasets import load_diabetes, load_digits, load_wine

    settings = load_environment("local").training
    wine, digits, diabetes = load_wine(), load_digits(), load_diabetes()
    return [
        ("heart (2 classes)", DatasetChoice.from_config(settings)),
        ("wine (3 classes)", DatasetChoice.from_config(settings, path=_write_csv(workdir / "wine.csv", wine.data, wine.target, "cultivar"),
                                                       label="cultivar")),
        ("digits (10 classes)", DatasetChoice.from_config(settings, path=_write_csv(workdir / "digits.csv", digits.data, digits.target,
                                                                                    "digit"), label="digit")),
        ("diabetes (regression)", DatasetChoice.from_config(settings, path=_write_csv(workdir / "diabetes.csv", diabetes.data,
                                                                                      diabetes.target, "progression"), label="progression")),
    ]


def compare(name: str, choice: DatasetChoice, folds: int) -> dict:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    settings = load_environment("local").training.model_copy(update={"loss": "auto"})
    dataset = choice.load()
    metric = "r2" if dataset.regression else "accuracy"
    ours, theirs = [], []
    started = time.perf_counter()
    for index, (train_rows, held_out) in enumerate(stratified_kfold(dataset.strata, folds, settings.seed)):
        inner_train, inner_val, _ = stratified_split(dataset.strata[train_rows], settings.validation_fraction, 0.0, settings.seed + index)
        fitted = fit_model(dataset, train_rows[inner_train], train_rows[inner_val], settings, settings.seed + index)
        ours.append(evaluate_rows(fitted, dataset, held_out)[metric])
        # the same fold, the same features: our preprocessing fitted on the same training rows
        x_train = fitted.preprocessor.transform_table(dataset.table, train_rows)
        x_test = fitted.preprocessor.transform_table(dataset.table, held_out)
        kind = MLPRegressor if dataset.regression else MLPClassifier
        reference = kind(hidden_layer_sizes=tuple(settings.hidden_layers), activation=settings.activation,
                         learning_rate_init=settings.learning_rate, batch_size=settings.batch_size, max_iter=settings.epochs,
                         early_stopping=True, validation_fraction=settings.validation_fraction,
                         n_iter_no_change=settings.patience or settings.epochs, alpha=settings.l2, random_state=settings.seed + index)
        y_train, y_test = dataset.y[train_rows], dataset.y[held_out]
        mean, std = (y_train.mean(), y_train.std()) if dataset.regression else (0.0, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
            reference.fit(x_train, (y_train - mean) / std if dataset.regression else y_train)
        if dataset.regression:
            theirs.append(regression_report(y_test, reference.predict(x_test) * std + mean)["r2"])
        else:
            theirs.append(float(np.mean(reference.predict(x_test) == y_test)))
    return {"dataset": name, "rows": len(dataset.y), "classes": len(dataset.classes), "folds": folds, "metric": metric,
            "ours": statistics.mean(ours), "ours_std": statistics.pstdev(ours),
            "sklearn": statistics.mean(theirs), "sklearn_std": statistics.pstdev(theirs),
            "difference_points": 100 * (statistics.mean(ours) - statistics.mean(theirs)), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = [compare(name, choice, args.folds) for name, choice in datasets(Path(workdir))]
    print(f"{'dataset':<24}{'rows':>6}  {'metric':>8}  {'ours (mean ± std)':>18}  {'scikit-learn MLP':>18}  {'ours − theirs':>14}")
    for r in results:
        difference = f"{r['ours'] - r['sklearn']:>+11.3f}   " if r["metric"] == "r2" else f"{r['difference_points']:>+11.1f} pt"
        print(f"{r['dataset']:<24}{r['rows']:>6}  {r['metric']:>8}  {r['ours']:>10.3f} ± {r['ours_std']:.3f}"
              f"  {r['sklearn']:>10.3f} ± {r['sklearn_std']:.3f}  {difference}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
