"""`toolkit retrain`: the feedback loop's champion/challenger gate."""

from __future__ import annotations

import click

from toolkit.cli.options import ENV_OPTION, JSON_OPTION, cluster_options, echo_err, emit_json, load_context, quiet


@click.command()
@ENV_OPTION
@click.option("--dry-run", is_flag=True, help="Train and judge the challenger, write the decision, but release nothing.")
@cluster_options()
@JSON_OPTION
def retrain(env: str, dry_run: bool, kubeconfig, context, as_json: bool) -> None:
    """Retrain on the labelled feedback and release the challenger only if it is as good as the champion.

    \b
    1. gathers the base dataset and the labelled feedback from the artifact store (the prediction
       log joined with the ground truth sent to POST /v1/feedback);
    2. trains a challenger on the base training rows plus the older feedback;
    3. scores the challenger and the served model (the champion) on the same held-out rows: the
       base test split and the newest feedback (feedback.retrain.holdout_fraction);
    4. releases the challenger (build, push, deploy, smoke test) only if it clears
       feedback.retrain.quality_floor and is within feedback.retrain.tolerance of the champion on
       both; otherwise the champion keeps serving.
    Either way a decision record goes to s3://<bucket>/decisions/ENV/ (`toolkit status` shows the last).
    Exit 0 for both outcomes; 1 when something failed."""
    from toolkit.loop.release import adopt, release_model
    from toolkit.loop.retrain import champion_artifact, record_decision
    from toolkit.loop.retrain import retrain as run_retrain
    from toolkit.workloads.deploy import live_model_version
    from toolkit.workloads.target import resolve_target

    ctx = load_context(env)
    on_line = quiet if as_json else echo_err
    if ctx.emulated:
        from toolkit.local.services import ensure_emulated_services

        ensure_emulated_services(ctx, on_line=on_line)
    target = resolve_target(ctx, kubeconfig, context)
    champion = champion_artifact(ctx, live_model_version(ctx, target))
    on_line(f"champion: {champion.name if champion else 'none (nothing deployed)'}")
    decision = run_retrain(ctx, champion, ctx.paths.artifacts(env) / "challengers", on_line)
    record = {**decision.record, "dry_run": dry_run, "released": None}
    if decision.release and not dry_run:
        model = adopt(ctx, ctx.paths.artifacts(env) / "challengers" / decision.record["challenger"]["version"])
        deployed = release_model(ctx, target, model, on_line)
        record["released"] = deployed["release"]
    record["url"] = record_decision(ctx, record)
    if as_json:
        emit_json(record)
        return
    verdict = ("released" if record["released"] else "would release (dry run)") if decision.release else "kept the champion"
    click.echo(f"decision {verdict}: {decision.reason}")
    for side in ("champion", "challenger"):
        if record[side]:
            parts = [f"{part} acc {m['accuracy']:.3f} auc {m['roc_auc']:.3f} (n={m['n']})"
                     for part in ("test_split", "feedback_holdout") if (m := record[side].get(part))]
            click.echo(f"{side:<10} {record[side]['version']}  " + "  ".join(parts))
    click.echo(f"record   {record['url']}")


COMMANDS = [retrain]
