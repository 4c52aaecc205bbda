"""`toolkit train | evaluate | predict | verify | signing-key`: the numpy core on CSV and JSON data, and signed artifacts."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolkit.cli.options import (
    JSON_OPTION,
    cluster_options,
    echo_err,
    emit_json,
    load_context,
    pass_context,
    quiet,
    signed_model,
    timeout_option,
)
from toolkit.cli.progress import EpochProgress
from toolkit.errors import BadInputError


@click.command()
@pass_context
@click.option("--data", metavar="CSV", help="CSV to train on, a path or s3://bucket/key (default: training.dataset).")
@click.option("--label", help="Label column. A label other than the config's drops the config's target/categorical/drop settings "
                                  "and uses loss auto unless --loss is given.")
@click.option("--target", help="Derive a binary target from the label, e.g. 'num > 0'.")
@click.option("--categorical", multiple=True, metavar="COL", help="One-hot encode this column (repeatable).")
@click.option("--drop", "drop_columns", multiple=True, metavar="COL", help="Ignore this (id-like) column (repeatable).")
@click.option("--delimiter", help="CSV delimiter (default: detected).")
@click.option("--cv", "cv_folds", type=click.IntRange(min=2), help="Also run K-fold stratified cross-validation and report mean ± std.")
@click.option("--task", type=click.Choice(["auto", "classification", "regression"]),
              help="Override training.task (auto: regression for a numeric label that looks continuous).")
@click.option("--loss", type=click.Choice(["auto", "binary_cross_entropy", "categorical_cross_entropy", "mse"]),
              help="Override training.loss (auto: binary for two classes, categorical for more, mse for regression).")
@click.option("--hidden-layers", metavar="N,N,...", help="Override training.hidden_layers, e.g. 64,32.")
@click.option("--activation", type=click.Choice(["relu", "tanh", "sigmoid"]), help="Override training.activation.")
@click.option("--learning-rate", type=float, help="Override training.learning_rate.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override training.epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override training.batch_size.")
@click.option("--patience", type=click.IntRange(min=1), help="Override training.patience (epochs without improvement).")
@click.option("--l2", type=float, help="Override training.l2 (weight decay).")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), help="Override training.class_weight.")
@click.option("--seed", type=click.IntRange(min=0), help="Override training.seed.")
@click.option("--out", type=click.Path(path_type=Path), help="Artifact root (default: artifacts/<ENV>).")
@click.option("--upload", metavar="S3_URL", help="Also upload the artifact to s3://bucket/prefix/<version>/ (the artifact store).")
@click.option("--remote", is_flag=True, help="Run as a GPU training Job on ENV's cluster instead; logs are streamed.")
@cluster_options("With --remote: ")
@timeout_option("With --remote: how long to wait for the Job.")
@JSON_OPTION
def train(ctx, data, label, target, categorical, drop_columns, delimiter, cv_folds, out, upload, remote,
          kubeconfig, context, timeout, as_json, **model_settings) -> None:
    """Train a classifier or a regressor with the numpy core and save a verified model artifact.

    Splits the data into stratified train/validation/test sets, fits preprocessing on the
    training rows only, trains with early stopping on validation loss, and writes
    artifacts/<ENV>/<version>/ with weights.npz, manifest.json, metrics.json and
    training_curves.png (artifacts/<ENV>/latest points at it). The model settings come from
    the environment file's `training` section; a flag overrides one for this run only, and
    the manifest records the settings used.

    \b
    Examples:
      toolkit train --env local
      toolkit train --env local --cv 5
      toolkit train --env local --data other.csv --label outcome --categorical colour
      toolkit train --env local --hidden-layers 64,32 --learning-rate 0.003 --class-weight balanced
      toolkit train --env dev --remote
    """
    env = ctx.env
    if remote:
        given = [f"--{k.replace('_', '-')}" for k, v in model_settings.items() if v is not None]
        if given:
            from toolkit.errors import BadInputError

            raise BadInputError(f"{', '.join(given)}: a remote training Job trains with the environment file's settings; "
                                f"set them under `training` in environments/{env}.yaml, or train here without --remote.")
        return _train_remote(ctx, kubeconfig, context, timeout, as_json)
    from toolkit.ml.nn.device import summary as device_summary
    from toolkit.ml.train import DatasetChoice, train_and_save, training_device

    if data is not None and data.startswith("s3://"):
        from toolkit.store.s3 import download_file

        data = download_file(ctx.config, data)
    data = Path(data) if data is not None else None
    settings = training_settings(ctx, model_settings, new_label=label is not None and label != ctx.config.training.label)
    choice = DatasetChoice.from_config(
        settings, root=ctx.root, path=data, label=label, target=target, categorical=categorical,
        drop_columns=drop_columns, delimiter=delimiter,
    )
    from toolkit.ml.signing import sign_artifact
    from toolkit.signing_keys import private_key

    signing_key = private_key(ctx)  # before training: a missing key fails now, not after the last epoch
    device = training_device(settings.device, env)
    progress = EpochProgress(settings.epochs, enabled=not as_json)
    on_fold = None if as_json else _report_fold
    try:
        result = train_and_save(choice, settings, out or ctx.paths.artifacts(env), env=env, cv_folds=cv_folds,
                                on_epoch=progress.update, on_fold=on_fold, device=device,
                                on_start=None if as_json else (lambda: echo_err(device_summary(device))))
    finally:
        progress.close()
    sign_artifact(result.artifact_dir, signing_key)
    for warning in result.warnings:
        echo_err(f"warning: {warning}")
    summary = {
        "version": result.version,
        "artifact": str(result.artifact_dir),
        "metrics_file": str(result.metrics_path),
        "curves_png": str(result.curves_path),
        "test": dict(result.metrics["test"]),
        "cv": result.metrics.get("cv"),
        "epochs_run": result.metrics["training"]["epochs_run"],
        "best_epoch": result.metrics["training"]["best_epoch"],
        "warnings": result.warnings,
        "data_report": result.data_report,
        "trained_on": result.trained_on,
    }
    if upload:
        from toolkit.store.artifacts import upload_artifact

        summary["uploaded"] = upload_artifact(ctx.config, result.artifact_dir, upload)
    from toolkit.workloads.job_result import write_job_result

    write_job_result({key: summary.get(key) for key in ("version", "uploaded", "trained_on")})
    if as_json:
        emit_json(summary)
        return
    from toolkit.ml.data_report import summary_line

    click.echo(f"data     {summary_line(result.data_report)}")
    if result.task_note:
        click.echo(f"task     {result.task_note}")
    click.echo(f"model    {result.version}  ({summary['epochs_run']} epochs, best {summary['best_epoch']})")
    click.echo(f"test     {_format_report(result.metrics['test'])}")
    if result.metrics.get("cv"):
        cv = result.metrics["cv"]
        keys = ("r2", "mae", "rmse") if "r2" in cv else ("accuracy", "roc_auc", "f1")
        parts = [f"{k} {cv[k]['mean']:.3f} ± {cv[k]['std']:.3f}" for k in keys]
        click.echo(f"cv({cv['folds']})    " + "  ".join(parts))
    click.echo(f"artifact {result.artifact_dir}  (signed with the key of {env})")
    click.echo(f"metrics  {result.metrics_path}")
    click.echo(f"curves   {result.curves_path or '(matplotlib not installed: no plot; the history is in metrics.json)'}")
    if upload:
        click.echo(f"uploaded {summary['uploaded']}")


def training_settings(ctx, flags: dict, new_label: bool = False):
    """The environment file's training settings with the flags given (validated as the file is;
    a refusal names the flag). Another label than the file's also resets the loss to auto: the
    file's loss was chosen for its own label."""
    from pydantic import ValidationError

    from toolkit.errors import BadInputError

    settings = ctx.config.training
    overrides = {key: value for key, value in flags.items() if value is not None}
    if new_label and "loss" not in overrides:
        overrides["loss"] = "auto"
    if new_label and "task" not in overrides:
        overrides["task"] = "auto"
    if isinstance(overrides.get("hidden_layers"), str):
        try:
            overrides["hidden_layers"] = [int(n) for n in overrides["hidden_layers"].split(",")]
        except ValueError:
            raise BadInputError(f"--hidden-layers {flags['hidden_layers']!r}: give layer widths separated by commas, e.g. 64,32.") from None
    if not overrides:
        return settings
    try:
        return type(settings).model_validate(settings.model_dump() | overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = "--" + str(error["loc"][0]).replace("_", "-")
        raise BadInputError(f"{option}: {error['msg']}.") from None


def _train_remote(ctx, kubeconfig, context, timeout, as_json: bool) -> None:
    """`toolkit train --remote`: the GPU training Job on ENV's cluster, logs streamed."""
    from toolkit.delivery.remote_training import train_remote
    from toolkit.delivery.runtime import open_runtime
    from toolkit.ml.nn.device import describe_line

    result = train_remote(ctx, open_runtime(ctx, kubeconfig, context), timeout, on_line=quiet if as_json else echo_err)
    if as_json:
        emit_json(result)
        return
    pod = result.get("result", {})
    click.echo(f"training Job {result['job']} completed in {result['seconds']} s on {describe_line(pod.get('trained_on'))}; "
               f"artifact {pod.get('uploaded') or 'under ' + result['artifacts']}")


def _report_fold(index: int, report: dict) -> None:
    echo_err(f"fold {index + 1}   {_format_report(report)}")


def _format_report(report: dict) -> str:
    keys = ("r2", "mae", "rmse") if "r2" in report else ("accuracy", "precision", "recall", "f1", "roc_auc")
    return "  ".join(f"{k} {report[k]:.3f}" for k in keys)


@click.command()
@signed_model
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Labelled CSV to score.")
@click.option("--delimiter", help="CSV delimiter (default: detected).")
@click.option("--split", type=click.Choice(["auto", "test", "validation", "train", "all"]), default="auto", show_default=True,
              help="Which rows of the model's own training file to score, rebuilt from the seed and fractions in its manifest "
                   "(auto: test on the training file, all on any other file; all on the training file includes training rows).")
@click.option("--importance", "importance_png", type=click.Path(path_type=Path), is_flag=False, flag_value=Path("importance.png"),
              default=None, metavar="[PNG]",
              help="Also rank the feature columns by permutation importance (accuracy lost when one is shuffled, 5 repeats) "
                   "and plot them (default importance.png).")
@JSON_OPTION
def evaluate(model, data: Path, delimiter: str | None, split: str, importance_png: Path | None, as_json: bool) -> None:
    """Score a saved model on a labelled CSV (checksums and signature are verified first).

    On the file the model was trained on, only its held-out test split is scored unless --split
    says otherwise: scores on rows the model was fitted on say little about new data.

    \b
    Examples:
      toolkit evaluate --model artifacts/local/latest --env local --data data/heart-cleveland.csv
      toolkit evaluate --model artifacts/local/latest --env local --data data/heart-cleveland.csv --split all
      toolkit evaluate --model artifacts/local/latest --env local --data new-patients.csv --json
    """
    from toolkit.ml.predict import evaluate_artifact

    report = evaluate_artifact(model, data, delimiter, split, importance_repeats=5 if importance_png else 0)
    if importance_png:
        try:
            from toolkit.ml.plots import plot_importance

            report["importance_png"] = str(plot_importance(report["importance"], importance_png,
                                                           f"{model.version} on {data.name} ({report['split']} rows)"))
        except ImportError:  # the training image has no matplotlib: the ranking is printed all the same
            report["importance_png"] = None
        except OSError as exc:
            from toolkit.errors import BadInputError

            raise BadInputError(f"{importance_png}: cannot write the plot ({exc.strerror}).") from None
    if as_json:
        emit_json({"version": model.version, "data": str(data), **report})
        return
    seen = report["rows_seen_in_training"]
    which = {"test": "its test split", "validation": "its validation split", "train": "its training split",
             "all": "every row"}[report["split"]]
    note = f"; {seen} of them trained on" if seen else "; training rows among them" if seen is None else ""
    click.echo(f"model {model.version} on {data}, {which} ({report['n']} rows{note})")
    click.echo(_format_report(report))
    if not model.regression:
        click.echo("confusion matrix (rows: true, columns: predicted; classes " + ", ".join(model.classes) + ")")
        for row in report["confusion_matrix"]:
            click.echo("  " + " ".join(f"{v:5d}" for v in row))
    if importance_png:
        click.echo(f"permutation importance ({'R²' if model.regression else 'accuracy'} lost when the column is shuffled; "
                   "mean ± std of 5)")
        for item in report["importance"]:
            click.echo(f"  {item['feature']:<24} {item['mean']:+.3f} ± {item['std']:.3f}")
        click.echo(f"plot {report['importance_png'] or '(matplotlib not installed: no plot)'}")


@click.command()
@signed_model
@click.option("--input", "input_path", default="-", type=click.Path(path_type=Path, allow_dash=True),
              help="CSV or JSON records ([{...}] or {\"records\": [...]}); '-' reads stdin.")
@click.option("--output", "output_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Batch scoring: read the --input CSV in chunks (memory bounded whatever its size) and write the "
                   "predictions here as CSV (--keep columns, predicted, probability_<class>).")
@click.option("--keep", multiple=True, metavar="COL", help="With --output: copy this input column (an id) into the output "
                                                            "(repeatable).")
@JSON_OPTION
def predict(model, input_path: Path, output_path: Path | None, keep: tuple[str, ...], as_json: bool) -> None:
    """Predict labels and class probabilities for records by feature name (checksums and signature
    are verified first).

    Input contract (the server's too): the model's features by name; the label column and the
    columns dropped at training are ignored and reported; any other name is refused; in JSON a
    numeric feature is a JSON number or null.

    \b
    Examples:
      toolkit predict --model artifacts/local/latest --env local --input patients.csv
      echo '[{"age": 63, ...}]' | toolkit predict --model artifacts/local/latest --env local --json
      toolkit predict --model artifacts/local/latest --env local --input big.csv --output scored.csv --keep patient_id
    """
    from toolkit.ml.input_contract import InputContract
    from toolkit.ml.predict import predict_table, read_records

    if keep and output_path is None:
        from toolkit.errors import BadInputError

        raise BadInputError("--keep copies input columns into the --output CSV; give --output too.")
    if output_path is not None:
        return _score_csv(model, input_path, output_path, keep, as_json)
    contract = InputContract.of(model)
    stdin = str(input_path) == "-"
    table = read_records(None, click.get_binary_stream("stdin"), contract=contract) if stdin else read_records(input_path,
                                                                                                                 contract=contract)
    predictions = predict_table(model, table)
    ignored = sorted(contract.ignored)
    if as_json:
        emit_json({"model_version": model.version, "predictions": predictions, **({"ignored": ignored} if ignored else {})})
        return
    _say_ignored(ignored)
    if model.regression:
        click.echo(f"{'row':>8}  {model.manifest['label']:>12}")
        for i, p in enumerate(predictions, start=1):
            click.echo(f"{i:>8}  {p['value']:>12.6g}")
        return
    header = ["row", "label"] + [f"p({c})" for c in model.classes]
    click.echo("  ".join(f"{h:>8}" for h in header))
    for i, p in enumerate(predictions, start=1):
        cells = [str(i), p["label"]] + [f"{p['probabilities'][c]:.4f}" for c in model.classes]
        click.echo("  ".join(f"{c:>8}" for c in cells))


def _say_ignored(ignored: list[str]) -> None:
    if ignored:
        echo_err(f"ignored column(s) {ignored}: the model does not take them (its label, or dropped at training)")


def _score_csv(model, input_path: Path, output_path: Path, keep: tuple[str, ...], as_json: bool) -> None:
    """`toolkit predict --output`: CSV → CSV in chunks, with a rows/s progress bar on a terminal."""
    import time

    from tqdm import tqdm

    from toolkit.errors import BadInputError
    from toolkit.ml.predict import score_csv

    if str(input_path) == "-":
        raise BadInputError("--output scores a CSV file: give it with --input FILE.")
    started = time.perf_counter()
    with tqdm(desc="score", unit=" rows", unit_scale=True, file=sys.stderr, leave=False, disable=True if as_json else None) as bar:
        result = score_csv(model, input_path, output_path, keep, on_rows=bar.update)
    seconds = time.perf_counter() - started
    summary = {"model_version": model.version, "input": str(input_path), "output": str(output_path), "seconds": round(seconds, 3),
               **result}
    if as_json:
        emit_json(summary)
        return
    _say_ignored(result["ignored"])
    click.echo(f"scored {result['rows']} rows of {input_path} into {output_path} in {seconds:.1f} s "
               f"({', '.join(result['columns'])})")


@click.command()
@signed_model
@click.option("--format", "format_", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="What to export to.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The file to write, e.g. model.onnx.")
@JSON_OPTION
def export(model, format_: str, out: Path, as_json: bool) -> None:
    """Export a model for another runtime: ONNX with the preprocessing inside the graph (imputation,
    scaling, one-hot), so the exported model takes the raw feature columns (numbers as double,
    categories as their text) and gives `probabilities` and `label`; signed like the model, with
    the key of the environment given with --env (OUT.sig).

    \b
    Examples:
      toolkit export --model artifacts/local/latest --env local --out model.onnx
      model_signing verify key --signature model.onnx.sig --public_key .local/signing/local.pub model.onnx
    """
    from toolkit.errors import BadInputError
    from toolkit.ml.onnx_export import export_onnx
    from toolkit.ml.signing import sign_file

    env = click.get_current_context().params.get("trust_env")  # --env of signed_model: it also names the key that signs
    if not env:
        raise BadInputError("give --env ENV: the exported file is signed with ENV's model-signing key.")
    from toolkit.signing_keys import private_key

    signing_key = private_key(load_context(env))
    result = export_onnx(model, out)
    signature = sign_file(out, signing_key)
    summary = {"model_version": model.version, "format": format_, "out": str(out), "signature": str(signature), **result}
    if as_json:
        emit_json(summary)
        return
    click.echo(f"exported model {model.version} to {out} (ONNX opset {result['opset']}, {result['bytes']:,} bytes), signed: {signature}")
    click.echo("inputs   " + ", ".join(result["inputs"]) + "  (one column each: shape [N, 1])")
    click.echo("outputs  " + ("value (double [N, 1])" if model.regression else "probabilities (double [N, classes]), label (string [N])"))


LAST_RELEASE = "release"


@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="Model artifact directory, e.g. artifacts/local/latest.")
@click.option("--image", metavar="REF", is_flag=False, flag_value=LAST_RELEASE,
              help="An image in ENV's registry by digest (host/repo@sha256:…); alone, the serving image of ENV's last push "
                   "or promotion. Needs --env.")
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
              help="Verify the model's signature against this public key only.")
