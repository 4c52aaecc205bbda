"""`toolkit retrain` from start to end, for the CLI and for whatever else starts a retraining:
find the champion (the model the environment serves), train and judge a challenger, release it if
it passed (unless a dry run), and record the decision either way."""

from __future__ import annotations

from toolkit.context import Context
from toolkit.delivery.deploy import live_model_version
from toolkit.delivery.release import adopt, release_model
from toolkit.errors import BadInputError
from toolkit.lines import Lines, silent
from toolkit.loop.retrain import champion_artifact, record_decision, retrain
from toolkit.workloads.runtime import Runtime


def retrain_and_release(ctx: Context, runtime: Runtime, dry_run: bool, on_line: Lines = silent,
                        remote_timeout: float | None = None) -> dict:
    """The decision record, with `released` (the image deployed, or None) and `url` (where it is stored).
    `remote_timeout`: train the challenger as a Job on the cluster (remote.py), waiting this long."""
    source = ctx.config.promotion_from
    if source and not dry_run:  # its challenger could not be deployed here: refuse before training it
        raise BadInputError(f"{ctx.env} deploys only digests promoted from {source}: retrain in {source} "
                            f"(`toolkit retrain --env {source}`) and promote, or judge only with --dry-run.")
    champion = champion_artifact(ctx, live_model_version(runtime))
    on_line(f"champion: {champion.name if champion else 'none (nothing deployed)'}")
    challengers = ctx.paths.artifacts(ctx.env) / "challengers"
    trainer = None
    if remote_timeout is not None:
        from toolkit.loop.remote import remote_trainer

        trainer = remote_trainer(ctx, runtime, challengers, remote_timeout, on_line)
    decision = retrain(ctx, champion, challengers, on_line, trainer=trainer)
    on_line(f"decision: {'release' if decision.release else 'keep the champion'}: {decision.reason}")
    record = {**decision.record, "dry_run": dry_run, "released": None}
    if decision.release and not dry_run:
        model = adopt(ctx, challengers / decision.record["challenger"]["version"])
        record["released"] = release_model(ctx, runtime, model, on_line)["release"]
    record["url"] = record_decision(ctx, record)
    return record
