"""The two halves of a release that happen before a deploy, as `toolkit build` and `toolkit push`
(and `toolkit retrain`) do them: build both images of a model and record it; push them and record
the release (image by digest + model version) that `deploy` takes by default."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from toolkit.context import Context
from toolkit.images.build import BuiltImage, build_image, image_model_version
from toolkit.images.login import registry_login
from toolkit.images.registry import push_image
from toolkit.images.release import Release, ReleaseRecords
from toolkit.lines import silent

Progress = Callable[[str], None]


def jobs_training_target(config) -> str:
    """The image target the environment's training Jobs run: the CUDA one for a GPU pool
    (EnvironmentConfig.cuda_training_image), else the CPU one."""
    return "training-gpu" if config.cuda_training_image() else "training"


def build_release_images(ctx: Context, model_dir: Path, on_line: Progress = silent) -> tuple[BuiltImage, list[BuiltImage]]:
    """The serving image (the model baked in) and the training images: the CPU one, and the CUDA one
    where the environment's Jobs run on a GPU pool (config.cuda_training_image()). The last is what
    training Jobs run: recorded with the serving image as the last build."""
    image = build_image(ctx, model_dir, on_line=on_line)
    targets = ["training"] + ([jobs_training_target(ctx.config)] if ctx.config.cuda_training_image() else [])
    trainings = [build_image(ctx, model_dir, on_line=on_line, target=target) for target in targets]
    ReleaseRecords(ctx.paths, ctx.env).save_build(image.reference, image.image_id, trainings[-1].reference, str(model_dir.resolve()))
    return image, trainings


def push_release(ctx: Context, refs: list[str], on_line: Progress = silent, on_event=None,
                 on_pushed: Progress = lambda ref: None) -> tuple[Release, str | None]:
    """Push the serving image (refs[0]) and the training image (refs[1], if any), each signed with
    its SBOM attested (image_trust); record the release."""
    from toolkit.delivery.image_trust import image_signer, start_sboms

    host = registry_login(ctx.config).host
    sboms, sign = start_sboms(ctx, refs), image_signer(ctx)
    pushed = []
    for ref in refs:
        digest = push_image(ctx, ref, on_line=on_line, on_event=on_event(ref) if on_event else None)
        pushed.append(f"{host}/{ctx.config.registry.name}@{digest}")
        sign(pushed[-1], sboms[ref].result(), on_line)
        on_pushed(f"pushed {pushed[-1]}  ({ref}), signed, SBOM attached")
    release = Release(pushed[0], image_model_version(ctx.paths, refs[0]))
    training = pushed[1] if len(pushed) > 1 else None
    records = ReleaseRecords(ctx.paths, ctx.env)
    url = upload_model(ctx, records, refs[0], release.model_version)
    on_pushed(f"model {release.model_version} in {url}" if url else f"model {release.model_version}: no local artifact to upload")
    records.save_push(release, training)
    return release, training


def upload_model(ctx: Context, records: ReleaseRecords, image_ref: str, model_version: str) -> str | None:
    """The image's model artifact, with its signature, to the environment's store (where `promote`
    copies it from): the directory it was built from, else artifacts/ENV/<version>."""
    from toolkit.store.artifacts import upload_artifact
    from toolkit.store.layout import Area, StoreLayout

    built = records.built_model_dir(image_ref)
    for directory in [*([Path(built)] if built else []), ctx.paths.artifacts(ctx.env) / model_version]:
        if (directory / "manifest.json").is_file():
            return upload_artifact(ctx.config, directory, StoreLayout.of(ctx.config).area_url(Area.MODELS))
    return None
