"""`toolkit train --remote`: the environment's dataset uploaded to its store, then the GPU training
Job on its cluster, logs streamed; the Job uploads the artifact it trains."""

from __future__ import annotations

from toolkit.context import Context
from toolkit.lines import Lines, silent
from toolkit.workloads.runtime import Runtime


def train_remote(ctx: Context, runtime: Runtime, timeout: float | None, on_line: Lines = silent) -> dict:
    """The Job's result (job, seconds) and `artifacts`, the store prefix its artifact lands under."""
    from toolkit.delivery.deploy import trusted_training_release
    from toolkit.store.layout import Area, StoreLayout
    from toolkit.store.s3 import upload_file
    from toolkit.workloads.target import environment_yaml

    env, config = ctx.env, ctx.config
    instead = f"train locally with `toolkit train --env {env}`"
    runtime.require_cluster(instead)
    release = trusted_training_release(ctx, on_line)
    layout = StoreLayout.of(config, runtime.bucket)
    dataset = ctx.root / config.training.dataset
    url = layout.dataset(dataset.name)
    if upload_file(config, dataset, url):
        on_line(f"uploaded {dataset.name} to {url}")
    result = runtime.run_job(release, environment_yaml(ctx), timeout or config.workloads.remote_training.active_deadline_seconds,
                             on_line, instead=instead)
    result["artifacts"] = layout.area_url(Area.MODELS)
    return result
