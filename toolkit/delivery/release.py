"""Releasing a model from Python, as `make release` does (the feedback loop's release): build, push,
deploy with a smoke test."""

from __future__ import annotations

import shutil
from pathlib import Path

from toolkit.context import Context
from toolkit.delivery.deploy import deploy_release
from toolkit.delivery.publish import build_release_images, push_release
from toolkit.lines import Lines, silent
from toolkit.ml.artifacts import point_latest
from toolkit.workloads.runtime import Runtime


def adopt(ctx: Context, artifact: Path) -> Path:
    """Make a challenger the environment's model: artifacts/<env>/<version>/, `latest` pointing at it."""
    root = ctx.paths.artifacts(ctx.env)
    target = root / artifact.name
    if not target.exists():
        shutil.copytree(artifact, target)
    point_latest(root, artifact.name)
    return target


def release_model(ctx: Context, runtime: Runtime, model_dir: Path, on_line: Lines = silent) -> dict:
    image, trainings = build_release_images(ctx, model_dir, on_line)
    release, _ = push_release(ctx, [image.reference, trainings[-1].reference], on_line=on_line, on_pushed=on_line)
    return deploy_release(ctx, runtime, release, ctx.config.workloads.rollout_timeout_seconds, on_line=on_line)
