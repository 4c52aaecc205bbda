"""Deploying a release where the environment runs it, and the smoke test after: what `toolkit deploy`
and `toolkit retrain` do once the images are pushed."""

from __future__ import annotations

from typing import Callable

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.images.release import Release
from toolkit.workloads.target import Target


def deploy_release(ctx: Context, target: Target, release: Release, timeout: float, on_progress: Callable[[dict], None] = lambda e: None,
                   on_line: Callable[[str], None] = print, smoke: bool = True) -> dict:
    """Kubernetes: apply, wait for the rollout, roll back on failure. Local: the Docker runtime's swap.
    Then a real /v1/predict; a failed smoke test says how to roll back (the rollout itself succeeded).
    An environment with `promotion_from` takes only promoted digests; a release that passes its smoke
    test is recorded as verified, which is what `toolkit promote` copies onwards."""
    from toolkit.images.promotion import record_verified_release, require_promoted

    require_promoted(ctx, release)
    if target.local:
        from toolkit.images.login import registry_login
        from toolkit.workloads.local_runtime import deploy_local

        result = deploy_local(ctx, release, registry_login(ctx.config), timeout, on_line=on_line)
    else:
        from toolkit.workloads.rollout import deploy as deploy_k8s

        outcome = deploy_k8s(target.kube, ctx.config, target.outputs, release, timeout, on_progress,
                             public_keys=trusted_key_bundle(ctx))
        result = {"release": release.image, "model_version": release.model_version, "applied": outcome.applied,
                  "pruned": outcome.pruned, "seconds": round(outcome.seconds, 1)}
    if smoke:
        try:
            result["smoke"] = smoke_test(ctx, target)
        except ToolkitError as exc:  # the rollout's probes passed, so this is not rolled back by itself: say how
            raise ToolkitError(f"{exc}\nThe release is deployed; `toolkit rollback --env {ctx.env}` returns to the previous one.") from None
        try:
            result["verified"] = record_verified_release(ctx, release, result["smoke"])
        except ToolkitError as exc:  # deployed and smoke-tested all the same: only promoting it needs the record
            result["verified"] = None
            on_line(f"warning: the smoke test passed but could not be recorded in the artifact store ({exc}); "
                    f"`toolkit promote --from {ctx.env}` refuses this release until a deploy records it.")
    return result


def trusted_key_bundle(ctx: Context) -> str:
    """The public keys the environment's server verifies models against, as one PEM bundle."""
    from toolkit.ml.signing_keys import bundle, trusted_keys

    return bundle(trusted_keys(ctx))


def smoke_test(ctx: Context, target: Target) -> dict:
    from toolkit.workloads.local_runtime import service_url
    from toolkit.workloads.smoke import smoke_test_service, smoke_test_url

    return smoke_test_url(service_url(ctx.config), ctx) if target.local else smoke_test_service(target.kube, ctx)


def live_model_version(ctx: Context, target: Target) -> str | None:
    """The model version the environment serves now (None: nothing deployed)."""
    if target.local:
        from toolkit.workloads.local_runtime import current_release

        live = current_release(ctx)
    else:
        from toolkit.workloads.rollout import live_release

        live = live_release(target.kube, ctx.config)
    return live.model_version if live else None
