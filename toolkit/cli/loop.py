"""`toolkit retrain`: the feedback loop's champion/challenger gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.cli.options import JSON_OPTION, echo_err, emit_json, pass_context, pass_runtime, quiet, timeout_option
from toolkit.errors import BadInputError


@click.command()
@pass_runtime()
@click.option("--dry-run", is_flag=True, help="Train and judge the challenger, write the decision, but release nothing.")
@click.option("--remote", is_flag=True, help="Train the challenger as a GPU Job on ENV's cluster (the gate still runs here).")
@timeout_option("With --remote: how long to wait for the training Job.")
@click.option("--sweep", "sweep_id", metavar="ID", help="Train the challenger with the best setting of this `toolkit sweep` "
                                                        "(its leaderboard under .local/sweeps/ENV/ID/) instead of the file's.")
@JSON_OPTION
def retrain(runtime, dry_run: bool, remote: bool, timeout, sweep_id: str | None, as_json: bool) -> None:
    """Retrain on the labelled feedback and release the challenger only if it is as good as the champion.

    \b
    1. gathers the base dataset and the labelled feedback from the artifact store (the prediction
       log joined with the ground truth sent to POST /v1/feedback);
    2. trains a challenger on the base training rows plus the older feedback (here, or with
       --remote as a Job on the GPU pool, from a snapshot of that feedback);
    3. scores the challenger and the served model (the champion) on the same held-out rows: the
       base test split and the newest feedback (feedback.retrain.holdout_fraction);
    4. releases the challenger (build, push, deploy, smoke test) only if it clears
       feedback.retrain.quality_floor on both and is within feedback.retrain.tolerance of the
       champion on both; otherwise the champion keeps serving.
    Either way a decision record goes to s3://<bucket>/decisions/ENV/ (`toolkit status` shows the last).
    Exit 0 for both outcomes; 1 when something failed."""
    from toolkit.loop.command import retrain_and_release

    ctx = runtime.ctx
    on_line = quiet if as_json else echo_err
    if sweep_id:
        ctx = _with_sweep_best(ctx, sweep_id, remote, on_line)
    runtime.prepare(on_line)
    remote_timeout = (timeout or ctx.config.workloads.remote_training.active_deadline_seconds) if remote else None
    record = retrain_and_release(ctx, runtime, dry_run, on_line, remote_timeout)
    if as_json:
        emit_json(record)
        return
    verdict = ("released" if record["released"] else "would release (dry run)") if record["decision"] == "release" else "kept the champion"
    click.echo(f"decision {verdict}: {record['reason']}")
    for side in ("champion", "challenger"):
        if record[side]:
            parts = [f"{part} acc {m['accuracy']:.3f} auc {m['roc_auc']:.3f} (n={m['n']})"
                     for part in ("test_split", "feedback_holdout") if (m := record[side].get(part))]
            click.echo(f"{side:<10} {record[side]['version']}  " + "  ".join(parts))
    click.echo(f"record   {record['url']}")


def _with_sweep_best(ctx, sweep_id: str, remote: bool, on_line):
    """`ctx` with the training settings of the sweep's best setting."""
    from toolkit.ml.sweep import LEADERBOARD, markdown_setting

    if remote:
        raise BadInputError("--sweep with --remote: the training Job reads the environment file's settings; retrain here, "
                            "or put the sweep's best setting under `training` in the file.")
    path = ctx.paths.state_subdir("sweeps") / ctx.env / sweep_id / LEADERBOARD
    if not path.exists():
        raise BadInputError(f"no sweep {sweep_id} for {ctx.env} here ({path} is missing): run `toolkit sweep --env {ctx.env}` "
                            "(it prints the id).")
    board = json.loads(path.read_text())["leaderboard"]
    if not board:
        raise BadInputError(f"sweep {sweep_id} ranked no setting (none finished every fold).")
    best = board[0]
    on_line(f"settings from {sweep_id}, trial {best['trial']}: {markdown_setting(best['setting'])}")
    training = ctx.config.training.model_copy(update=best["setting"])
    return ctx.with_config(ctx.config.model_copy(update={"training": training}))


@click.command("loop-drill")
@pass_context
@click.option("--timeout", type=click.IntRange(10, 3600), default=600, show_default=True, metavar="SECONDS",
              help="How long to wait for each step.")
