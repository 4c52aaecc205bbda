"""`toolkit retrain`: a challenger trained on the base data plus the labelled feedback, judged against
the champion (the model being served) on the same held-out rows, released only if it is as good.

No labeller steers a release. The challenger is judged only on rows feedback cannot touch: the
base dataset's test split (the same split the champion was judged on: same data, same seed) and
the newest `holdout_fraction` of the feedback of the labellers the environment file trusts
(`feedback.trusted_labellers`). Every labeller's rows, trusted or not, are capped at
`max_labeller_share` of the rows the challenger trains on, so one labeller's crafted rows are a
bounded part of what it learns; the decision record counts each labeller's rows. The gate, in order:
  1. the challenger's accuracy on the test split is at least `quality_floor`, and on the held-out
     feedback too when it has at least `feedback.min_labelled` rows;
  2. it is at least the champion's minus `tolerance` on the test split (the trusted labels);
  3. and on the held-out feedback (the newest inputs), when there is any;
  4. a challenger that learned from an untrusted labeller's feedback needs trusted held-out feedback
     (`feedback.min_labelled` rows) to be judged on: else the champion stays.
Either way a decision record with both models' metrics, the data's hashes and row counts and the
reason is written to the artifact store (`decisions/<env>/<time>.json`) and kept locally
(`.local/decision-<env>.json`, what `toolkit status` shows).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.lines import silent
from toolkit.loop.feedback_data import LabelledRow, labelled_rows, rows_digest, with_feedback
from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.data import Dataset, stratified_split
from toolkit.ml.nn.metrics import REGRESSION_METRICS, classification_report, regression_report
from toolkit.ml.signing import load_signed_artifact, sign_artifact
from toolkit.ml.table import sha256_file
from toolkit.ml.train import DatasetChoice, train_and_save
from toolkit.paths import read_json, write_json
from toolkit.signing_keys import private_key, trusted_keys
from toolkit.store.layout import Area, StoreLayout

Progress = Callable[[str], None]
METRICS = ("accuracy", "roc_auc", "f1")


@dataclass
class Decision:
    release: bool
    reason: str
    record: dict = field(default_factory=dict)


def evaluate(model: ModelArtifact, dataset: Dataset, rows: np.ndarray) -> dict | None:
    """accuracy, ROC AUC, F1 of `model` on `rows` of `dataset` (a regressor: R², RMSE, MAE; None for no rows)."""
    if len(rows) == 0:
        return None
    x = model.preprocessor.transform_table(dataset.table, rows)
    if model.regression:
        report = regression_report(dataset.y[rows], model.predict_values(x))
        return {k: round(float(report[k]), 6) for k in REGRESSION_METRICS} | {"n": int(len(rows))}
    remap = np.array([model.classes.index(c) if c in model.classes else -1 for c in dataset.classes])
    report = classification_report(remap[dataset.y[rows]], model.predict_proba(x), len(model.classes))
    return {k: round(float(report[k]), 4) for k in METRICS} | {"n": int(len(rows))}


def gate(ctx: Context, champion: dict | None, challenger: dict, labellers: dict | None = None) -> tuple[bool, str]:
    """(release?, why) from the metrics of both on the test split and the trusted held-out feedback;
    `labellers`: whose feedback the challenger trained on (TrainingData.labellers)."""
    rules = ctx.config.feedback.retrain
    if "rmse" in challenger["test_split"]:
        return regression_gate(ctx, champion, challenger, labellers)
    test = challenger["test_split"]["accuracy"]
    if test < rules.quality_floor:
        return False, f"the challenger's accuracy on the test split, {test:.3f}, is below the quality floor {rules.quality_floor}"
    recent = challenger.get("feedback_holdout")
    refused = _untrusted_refusal(ctx, recent, labellers)
    if refused:
        return False, refused
    if recent and recent["n"] >= ctx.config.feedback.min_labelled and recent["accuracy"] < rules.quality_floor:
        # labels the challenger cannot learn (contradicting the base data, e.g. flipped) or a world it cannot fit
        return False, (f"the challenger's accuracy on the held-out feedback, {recent['accuracy']:.3f} (n={recent['n']}), is below "
                       f"the quality floor {rules.quality_floor}: the feedback's labels contradict the rest of the data, or no model "
                       "of this shape fits them")
    if champion is None:
        return True, f"nothing is served yet; the challenger clears the quality floor ({test:.3f} ≥ {rules.quality_floor})"
    for name, ours, theirs in _judged_on_both(champion, challenger):
        if ours["accuracy"] < theirs["accuracy"] - rules.tolerance:
            return False, (f"the challenger is worse than the champion on {name}: accuracy {ours['accuracy']:.3f} against "
                           f"{theirs['accuracy']:.3f} (tolerance {rules.tolerance})")
    return True, (f"the challenger is at least as good as the champion within {rules.tolerance} on the test split "
                  f"({challenger['test_split']['accuracy']:.3f} vs {champion['test_split']['accuracy']:.3f})"
                  + (f" and on the held-out feedback ({challenger['feedback_holdout']['accuracy']:.3f} vs "
                     f"{champion['feedback_holdout']['accuracy']:.3f})" if challenger.get("feedback_holdout") and champion.get("feedback_holdout") else ""))


def _judged_on_both(champion: dict, challenger: dict):
    """(what, the challenger's metrics, the champion's) for each set of rows both were judged on."""
    for part, name in (("test_split", "the test split"), ("feedback_holdout", "the held-out feedback")):
        if challenger.get(part) is not None and champion.get(part) is not None:
            yield name, challenger[part], champion[part]


def _untrusted_refusal(ctx: Context, recent: dict | None, labellers: dict | None) -> str | None:
    """Labels anyone with a token can send must not steer a release on their own: only the trusted
    labellers' held-out feedback can show that what the challenger learned from them is right."""
    untrusted = sorted(name for name, info in (labellers or {}).items() if info["trained"] and not info["trusted"])
    if untrusted and (recent or {}).get("n", 0) < ctx.config.feedback.min_labelled:
        return (f"the challenger learned from feedback of untrusted labellers ({', '.join(untrusted)}) and there are "
                f"{(recent or {}).get('n', 0)} held-out rows of trusted labellers' feedback to judge it on (at least "
                f"feedback.min_labelled = {ctx.config.feedback.min_labelled} needed; feedback.trusted_labellers)")
    return None


