"""Build once, promote by digest: what reaches an environment is the bytes tested before it.

Three records in the artifact stores make the chain, each a JSON object with its sha256:
- `releases/<env>/<digest>.json` (and `latest.json`): this digest was deployed in <env> and its
  smoke test passed (`record_verified_release`, called by deploy after the smoke test);
- `promotions/<env>/<digest>.json`: this digest was copied here from the environment named by
  `promotion_from`, with its model (`promote`);
- an environment with `promotion_from` deploys only digests that have the second (`require_promoted`).

Images are copied registry to registry by digest (toolkit/images/copy.py); the model artifact is
downloaded from the source store, its checksums and signature verified against the source's
trusted keys, and uploaded to the target store.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Callable

from toolkit.context import Context
from toolkit.errors import BadInputError, ToolkitError
from toolkit.images.release import Release, ReleaseRecords
from toolkit.lines import silent
from toolkit.paths import write_json
from toolkit.store.layout import Area, StoreLayout

Progress = Callable[[str], None]
LATEST = "latest"


def digest_hex(image: str) -> str:
    return image.rpartition("@sha256:")[2]


def _record_url(ctx: Context, area: Area, name: str) -> str:
    return StoreLayout.of(ctx.config).record(area, name)


def model_url(ctx: Context, model_version: str) -> str:
    return StoreLayout.of(ctx.config).model(model_version)


def model_sweep(ctx: Context, model_version: str) -> dict | None:
    """The sweep that chose the model's settings (its manifest's training.sweep: id, trial, setting,
    metric), from this checkout's artifacts or the store; None when there was none or it is unknown."""
    import json

    from botocore.exceptions import BotoCoreError

    from toolkit.errors import ToolkitError
    from toolkit.store.s3 import get_json

    local = ctx.paths.artifacts(ctx.env) / model_version / "manifest.json"
    try:
        manifest = json.loads(local.read_text()) if local.exists() else get_json(ctx.config, model_url(ctx, model_version) + "manifest.json")
    except (ToolkitError, ValueError, OSError, BotoCoreError):  # unreadable or unreachable: unknown, never a failed status
        return None
    return ((manifest or {}).get("training") or {}).get("sweep")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def record_verified_release(ctx: Context, release: Release, smoke: dict) -> str:
    """Record that `release` is deployed in ctx.env and passed its smoke test; returns the record's URL."""
    from toolkit.store.s3 import put_json

    record = {"env": ctx.env, "image": release.image, "training_image": ReleaseRecords(ctx.paths, ctx.env).training_pushed_with(release),
              "model_version": release.model_version, "model_url": model_url(ctx, release.model_version),
              "sweep": model_sweep(ctx, release.model_version), "smoke": smoke, "time": _now()}
    url = put_json(ctx.config, _record_url(ctx, Area.RELEASES, digest_hex(release.image)), record)
    put_json(ctx.config, _record_url(ctx, Area.RELEASES, LATEST), record)
    return url


def verified_release(ctx: Context, image: str | None = None) -> dict:
    """The verified-release record of `image` in ctx.env (default: the latest); refused when there is none."""
    from toolkit.store.s3 import get_json

    url = _record_url(ctx, Area.RELEASES, digest_hex(Release(image, "").image) if image else LATEST)
    record = get_json(ctx.config, url)
    if record is None:
        what = image or "any release"
        raise BadInputError(f"{what} has no successful deploy and smoke test recorded in {ctx.env} (no {url}): deploy it "
                            f"there first (`toolkit deploy --env {ctx.env}`), then promote.")
    return record


def require_promoted(ctx: Context, release: Release) -> dict | None:
    """In an environment with `promotion_from`, the promotion record of `release`; else None. Refused when missing."""
    from toolkit.store.s3 import get_json

    source = ctx.config.promotion_from
    if source is None:
        return None
    url = _record_url(ctx, Area.PROMOTIONS, digest_hex(release.image))
    record = get_json(ctx.config, url)
    if record is None or record.get("image") != release.image:
        raise BadInputError(f"{ctx.env} deploys only digests promoted from {source} (promotion_from in "
                            f"environments/{ctx.env}.yaml), and {release.image} was not (no {url}). Deploy and "
                            f"smoke-test it in {source}, then run `toolkit promote --from {source} --to {ctx.env}`.")
    return record


