"""Integration: build once, promote by digest, between two environments of real parts.

Two repositories of the real local registry and two moto buckets stand in for staging and prod;
both run on the local Docker runtime. The digest deployed in the target must be the digest
smoke-tested in the source, byte for byte; a digest that was not promoted is refused there."""

from __future__ import annotations

import pytest

from conftest import free_port, remove_serving_containers
from toolkit.delivery.deploy import deploy_release
from toolkit.delivery.image_trust import require_trusted_image
from toolkit.delivery.promotion import digest_hex, promote, verified_release
from toolkit.delivery.publish import build_release_images, push_release
from toolkit.errors import BadInputError
from toolkit.images.distribution import RegistryClient
from toolkit.images.login import registry_login
from toolkit.images.release import ReleaseRecords
from toolkit.ml.signing import verify_signature
from toolkit.signing_keys import trusted_keys
from toolkit.store.artifacts import download_artifact
from toolkit.workloads.local_runtime import current_release
from toolkit.workloads.runtime import DockerRuntime

QUIET = lambda line: None  # noqa: E731


def _environment(local_ctx, name: str, promotion_from: str | None):
    config = local_ctx.config
    return local_ctx.with_config(config.model_copy(update={
        "name": name,
        "promotion_from": promotion_from,
        "registry": config.registry.model_copy(update={"name": f"{name}/serving"}),
        "artifact_store": config.artifact_store.model_copy(update={"bucket": f"{name}-artifacts"}),
        "serving": config.serving.model_copy(update={"port": free_port()}),
        "workloads": config.workloads.model_copy(update={"rollout_timeout_seconds": 60}),
    }))


@pytest.fixture(scope="module")
def stage_and_prod(engine, local_ctx):
    from toolkit.aws import client

    source, target = _environment(local_ctx, "promo-stage", None), _environment(local_ctx, "promo-prod", "promo-stage")
    for ctx in (source, target):
        client("s3", ctx.config).create_bucket(Bucket=ctx.config.artifact_store.bucket)
    yield source, target
    for ctx in (source, target):
        for kind in ("releases", "last-push", "last-build", "promotion"):
            ctx.paths.record(f"{kind}-{ctx.env}").unlink(missing_ok=True)
        remove_serving_containers(engine, ctx.env)


def test_the_target_runs_the_digest_smoke_tested_in_the_source_and_nothing_else(stage_and_prod, model_dir, tmp_path):
    source, target = stage_and_prod
    image, trainings = build_release_images(source, model_dir, on_line=QUIET)
    release, training_image = push_release(source, [image.reference, trainings[-1].reference], on_line=QUIET)

    # Not deployed and smoke-tested in the source yet: nothing to promote.
    with pytest.raises(BadInputError, match="no successful deploy and smoke test recorded in promo-stage"):
        promote(source, target, on_line=QUIET)

    deployed = deploy_release(source, DockerRuntime(source), release, 60, on_line=QUIET)
    assert deployed["smoke"] and deployed["verified"].endswith(f"releases/promo-stage/{digest_hex(release.image)}.json")
    assert verified_release(source)["image"] == release.image

    # The same bytes pushed straight to the target's registry are refused there: not promoted.
    direct, _ = push_release(target, [image.reference], on_line=QUIET)
    assert digest_hex(direct.image) == digest_hex(release.image)
    with pytest.raises(BadInputError, match="deploys only digests promoted from promo-stage"):
        deploy_release(target, DockerRuntime(target), direct, 60, on_line=QUIET)
    assert current_release(target) is None

    record = promote(source, target, on_line=QUIET)
    assert record["source_image"] == release.image and record["training_image"]
    # Byte for byte: the manifests (which name every blob by digest) are identical in both registries.
    login = registry_login(target.config)
    registry = RegistryClient(login)
    for source_ref, target_ref in ((release.image, record["image"]), (training_image, record["training_image"])):
        assert digest_hex(source_ref) == digest_hex(target_ref)
        _, _, source_raw = registry.manifest(source.config.registry.name, source_ref.partition("@")[2])
        _, _, target_raw = registry.manifest(target.config.registry.name, target_ref.partition("@")[2])
        assert source_raw == target_raw
    # The images' signatures and SBOM attestations came along and verify in the target.
    for image in (record["image"], record["training_image"]):
        trust = require_trusted_image(target, image)
        assert (trust.signed_by, trust.sbom_signed_by) == ("promo-prod", "promo-prod")  # emulated environments share one key
    # The model arrived with its checksums and signature intact.
    promoted_model = download_artifact(target.config, record["model_url"], tmp_path)
    assert verify_signature(promoted_model, trusted_keys(target))

    promoted = ReleaseRecords(target.paths, target.env).last_push()
    assert promoted.image == record["image"]
    result = deploy_release(target, DockerRuntime(target), promoted, 60, on_line=QUIET)
    assert result["smoke"]
    live = current_release(target)
    assert live.image == record["image"] and digest_hex(live.image) == digest_hex(release.image)

    # Promoting again is a no-op on the images, and a digest the source never verified is refused.
    assert promote(source, target, on_line=QUIET)["image"] == record["image"]
    with pytest.raises(BadInputError, match="no successful deploy and smoke test"):
        promote(source, target, image=f"{login.host}/{source.config.registry.name}@sha256:{'0' * 64}", on_line=QUIET)


def test_promotion_only_from_the_configured_source(stage_and_prod):
    source, target = stage_and_prod
    with pytest.raises(BadInputError, match="promotion_from is none .* does not take promotions from promo-prod"):
        promote(target, source, on_line=QUIET)