def regression_gate(ctx: Context, champion: dict | None, challenger: dict, labellers: dict | None = None) -> tuple[bool, str]:
    """The gate for a regressor: R² on the test split above `r2_floor`, and RMSE no more than
    `tolerance` (a share) above the champion's on the test split and on the trusted held-out feedback."""
    rules = ctx.config.feedback.retrain
    test = challenger["test_split"]
    if test["r2"] <= rules.r2_floor:
        return False, (f"the challenger's R² on the test split, {test['r2']:.3f}, is not above the floor {rules.r2_floor} "
                       "(feedback.retrain.r2_floor; 0 is predicting the mean)")
    refused = _untrusted_refusal(ctx, challenger.get("feedback_holdout"), labellers)
    if refused:
        return False, refused
    if champion is None:
        return True, f"nothing is served yet; the challenger clears the R² floor ({test['r2']:.3f} > {rules.r2_floor})"
    for name, ours, theirs in _judged_on_both(champion, challenger):
        if ours["rmse"] > theirs["rmse"] * (1 + rules.tolerance):
            return False, (f"the challenger is worse than the champion on {name}: RMSE {ours['rmse']:.4g} against "
                           f"{theirs['rmse']:.4g} (tolerance {rules.tolerance:.0%})")
    return True, (f"the challenger's RMSE is within {rules.tolerance:.0%} of the champion's or better on the test split "
                  f"({test['rmse']:.4g} vs {champion['test_split']['rmse']:.4g})")