def promote(source: Context, target: Context, image: str | None = None, on_line: Progress = silent) -> dict:
    """Copy the verified release of `source` (its latest, or `image`) to `target`: images by digest,
    the model with its checksums and signature verified; record the promotion and the push."""
    from toolkit.delivery.image_trust import require_trusted_image
    from toolkit.delivery.publish import jobs_training_target
    from toolkit.images.copy import copy_image
    from toolkit.images.distribution import RegistryClient
    from toolkit.images.image_signing import copy_signatures
    from toolkit.images.login import registry_login
    from toolkit.store.s3 import put_json

    if target.config.promotion_from != source.env:
        allowed = target.config.promotion_from or "none (the key is unset)"
        raise BadInputError(f"environments/{target.env}.yaml: promotion_from is {allowed}, so {target.env} does "
                            f"not take promotions from {source.env}.")
    verified = verified_release(source, image)
    model = copy_model(source, target, verified, on_line)

    source_login, target_login = registry_login(source.config), registry_login(target.config)
    source_registry, target_registry = RegistryClient(source_login), RegistryClient(target_login)
    hex12 = digest_hex(verified["image"])[:12]
    copied = {}
    for kind, tag in (("image", f"{verified['model_version']}-{hex12}"), ("training_image", f"{jobs_training_target(target.config)}-{hex12}")):
        if not verified.get(kind):
            continue
        repository, _, digest = verified[kind].partition("@")
        source_repository = repository.split("/", 1)[1]
        on_line(f"copying {verified[kind]} to {target_login.host}/{target.config.registry.name}:{tag}")
        copy_image(source_registry, source_repository, digest, target_registry, target.config.registry.name, tag, on_line)
        copy_signatures(source_registry, source_repository, target_registry, target.config.registry.name, digest, on_line)
        copied[kind] = f"{target_login.host}/{target.config.registry.name}@{digest}"
        trust = require_trusted_image(target, copied[kind])  # the signature and SBOM arrived, and target trusts the signer
        on_line(f"{kind.replace('_', ' ')}: signature by {trust.signed_by} and SBOM verified in {target.env}")

    release = Release(copied["image"], verified["model_version"])
    record = {"from": source.env, "to": target.env, "source_image": verified["image"], "image": release.image,
              "training_image": copied.get("training_image"), "model_version": release.model_version,
              "model_url": model, "source_record": _record_url(source, Area.RELEASES, digest_hex(verified["image"])),
              "smoke_in_source": verified.get("smoke"), "time": _now()}
    record["record"] = put_json(target.config, _record_url(target, Area.PROMOTIONS, digest_hex(release.image)), record)
    ReleaseRecords(target.paths, target.env).save_push(release, copied.get("training_image"))
    write_json(target.paths.record(f"promotion-{target.env}"), record)
    return record


def copy_model(source: Context, target: Context, verified: dict, on_line: Progress) -> str:
    """Download the release's model from the source store, verify checksums and signature, upload it to the target's."""
    from toolkit.ml.signing import load_signed_artifact
    from toolkit.signing_keys import trusted_keys
    from toolkit.store.artifacts import download_artifact, upload_artifact

    with tempfile.TemporaryDirectory(prefix="toolkit-promote-") as tmp:
        try:
            directory = download_artifact(source.config, verified["model_url"], Path(tmp))
        except ToolkitError as exc:
            raise ToolkitError(f"cannot fetch the model of {verified['image']} from {verified['model_url']}: {exc}") from None
        model = load_signed_artifact(directory, trusted_keys(source))
        on_line(f"model {verified['model_version']}: checksums verified, signed by {model.signed_by}")
        return upload_artifact(target.config, directory, StoreLayout.of(target.config).area_url(Area.MODELS))