@click.option("--env", "trust_env", metavar="ENV", help="Verify against the keys ENV trusts (its own and those it promotes from).")
@JSON_OPTION
def verify(model_dir: Path | None, image: str | None, public_key: Path | None, trust_env: str | None, as_json: bool) -> None:
    """Check a model artifact (--model) or an image (--image) before it is trusted. Exit 0 when it
    can be served, 2 with the reason when not.

    A model: its manifest, every file's checksum, and its signature against the trusted public keys.
    An image: its cosign signature (tag sha256-<hex>.sig) and its signed SBOM attestation
    (sha256-<hex>.att) in ENV's registry, against the keys ENV trusts: what `toolkit deploy` checks."""
    if (model_dir is None) == (image is None):
        raise BadInputError("give --model DIR or --image REF (one of them).")
    if image is not None:
        return _verify_image(image, trust_env, as_json)
    from toolkit.ml.signing import load_signed_artifact
    from toolkit.signing_keys import chosen_keys

    model = load_signed_artifact(model_dir, chosen_keys(public_key, trust_env))
    result = {"model": str(model.path), "version": model.version, "files": len(model.manifest["files"]) + 1,
              "signed_by": model.signed_by}
    if as_json:
        emit_json(result)
        return
    click.echo(f"ok  {model.path}: model {model.version}, {result['files']} files intact, signed by the key of {model.signed_by}")


