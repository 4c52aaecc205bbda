"""`toolkit sweep`: the settings of `training.sweep` cross-validated, here in processes, then the
best one trained on the full training rows and saved as an ordinary signed artifact."""

from __future__ import annotations

import os

import click

from toolkit.cli.options import JSON_OPTION, echo_err, emit_json, pass_context


@click.command()
@pass_context
@click.option("--parallel", type=click.IntRange(min=1), help="Processes at once (default: the CPU count).")
@click.option("--train/--no-train", "train_best", default=True, show_default=True,
              help="Train the best setting on the full training rows and save it as a signed artifact.")
@JSON_OPTION
def sweep(ctx, parallel: int | None, train_best: bool, as_json: bool) -> None:
    """Cross-validate every setting `training.sweep` lists and rank them.

    \b
    Each (setting, fold) is one work item; they run in `--parallel` processes with a progress bar
    (items done, the best setting so far, an ETA). Results are kept in .local/sweeps/ENV/<sweep id>/,
    the id naming the spec, the other training settings and the dataset's bytes: running the same
    sweep again skips what is done, so an interrupted sweep resumes. Prints the leaderboard
    (markdown; --json for scripts), plots the metric against each hyperparameter (sweep.png), then
    trains the best setting and saves it as artifacts/ENV/<version>/ whose manifest names the sweep.

    \b
    Examples:
      toolkit sweep --env local
      toolkit sweep --env local --parallel 2 --json
    """
    from toolkit.cli.progress import SweepProgress
    from toolkit.errors import ConfigError
    from toolkit.ml import sweep as sweeps
    from toolkit.ml.sweep_runner import DirectoryResults, run_local
    from toolkit.ml.table import sha256_file
    from toolkit.ml.train import DatasetChoice

    env, settings = ctx.env, ctx.config.training
    spec = settings.sweep
    if spec is None:
        raise ConfigError(f"environments/{env}.yaml has no training.sweep: add one (the README's Sweeps section has an example).")
    choice = DatasetChoice.from_config(settings, root=ctx.root)
    dataset = choice.load()
    metric = sweeps.metric_of(spec, dataset.regression)
    identity = sweeps.sweep_id(spec, settings, sha256_file(choice.path))
    items = sweeps.work_items(spec)
    store = DirectoryResults(ctx.paths.state_subdir("sweeps") / env / identity)
    parallel = parallel or os.cpu_count() or 1
    done = store.done()
    if not as_json:
        echo_err(f"{identity}: {spec.trial_count()} settings × {spec.folds} folds = {len(items)} fits "
                 f"({len(done)} done before), {parallel} at a time, ranked by {metric}")
    progress = SweepProgress(len(items), len([i for i in items if i.index in done]), metric, enabled=not as_json)
    collected: list[dict] = list(done.values())

    def on_result(result: dict) -> None:
        collected.append(result)
        board = sweeps.leaderboard(collected, metric, spec.folds)
        progress.update(board[0] if board else None)

    try:
        results = run_local(choice, settings, spec, items, store, parallel, on_result)
    finally:
        progress.close()
    board = sweeps.leaderboard([results[i.index] for i in items if i.index in results], metric, spec.folds)
    png = store.directory / "sweep.png"
    try:
        sweeps.plot(board, metric, png, f"{env}: {identity} ({len(board)} settings, {spec.folds}-fold {metric})")
    except ImportError:
        png = None
    summary = {"sweep": identity, "metric": metric, "folds": spec.folds, "settings": len(board), "results": str(store.directory),
               "png": str(png) if png else None, "leaderboard": board}
    if train_best and board:
        summary["trained"] = _train_best(ctx, choice, dataset, board[0], identity, metric, quiet=as_json)
    if as_json:
        emit_json(summary)
        return
    click.echo(sweeps.markdown(board, metric))
    click.echo(f"\nresults  {store.directory}")
    click.echo(f"plot     {png or '(matplotlib not installed: no plot)'}")
    if "trained" in summary:
        trained = summary["trained"]
        click.echo(f"best     trial {board[0]['trial']}: {sweeps.markdown_setting(board[0]['setting'])}")
        click.echo(f"model    {trained['version']}  test {trained['test']}  (artifact {trained['artifact']}, signed)")


def _train_best(ctx, choice, dataset, best: dict, identity: str, metric: str, quiet: bool) -> dict:
    """The best setting trained on the full training rows: an ordinary signed artifact whose manifest
    names the sweep and the setting."""
    from toolkit.ml.nn.device import summary as device_summary
    from toolkit.ml.signing import sign_artifact
    from toolkit.ml.train import train_and_save, training_device
    from toolkit.signing_keys import private_key

    settings = ctx.config.training.model_copy(update=best["setting"])
    key = private_key(ctx)
    device = training_device(settings.device, ctx.env)
    result = train_and_save(choice, settings, ctx.paths.artifacts(ctx.env), env=ctx.env, dataset=dataset, device=device,
                            on_start=None if quiet else (lambda: echo_err(device_summary(device))),
                            sweep={"id": identity, "trial": best["trial"], "setting": best["setting"], "metric": metric,
                                   "cv_mean": best[metric], "cv_std": best[f"{metric}_std"]})
    sign_artifact(result.artifact_dir, key)
    test = result.metrics["test"]
    shown = "  ".join(f"{k} {test[k]:.3f}" for k in (("r2", "rmse") if "r2" in test else ("accuracy", "roc_auc", "f1")))
    return {"version": result.version, "artifact": str(result.artifact_dir), "test": shown, "metrics": test}


COMMANDS = [sweep]
