"""What the data made training do, written with every model (`data_report.json`) and summed up on
the CLI: rows read and left out (and why), missing cells per column and what filled them, the
categories of each categorical column, the class balance, and the warnings."""

from __future__ import annotations

import numpy as np

from toolkit.ml.data import Dataset
from toolkit.ml.preprocess import Preprocessor

REPORT = "data_report.json"


def data_report(dataset: Dataset, preprocessor: Preprocessor, splits: dict[str, int], warnings: list[str],
                dropped_columns: list[str]) -> dict:
    table = dataset.table
    columns: dict[str, dict] = {}
    for spec in preprocessor.numeric:
        missing = int(np.isnan(table.numbers(spec["name"])).sum())
        columns[spec["name"]] = {"kind": "numeric", "missing": missing, "filled_with": round(spec["mean"], 6) if missing else None,
                                 "mean": round(spec["mean"], 6), "std": round(spec["std"], 6)}
    for spec in preprocessor.categorical:
        missing = int((~table.column(spec["name"]).present()).sum())
        columns[spec["name"]] = {"kind": "categorical", "missing": missing, "filled_with": spec["fill"] if missing else None,
                                 "categories": len(spec["categories"])}
    for name in table.columns:
        if name not in columns:
            kind = "label" if name == dataset.label else "dropped" if name in dropped_columns else "empty (left out)"
            columns[name] = {"kind": kind}
    if dataset.regression:
        quantiles = np.quantile(dataset.y, [0, 0.25, 0.5, 0.75, 1])
        balance = {"target": {"mean": float(dataset.y.mean()), "std": float(dataset.y.std()),
                              **dict(zip(("min", "q25", "median", "q75", "max"), map(float, quantiles), strict=True))}}
    else:
        counts = np.bincount(dataset.y, minlength=len(dataset.classes))
        balance = {"classes": {name: int(count) for name, count in zip(dataset.classes, counts, strict=True)}}
    return {
        "rows_read": len(table) + dataset.dropped_rows,
        "rows_used": len(table),
        "rows_left_out": {"without a label": dataset.dropped_rows} if dataset.dropped_rows else {},
        "columns": columns,
        "missing_cells": sum(c.get("missing", 0) for c in columns.values()),
        **balance,
        "splits": splits,
        "warnings": warnings,
    }


def summary_line(report: dict) -> str:
    """One line for the CLI: rows, what was left out, missing cells, class balance."""
    left_out = sum(report["rows_left_out"].values())
    missing = [f"{name} {c['missing']}" for name, c in report["columns"].items() if c.get("missing")]
    if "target" in report:
        t = report["target"]
        balance = f"label from {t['min']:.4g} to {t['max']:.4g} (median {t['median']:.4g}, mean {t['mean']:.4g} ± {t['std']:.4g})"
    else:
        share = {name: count / max(report["rows_used"], 1) for name, count in report["classes"].items()}
        balance = "classes " + ", ".join(f"{name} {fraction:.0%}" for name, fraction in list(share.items())[:6]) + \
            (" …" if len(share) > 6 else "")
    return (f"{report['rows_used']} rows used of {report['rows_read']}" + (f" ({left_out} left out: no label)" if left_out else "")
            + (f"; missing cells filled: {', '.join(missing)}" if missing else "; no missing cells") + f"; {balance}")
