"""Accuracy against scikit-learn's MLPClassifier on the same folds, with the environment file as
shipped (issue 27): `toolkit train --env local --data FILE --label COL --cv 5` on a binary, a
3-class and a 10-class dataset, each fold scored for both learners.

Datasets: the bundled heart data (binary, `num > 0`), and two that scikit-learn ships: wine
(3 classes, 178 rows) and digits (10 classes, 1,797 rows of 8×8 pixels), written to CSV and read by
the toolkit as a user's file would be. Both learners see the same rows: our stratified folds, our
preprocessing fitted on each fold's training rows (so the comparison is of the learners), and
MLPClassifier gets the local environment's settings where it has them (hidden layers, learning
rate, batch size, epochs, early stopping with the same patience and validation fraction).

A continuous target (MLPRegressor) is not compared: the toolkit does not train regressors yet.

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
from toolkit.ml.train import DatasetChoice, evaluate_rows, fit_model  # noqa: E402


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray, label: str) -> Path:
    columns = [f"f{i}" for i in range(x.shape[1])]
    lines = [",".join([*columns, label])]
    lines += [",".join([*(f"{v:g}" for v in row), str(target)]) for row, target in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def datasets(workdir: Path) -> list[tuple[str, DatasetChoice]]:
    from sklearn.datasets import load_digits, load_wine

    settings = load_environment("local").training
    wine, digits = load_wine(), load_digits()
    return [
        ("heart (2 classes)", DatasetChoice.from_config(settings)),
        ("wine (3 classes)", DatasetChoice.from_config(settings, path=_write_csv(workdir / "wine.csv", wine.data, wine.target, "cultivar"),
                                                       label="cultivar")),
        ("digits (10 classes)", DatasetChoice.from_config(settings, path=_write_csv(workdir / "digits.csv", digits.data, digits.target,
                                                                                    "digit"), label="digit")),
    ]


def compare(name: str, choice: DatasetChoice, folds: int) -> dict:
    from sklearn.neural_network import MLPClassifier

    settings = load_environment("local").training.model_copy(update={"loss": "auto"})
    dataset = choice.load()
    ours, theirs = [], []
    started = time.perf_counter()
    for index, (train_rows, held_out) in enumerate(stratified_kfold(dataset.y, folds, settings.seed)):
        inner_train, inner_val, _ = stratified_split(dataset.y[train_rows], settings.validation_fraction, 0.0, settings.seed + index)
        fitted = fit_model(dataset, train_rows[inner_train], train_rows[inner_val], settings, settings.seed + index)
        ours.append(evaluate_rows(fitted, dataset, held_out)["accuracy"])
        # the same fold, the same features: our preprocessing fitted on the same training rows
        x_train = fitted.preprocessor.transform_table(dataset.table, train_rows)
        x_test = fitted.preprocessor.transform_table(dataset.table, held_out)
        reference = MLPClassifier(hidden_layer_sizes=tuple(settings.hidden_layers), activation=settings.activation,
                                  learning_rate_init=settings.learning_rate, batch_size=settings.batch_size, max_iter=settings.epochs,
                                  early_stopping=True, validation_fraction=settings.validation_fraction,
                                  n_iter_no_change=settings.patience or settings.epochs, alpha=settings.l2,
                                  random_state=settings.seed + index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
            reference.fit(x_train, dataset.y[train_rows])
        theirs.append(float(np.mean(reference.predict(x_test) == dataset.y[held_out])))
    return {"dataset": name, "rows": len(dataset.y), "classes": len(dataset.classes), "folds": folds,
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
    print(f"{'dataset':<22}{'rows':>6}  {'ours (mean ± std)':>18}  {'MLPClassifier':>18}  {'ours − theirs':>14}")
    for r in results:
        print(f"{r['dataset']:<22}{r['rows']:>6}  {r['ours']:>10.3f} ± {r['ours_std']:.3f}  {r['sklearn']:>10.3f} ± {r['sklearn_std']:.3f}"
              f"  {r['difference_points']:>+11.1f} pt")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
