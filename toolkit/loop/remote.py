"""`toolkit retrain --remote`: the challenger trained as a GPU Job on the environment's cluster.

The gate runs where `toolkit retrain` runs; only the training moves. So that both see the same
data, the labelled feedback is frozen into one snapshot first:

    s3://<bucket>/retrain/<env>/<stamp>/feedback.jsonl.gz    what the Job trains on (and the gate judges on)
    s3://<bucket>/datasets/<base dataset>                    the base dataset, as `train --remote` uploads it
    s3://<bucket>/retrain/<env>/<stamp>/<version>/           the challenger the Job uploads

The Job runs `toolkit train-challenger` (a hidden command) in the training image, which rebuilds
the same merged dataset and rows (same code, same seed) and trains; the challenger is downloaded,
its checksums verified, and judged here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.loop.feedback_data import snapshot_bytes
from toolkit.loop.retrain import TrainingData
from toolkit.store.layout import Area, StoreLayout
from toolkit.workloads.runtime import Runtime

SNAPSHOT = "feedback.jsonl.gz"


def remote_trainer(ctx: Context, runtime: Runtime, out_root: Path, timeout: float, on_line: Callable[[str], None]):
    """A `retrain(trainer=…)` that trains the challenger as a Job on the runtime's cluster."""
    from toolkit.delivery.deploy import trusted_training_release
    from toolkit.ml.nn.device import describe_line
    from toolkit.store.artifacts import download_artifact
    from toolkit.store.s3 import upload_bytes, upload_file
    from toolkit.workloads.jobs import job_name
    from toolkit.workloads.target import environment_yaml

    instead = "retrain without --remote"
    runtime.require_cluster(instead)
    config, store = ctx.config, StoreLayout.of(ctx.config, runtime.bucket)
    release = trusted_training_release(ctx, on_line)

    def train(data: TrainingData) -> Path:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        prefix = f"{store.area_url(Area.RETRAIN)}{stamp}/"
        dataset = store.dataset(data.choice.path.name)
        upload_bytes(config, snapshot_bytes(data.feedback), prefix + SNAPSHOT)
        upload_file(config, data.choice.path, dataset)
        on_line(f"feedback snapshot ({len(data.feedback)} rows) and base dataset uploaded; training Job starting")
        command = ["toolkit", "train-challenger", "--env", ctx.env, "--data", dataset, "--feedback", prefix + SNAPSHOT,
                   "--upload", prefix]
        result = runtime.run_job(release, environment_yaml(ctx), timeout, on_line, instead=instead,
                                 name=job_name(ctx.env, kind="retrain"), command=command)
        on_line(f"training Job {result['job']} completed in {result['seconds']} s on "
                f"{describe_line(result.get('result', {}).get('trained_on'))}")
        return download_artifact(config, challenger_url(ctx, prefix), out_root)

    return train


def challenger_url(ctx: Context, prefix: str) -> str:
    """The one artifact the Job uploaded under `prefix` (…/<version>/)."""
    from toolkit.store.s3 import list_folders

    versions = list_folders(ctx.config, prefix)
    if len(versions) != 1:
        raise ToolkitError(f"the training Job should have uploaded one challenger under {prefix}; found {len(versions)}.")
    return versions[0]