@click.option("--ready", is_flag=True, hidden=True, help="Only check: exit 0 if the drill can run now (`make demo-loop`).")
@JSON_OPTION
def loop_drill(ctx, timeout: int, ready: bool, as_json: bool) -> None:
    """Drive the feedback loop once on an emulated environment and time each step (`make demo-loop`).

    \b
    Sends drifted traffic (patients aged 60+) with true labels to the served model, then waits for:
    the PSI metric in Prometheus, the InputDriftDetected alert, Alertmanager's notification to the
    alert receiver, the retraining it starts (`toolkit retrain`), the gate's decision, and the
    released challenger serving (or the champion staying). Needs a served model: `make demo` first."""
    from toolkit.delivery.deploy import live_model_version
    from toolkit.delivery.runtime import open_runtime
    from toolkit.loop.drill import run_drill

    env = ctx.env
    if not ctx.emulated:  # the environment, not the runtime: synthetic traffic never goes to a real one
        raise BadInputError(f"the loop drill sends synthetic traffic and runs on an emulated environment only; {env} is not one.")
    runtime = open_runtime(ctx)
    if ready:
        from toolkit.local.services import local_services_status

        if not all(s.running for s in local_services_status(ctx)) or live_model_version(runtime) is None:
            raise BadInputError("not ready: start the services and release a model (`make demo`).")
        return
    runtime.prepare(quiet if as_json else echo_err)
    if live_model_version(runtime) is None:
        raise BadInputError(f"nothing is served on {env}: release a model first (`make demo`, or `make release ENV={env}`).")
    steps = run_drill(ctx, runtime, on_step=quiet if as_json else
                      lambda s: click.echo(f"{s.seconds:7.1f} s  {s.name:<17} {s.detail}"), timeout=timeout)
    if as_json:
        emit_json([vars(s) for s in steps])


@click.command("train-challenger", hidden=True)
@pass_context
@click.option("--data", required=True, metavar="S3_URL", help="The base dataset (CSV).")
@click.option("--feedback", "snapshot", required=True, metavar="S3_URL", help="The labelled feedback snapshot (remote.py).")
@click.option("--upload", required=True, metavar="S3_URL", help="Upload the challenger to <this>/<version>/.")
def train_challenger(ctx, data: str, snapshot: str, upload: str) -> None:
    """Inside a retraining Job (`toolkit retrain --remote`): train the challenger on the base dataset
    plus the feedback snapshot, the same rows the gate will judge with, and upload it."""
    import tempfile

    from toolkit.loop.feedback_data import read_snapshot
    from toolkit.loop.retrain import train_challenger as train
    from toolkit.loop.retrain import training_data
    from toolkit.ml.train import DatasetChoice
    from toolkit.store.artifacts import upload_artifact
    from toolkit.store.s3 import download_file

    choice = DatasetChoice.from_config(ctx.config.training, root=ctx.root, path=download_file(ctx.config, data))
    rows = read_snapshot(download_file(ctx.config, snapshot).read_bytes())
    echo_err(f"training a challenger on {choice.path.name} and {len(rows)} labelled feedback rows")
    from toolkit.workloads.job_result import write_job_result

    with tempfile.TemporaryDirectory() as tmp:
        artifact = train(ctx, training_data(ctx, choice, rows), Path(tmp))
        url = upload_artifact(ctx.config, artifact, upload)
        click.echo(f"challenger uploaded to {url}")
        manifest = json.loads((artifact / "manifest.json").read_text())
        write_job_result({"version": artifact.name, "uploaded": url, "trained_on": manifest.get("trained_on")})


@click.command("feedback-token")
@pass_context
@click.option("--name", default="local", show_default=True, metavar="NAME",
              help="The labeller: a person, a team or a system that sends ground truth (lower-case letters, digits, . _ -).")
@click.option("--rotate", is_flag=True, help="Replace the labeller's token (the old one stops working when the servers next start).")
@JSON_OPTION
def feedback_token(ctx, name: str, rotate: bool, as_json: bool) -> None:
    """Create a labeller's token for POST /v1/feedback, and the prediction-id key if there is none.

    \b
    The token is printed once, on stdout; only its sha256 is stored: emulated environments in
    .local/feedback/ENV.json (the token also in .local/feedback/ENV-NAME.token), cloud environments
    in the Secrets Manager secret the stack created (<cluster>-feedback-credentials), which the
    serving pods read when they start. Send it as `Authorization: Bearer <token>`. Labellers named
    in feedback.trusted_labellers are the ones whose feedback the retraining gate judges on."""
    from toolkit.feedback_tokens import create_token

    token, lines = create_token(ctx, name, rotate)
    if as_json:
        emit_json({"labeller": name, "token": token, "notes": lines})
        return
    for line in lines:
        echo_err(line)
    click.echo(token)


COMMANDS = [retrain, loop_drill, train_challenger, feedback_token]
