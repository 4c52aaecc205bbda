"""Images that exist only as signed manifests in a registry: what a cluster test deploys when the
cluster never pulls (the Kubernetes emulator), now that `toolkit deploy` verifies every image's
signature and SBOM attestation in the environment's registry first."""

from __future__ import annotations

import json

from toolkit.images import cosign
from toolkit.images.distribution import RegistryClient
from toolkit.images.image_signing import sign_image
from toolkit.images.login import registry_login
from toolkit.images.release import Release
from toolkit.ml.signing import PublicKey
from toolkit.paths import ProjectPaths
from toolkit.signing_keys import local_key_files


def push_signed_manifests(config, private_key: bytes, public_key: bytes, model_versions: list[str]) -> list[Release]:
    """One image per model version in `config`'s registry: a config blob naming it and no layers,
    signed and attested (an empty SBOM) with the key pair, as `toolkit push` would."""
    login = registry_login(config)
    client, repository = RegistryClient(login), config.registry.name
    releases = []
    for version in model_versions:
        blob = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"io.toolkit.model.version": version}},
                           "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        digest = cosign.sha256_digest(blob)
        client.upload_small_blob(repository, digest, blob)
        raw = json.dumps({"schemaVersion": 2, "mediaType": cosign.OCI_MANIFEST, "layers": [],
                          "config": {"mediaType": cosign.OCI_CONFIG, "digest": digest, "size": len(blob)}}).encode()
        image_digest = cosign.sha256_digest(raw)
        client.put_manifest(repository, image_digest, cosign.OCI_MANIFEST, raw)
        sign_image(client, repository, image_digest, private_key, PublicKey(config.name, public_key), {"components": []})
        releases.append(Release(f"{login.host}/{repository}@{image_digest}", version))
    return releases


def signed_training_release(config, paths: ProjectPaths) -> Release:
    """A training image in `config`'s registry signed by the key of the checkout at `paths`
    (emulated environments: local_key_files): what a training Job may run."""
    private, public = local_key_files(paths)
    [release] = push_signed_manifests(config, private.read_bytes(), public.read_bytes(), ["training"])
    return Release(release.image, "training")