@dataclass
class TrainingData:
    """What a challenger is trained and judged on: the base dataset plus the labelled feedback."""

    choice: DatasetChoice
    feedback: list[LabelledRow]
    merged: Dataset
    base_rows: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray  # the base test split
    holdout: np.ndarray  # the trusted labellers' newest feedback
    labellers: dict = field(default_factory=dict)  # name: {rows, trained, holdout, trusted}

    @property
    def feedback_info(self) -> dict:
        trained = sum(v["trained"] for v in self.labellers.values())
        return {"rows": len(self.feedback), "sha256": rows_digest(self.feedback), "trained": trained,
                "holdout": int(len(self.holdout)), "unused": len(self.feedback) - trained - int(len(self.holdout)),
                "labellers": self.labellers}


def training_data(ctx: Context, choice: DatasetChoice, feedback: list[LabelledRow]) -> TrainingData:
    """The merged dataset and its rows: base training rows + capped feedback to train on, the base
    validation rows to stop on, the base test split and the trusted labellers' newest feedback to judge on."""
    settings, rules = ctx.config.training, ctx.config.feedback.retrain
    trusted = set(ctx.config.feedback.trusted_labellers)
    base = choice.load()
    train, val, test = stratified_split(base.strata, settings.validation_fraction, settings.test_fraction, settings.seed)
    n_base = len(base.y)
    by_labeller: dict[str, list[int]] = {}
    for i, row in enumerate(feedback):  # oldest first
        by_labeller.setdefault(row.labeller or "(unnamed)", []).append(n_base + i)
    holdout: list[int] = []
    candidates: dict[str, list[int]] = {}
    for name, rows in by_labeller.items():
        kept = int(round(len(rows) * rules.holdout_fraction)) if name in trusted and len(rows) >= 2 else 0
        holdout += rows[len(rows) - kept:]
        candidates[name] = rows[:len(rows) - kept]
    chosen = _capped(candidates, len(train), rules.max_labeller_share)
    labellers = {name: {"rows": len(by_labeller[name]), "trained": len(chosen[name]),
                        "holdout": len(by_labeller[name]) - len(candidates[name]), "trusted": name in trusted}
                 for name in sorted(by_labeller)}
    trained = np.array(sorted(i for rows in chosen.values() for i in rows), dtype=np.int64)
    return TrainingData(choice, feedback, with_feedback(base, feedback), n_base, np.sort(np.concatenate([train, trained])), val, test,
                        np.array(sorted(holdout), dtype=np.int64), labellers)


def _capped(rows: dict[str, list[int]], base_rows: int, share: float) -> dict[str, list[int]]:
    """Each labeller's newest rows, as many as keep it at most `share` of all the rows trained on
    (`base_rows` plus every labeller's kept rows). Capping one lowers the total, so it repeats until
    nothing changes (each round only lowers counts: it ends)."""
    counts = {name: len(r) for name, r in rows.items()}
    while True:
        cap = int(share * (base_rows + sum(counts.values())))
        capped = {name: min(len(rows[name]), cap) for name in rows}
        if capped == counts:
            break
        counts = capped
    return {name: rows[name][len(rows[name]) - counts[name]:] if counts[name] else [] for name in rows}


def gather(ctx: Context, bucket: str | None = None) -> TrainingData:
    """The environment's base dataset and the labelled feedback in its artifact store."""
    choice = DatasetChoice.from_config(ctx.config.training, root=ctx.root)
    return training_data(ctx, choice, labelled_rows(ctx.config, bucket or ctx.config.artifact_store.bucket))


def train_challenger(ctx: Context, data: TrainingData, out_root: Path) -> Path:
    """Train on `data` here and sign it with the environment's key; the artifact's directory."""
    key = private_key(ctx)  # before training: a missing key fails now
    result = train_and_save(data.choice, ctx.config.training, out_root, env=ctx.env, dataset=data.merged,
                            splits=(data.train, data.validation, data.test), data_info={"feedback": data.feedback_info})
    sign_artifact(result.artifact_dir, key)
    return result.artifact_dir


