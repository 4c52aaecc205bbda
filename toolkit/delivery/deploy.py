"""Deploying a release where the environment runs it, and the smoke test after: what `toolkit deploy`
and `toolkit retrain` do once the images are pushed."""

from __future__ import annotations

from typing import Callable

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.images.release import Release
from toolkit.lines import Lines, silent
from toolkit.workloads.runtime import Runtime


def deploy_release(ctx: Context, runtime: Runtime, release: Release, timeout: float, on_progress: Callable[[dict], None] = lambda e: None,
                   on_line: Lines = silent, smoke: bool = True) -> dict:
    """The runtime's deploy (Kubernetes: apply, wait for the rollout, roll back on failure; local: the
    Docker runtime's swap), then a real /v1/predict; a failed smoke test says how to roll back (the
    rollout itself succeeded). The image must be signed, with its SBOM attested, by a key the
    environment trusts (image_trust), checked before anything changes. An environment with
    `promotion_from` takes only promoted digests; a release that passes its smoke test is recorded
    as verified, which is what `toolkit promote` copies onwards."""
    from toolkit.delivery.promotion import record_verified_release

    require_deployable(ctx, release, on_line)  # before anything is applied: an unsigned image changes nothing
    result = runtime.deploy(release, timeout, on_progress, on_line)
    if smoke:
        try:
            result["smoke"] = runtime.smoke_test()
        except ToolkitError as exc:  # the rollout's probes passed, so this is not rolled back by itself: say how
            raise ToolkitError(f"{exc}\nThe release is deployed; `toolkit rollback --env {ctx.env}` returns to the previous one.") from None
        try:
            result["verified"] = record_verified_release(ctx, release, result["smoke"])
        except ToolkitError as exc:  # deployed and smoke-tested all the same: only promoting it needs the record
            result["verified"] = None
            on_line(f"warning: the smoke test passed but could not be recorded in the artifact store ({exc}); "
                    f"`toolkit promote --from {ctx.env}` refuses this release until a deploy records it.")
    return result


def require_deployable(ctx: Context, release: Release, on_line: Lines = silent) -> None:
    """What every release must pass before ctx runs it: promoted, where ctx has `promotion_from`;
    its image signed and its SBOM attested by a key ctx trusts (image_trust)."""
    from toolkit.delivery.promotion import require_promoted

    require_promoted(ctx, release)
    _require_signed(ctx, release.image, "image", on_line)


def rollback_release(ctx: Context, runtime: Runtime, timeout: float, on_progress: Callable[[dict], None] = lambda e: None,
                     on_line: Lines = silent) -> dict:
    """The runtime's rollback to the release before the live one, which must pass require_deployable
    first: the release history is a record the deployer can write, not proof of what was verified."""
    return runtime.rollback(timeout, on_progress, on_line, verify=lambda release: require_deployable(ctx, release, on_line))


def trusted_training_release(ctx: Context, on_line: Lines = silent) -> Release:
    """The training image of ctx's last push or promotion, which training Jobs run, once its
    signature and SBOM attestation verify with a key ctx trusts (image_trust)."""
    from toolkit.images.release import ReleaseRecords

    release = ReleaseRecords(ctx.paths, ctx.env).training_release()
    _require_signed(ctx, release.image, "training image", on_line)
    return release


def _require_signed(ctx: Context, image: str, what: str, on_line: Lines) -> None:
    from toolkit.delivery.image_trust import require_trusted_image

    trust = require_trusted_image(ctx, image)
    on_line(f"{what} signed by {trust.signed_by}, SBOM attested by {trust.sbom_signed_by}")


def live_model_version(runtime: Runtime) -> str | None:
    """The model version the environment serves now (None: nothing deployed)."""
    live = runtime.live_release()
    return live.model_version if live else None
