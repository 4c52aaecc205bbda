"""`toolkit sweep`: the settings of `training.sweep` cross-validated, here in processes, then the
best one trained on the full training rows and saved as an ordinary signed artifact."""

from __future__ import annotations

import json
import os

import click

from toolkit.cli.options import JSON_OPTION, cluster_options, echo_err, emit_json, pass_context, timeout_option
from toolkit.lines import silent


@click.command()
@pass_context
@click.option("--parallel", type=click.IntRange(min=1), help="Processes at once (default: the CPU count).")
@click.option("--train/--no-train", "train_best", default=True, show_default=True,
              help="Train the best setting on the full training rows (here) and save it as a signed artifact.")
@click.option("--remote", is_flag=True, help="Run the work items on ENV's cluster as one Indexed Job (training.sweep.parallelism "
                                            "pods at once) in the pushed training image; results in the artifact store.")
@cluster_options("With --remote: ")
@timeout_option("With --remote: how long to wait for the Job (default: workloads.remote_training.active_deadline_seconds).")
@JSON_OPTION
def sweep(ctx, parallel: int | None, train_best: bool, remote: bool, kubeconfig, context, timeout, as_json: bool) -> None:
    """Cross-validate every setting `training.sweep` lists and rank them.

    \b
    Each (setting, fold) is one work item; they run in `--parallel` processes with a progress bar
    (items done, the best setting so far, an ETA). Results are kept in .local/sweeps/ENV/<sweep id>/,
    the id naming the spec, the other training settings and the dataset's bytes: running the same
    sweep again skips what is done, so an interrupted sweep resumes. Prints the leaderboard
    (markdown; --json for scripts), plots the metric against each hyperparameter (sweep.png), then
    trains the best setting and saves it as artifacts/ENV/<version>/ whose manifest names the sweep.

    \b
    With --remote the items run on the cluster instead: one Indexed Job whose pod k trains item k
    (JOB_COMPLETION_INDEX) and writes sweeps/ENV/<sweep id>/k.json to the artifact store; a failing
    item is retried on its own (backoffLimitPerIndex) and, within maxFailedIndexes, leaves the others
    to finish: the settings with every fold done are ranked, the rest named.

    \b
    Examples:
      toolkit sweep --env local
      toolkit sweep --env local --parallel 2 --json
      toolkit sweep --env dev --remote
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
    failed: list[int] = []
    if remote:
        results, failed, where = _run_remote(ctx, choice, identity, len(items), kubeconfig, context, timeout, as_json)
    else:
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
        where = str(store.directory)
    board = sweeps.leaderboard([results[i.index] for i in items if i.index in results], metric, spec.folds)
    unranked = sorted({items[i].trial for i in range(len(items)) if i not in results})
    if unranked and not as_json:
        echo_err(f"warning: {len(unranked)} setting(s) without every fold done, not ranked: {unranked} (failed items {failed}); "
                 "running the sweep again retries only those.")
    png = store.directory / "sweep.png" if board else None
    try:
        if png:
            sweeps.plot(board, metric, png, f"{env}: {identity} ({len(board)} settings, {spec.folds}-fold {metric})")
    except ImportError:
        png = None
    summary = {"sweep": identity, "metric": metric, "folds": spec.folds, "settings": len(board), "results": where,
               "png": str(png) if png else None, "leaderboard": board, "unranked": unranked, "failed_items": failed}
    # what `toolkit retrain --sweep ID` reads its best setting from
    (store.directory / sweeps.LEADERBOARD).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if train_best and board:
        summary["trained"] = _train_best(ctx, choice, dataset, board[0], identity, metric, quiet=as_json)
    if as_json:
        emit_json(summary)
        return
    click.echo(sweeps.markdown(board, metric))
    click.echo(f"\nresults  {where}")
    click.echo(f"plot     {png or '(matplotlib not installed: no plot)'}")
    if "trained" in summary:
        trained = summary["trained"]
        click.echo(f"best     trial {board[0]['trial']}: {sweeps.markdown_setting(board[0]['setting'])}")
        click.echo(f"model    {trained['version']}  test {trained['test']}  (artifact {trained['artifact']}, signed)")


def _run_remote(ctx, choice, identity: str, total: int, kubeconfig, context, timeout, as_json: bool):
    """The items as one Indexed Job on the cluster; (results from the store, failed indexes, where)."""
    from toolkit.cli.progress import SweepProgress
    from toolkit.delivery.deploy import trusted_training_release
    from toolkit.delivery.runtime import open_runtime
    from toolkit.store.layout import Area, StoreLayout
    from toolkit.store.s3 import upload_file
    from toolkit.store.sweep_results import StoreResults
    from toolkit.workloads.jobs import indexes, run_sweep_job
    from toolkit.workloads.target import environment_yaml

    config = ctx.config
    runtime = open_runtime(ctx, kubeconfig, context)
    kube = runtime.require_cluster(f"run it here: `toolkit sweep --env {ctx.env}`")
    release = trusted_training_release(ctx, silent if as_json else echo_err)
    layout = StoreLayout.of(config, runtime.bucket)
    store = StoreResults(config, f"{layout.area_url(Area.SWEEPS)}{identity}/")
    done = store.done()
    if upload_file(config, choice.path, layout.dataset(choice.path.name)) and not as_json:
        echo_err(f"uploaded {choice.path.name} to {layout.dataset(choice.path.name)}")
    failed: list[int] = []
    if len(done) < total:
        spec = config.training.sweep
        if not as_json:
            echo_err(f"{identity}: {total} items ({len(done)} done before) as an Indexed Job, {spec.parallelism} pods at a time")
        progress = SweepProgress(total, 0, "", enabled=not as_json)

        def on_status(status: dict) -> None:
            progress.show(len(indexes(status.get("completedIndexes"))) + len(indexes(status.get("failedIndexes"))),
                          active=status.get("active", 0), failed=status.get("failedIndexes") or "none")

        try:
            outcome = run_sweep_job(kube, config, runtime.outputs, release, environment_yaml(ctx), identity,
                                    timeout or config.workloads.remote_training.active_deadline_seconds, on_status)
        finally:
            progress.close()
        failed = outcome["failed"]
        if not as_json:
            echo_err(f"sweep Job {outcome['job']}: {len(outcome['completed'])} items completed, failed {failed or 'none'}, "
                     f"in {outcome['seconds']} s")
        done = store.done()
    return done, failed, store.url


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


@click.command("sweep-item", hidden=True)
@pass_context
@click.option("--sweep", "expected", required=True, metavar="ID", help="The sweep the Job was started for.")
@click.option("--data", required=True, metavar="S3_URL", help="The dataset (CSV) in the artifact store.")
@click.option("--results", required=True, metavar="S3_URL", help="sweeps/<env>/ in the artifact store.")
@click.option("--index", type=click.IntRange(min=0), help="The work item (default: $JOB_COMPLETION_INDEX, set by an Indexed Job).")
def sweep_item(ctx, expected: str, data: str, results: str, index: int | None) -> None:
    """Inside a sweep's Indexed Job: train and score work item JOB_COMPLETION_INDEX, store its result."""
    from toolkit.errors import BadInputError
    from toolkit.ml import sweep as sweeps
    from toolkit.ml.table import sha256_file
    from toolkit.ml.train import DatasetChoice
    from toolkit.store.s3 import download_file
    from toolkit.store.sweep_results import StoreResults
    from toolkit.workloads.job_result import write_job_result

    if index is None:
        if not os.environ.get("JOB_COMPLETION_INDEX", "").isdigit():
            raise BadInputError("no work item: pass --index, or run in an Indexed Job (it sets JOB_COMPLETION_INDEX).")
        index = int(os.environ["JOB_COMPLETION_INDEX"])
    settings, env = ctx.config.training, ctx.env
    spec = settings.sweep
    if spec is None:
        raise BadInputError(f"environments/{env}.yaml has no training.sweep (the Job was started for {expected}).")
    path = download_file(ctx.config, data)
    identity = sweeps.sweep_id(spec, settings, sha256_file(path))
    if identity != expected:
        raise BadInputError(f"the environment file or the dataset changed since {expected} started (they now make {identity}); "
                            f"start the sweep again with `toolkit sweep --env {env} --remote`.")
    items = sweeps.work_items(spec)
    if index >= len(items):
        raise BadInputError(f"work item {index} is past the sweep's last ({len(items) - 1}).")
    store = StoreResults(ctx.config, f"{results.rstrip('/')}/{identity}/")
    item = items[index]
    if store.has(index):
        echo_err(f"item {index} (setting {item.trial}, fold {item.fold}): done before, skipped")
        return
    choice = DatasetChoice.from_config(settings, root=ctx.root, path=path)
    result = sweeps.run_item(choice.load(), settings, spec, item)
    store.put(index, result)
    scores = "  ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items())
    click.echo(f"item {index} (setting {item.trial}: {sweeps.markdown_setting(item.setting)}; fold {item.fold}): {scores} "
               f"in {result['seconds']} s")
    write_job_result({"index": index, "metrics": result["metrics"]})


COMMANDS = [sweep, sweep_item]