Trainer = Callable[[TrainingData], Path]


def retrain(ctx: Context, champion_dir: Path | None, out_root: Path, on_line: Progress = silent, bucket: str | None = None,
            trainer: Trainer | None = None) -> Decision:
    """Train a challenger (here, or with `trainer`: e.g. as a GPU Job), judge it against the champion
    and decide; no release here (see release.py)."""
    data = gather(ctx, bucket)
    on_line(f"data: {data.base_rows} base rows, {len(data.feedback)} labelled feedback rows")
    for name, info in data.labellers.items():
        on_line(f"labeller {name}{' (trusted)' if info['trusted'] else ''}: {info['rows']} rows, {info['trained']} trained on, "
                f"{info['holdout']} held out")
    challenger_dir = (trainer or (lambda d: train_challenger(ctx, d, out_root)))(data)
    return judge(ctx, data, champion_dir, challenger_dir, on_line)


def judge(ctx: Context, data: TrainingData, champion_dir: Path | None, challenger_dir: Path, on_line: Progress = silent) -> Decision:
    """Both models on the same held-out rows, the gate, and the decision record. Both must be signed
    by a key the environment trusts (the challenger may come back from a Job)."""
    keys = trusted_keys(ctx)
    challenger = load_signed_artifact(challenger_dir, keys)
    on_line(f"challenger {challenger.version} trained")
    merged, test, holdout = data.merged, data.test, data.holdout
    metrics = {"challenger": {"test_split": evaluate(challenger, merged, test), "feedback_holdout": evaluate(challenger, merged, holdout)}}
    champion = load_signed_artifact(champion_dir, keys) if champion_dir else None
    if champion is not None:
        metrics["champion"] = {"test_split": evaluate(champion, merged, test), "feedback_holdout": evaluate(champion, merged, holdout)}
    release, reason = gate(ctx, metrics.get("champion"), metrics["challenger"], data.labellers)
    record = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "env": ctx.env,
        "decision": "release" if release else "keep", "reason": reason,
        "champion": {"version": champion.version, **metrics["champion"]} if champion else None,
        "challenger": {"version": challenger.version, "artifact": str(challenger_dir), **metrics["challenger"]},
        "data": {"base": {"path": ctx.config.training.dataset, "sha256": sha256_file(data.choice.path), "rows": data.base_rows},
                 "feedback": data.feedback_info,
                 "test_split_rows": int(len(test))},
        "gate": ctx.config.feedback.retrain.model_dump(),
    }
    return Decision(release, reason, record)


def record_decision(ctx: Context, record: dict, bucket: str | None = None) -> str:
    """Write the decision to the artifact store and keep it locally; returns its s3:// URL."""
    from toolkit.store.s3 import put_json

    stamp = record["time"].replace(":", "").replace("-", "")
    url = put_json(ctx.config, StoreLayout.of(ctx.config, bucket).record(Area.DECISIONS, stamp), record)
    write_json(ctx.paths.record(f"decision-{ctx.env}"), {**record, "url": url})
    return url


def last_decision(ctx: Context) -> dict | None:
    return read_json(ctx.paths.record(f"decision-{ctx.env}"))


def champion_artifact(ctx: Context, version: str | None, bucket: str | None = None) -> Path | None:
    """The served model's artifact: in artifacts/<env>/, else downloaded from the artifact store."""
    if version is None:
        return None
    local = ctx.paths.artifacts(ctx.env) / version
    if (local / "manifest.json").exists():
        return local
    from toolkit.store.artifacts import download_artifact

    url = StoreLayout.of(ctx.config, bucket).model(version)
    try:
        return download_artifact(ctx.config, url, ctx.paths.artifacts(ctx.env))
    except ToolkitError as exc:
        raise ToolkitError(f"the served model {version} is neither in {local} nor in the artifact store ({exc}).") from None