def _verify_image(image: str, env: str | None, as_json: bool) -> None:
    from toolkit.delivery.image_trust import require_trusted_image, resolve_image
    from toolkit.local.services import ensure_emulated_services

    if not env:
        raise BadInputError("--image needs --env ENV: the registry the image is in and the keys it must be signed with.")
    ctx = load_context(env)
    ensure_emulated_services(ctx, on_line=echo_err)
    image = resolve_image(ctx, image)
    trust = require_trusted_image(ctx, image)
    if as_json:
        emit_json({"image": image, "signed_by": trust.signed_by, "sbom_signed_by": trust.sbom_signed_by})
        return
    click.echo(f"ok  {image}: signed by the key of {trust.signed_by}, SBOM attested by the key of {trust.sbom_signed_by}")


@click.command("signing-key")
@pass_context
@click.option("--rotate", is_flag=True, help="Replace an existing key (every model signed with the old one must be re-signed "
                                             "or retrained before it can be served again).")
def signing_key(ctx, rotate: bool) -> None:
    """Create ENV's model-signing key pair: the private key into the Secrets Manager secret the stack
    made for it (emulated environments: .local/signing/), the public key into signing.public_key
    (keys/ENV.pub), to commit. Run once per environment, by someone allowed to write the secret."""
    from toolkit.signing_keys import create_signing_key

    for line in create_signing_key(ctx, rotate):
        click.echo(line)


COMMANDS = [train, evaluate, predict, export, verify, signing_key]
