"""Signing, verifying and copying an image's signature and SBOM attestation in a registry (the
formats are in cosign.py).

Each image `toolkit push` publishes gets, next to it in its repository:
  sha256-<hex>.sig  its signature by the environment's key (the model-signing key: see README);
  sha256-<hex>.att  its CycloneDX SBOM as an in-toto attestation signed by the same key.
Pushing the same digest again keeps what is there when it verifies with the environment's key (no
pile-up of signatures); anything else under those tags is replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from toolkit.errors import BadInputError
from toolkit.images import cosign
from toolkit.images.copy import copy_image
from toolkit.images.distribution import RegistryClient
from toolkit.lines import silent

Progress = Callable[[str], None]


class ImageNotTrusted(BadInputError):
    """An image without a signature (or SBOM attestation) by a key the environment trusts."""


@dataclass(frozen=True)
class ImageTrust:
    signed_by: str  # whose key signed the image
    sbom_signed_by: str | None = None


def _layers(client: RegistryClient, repository: str, tag: str, media_type: str) -> list[tuple[dict, bytes]]:
    """(descriptor, bytes) of each layer of `media_type` under `tag`; [] when the tag is not there."""
    if not client.has_manifest(repository, tag):
        return []
    _, _, raw = client.manifest(repository, tag)
    layers = [layer for layer in json.loads(raw).get("layers", []) if layer.get("mediaType") == media_type]
    return [(layer, client.blob(repository, layer["digest"])) for layer in layers]


def _put(client: RegistryClient, repository: str, tag: str, layer: cosign.Blob) -> None:
    config, raw = cosign.manifest([layer])
    for blob in (config, layer):  # new bytes nearly always (a fresh signature): uploaded without asking first
        client.upload_small_blob(repository, blob.digest, blob.data)
    client.put_manifest(repository, tag, cosign.OCI_MANIFEST, raw)


def _first_verified(layers: list[tuple[dict, bytes]], check) -> tuple[object, list[str]]:
    """(what `check(descriptor, data)` returns for the first layer that verifies, else None; the
    reasons the layers before it did not)."""
    reasons = []
    for descriptor, data in layers:
        try:
            return check(descriptor, data), reasons
        except cosign.NotVerified as exc:
            reasons.append(str(exc))
    return None, reasons


def verify_image(client: RegistryClient, repository: str, digest: str, keys: list) -> str:
    """Whose key (of `keys`) signed `repository@digest`; ImageNotTrusted with the reason (about "it")
    otherwise."""
    layers = _layers(client, repository, cosign.signature_tag(digest), cosign.SIMPLE_SIGNING)
    if not layers:
        raise ImageNotTrusted(f"it has no signature ({cosign.signature_tag(digest)} is not in {repository})")
    signer, reasons = _first_verified(layers, lambda descriptor, payload: cosign.check_signature(
        payload, descriptor.get("annotations", {}).get(cosign.SIGNATURE_ANNOTATION, ""), digest, keys))
    if signer is None:
        raise ImageNotTrusted(f"it is not signed by a key it may run with ({'; '.join(reasons)}; "
                              f"trusted: {', '.join(key.name for key in keys)})")
    return signer


def signed_sbom(client: RegistryClient, repository: str, digest: str, keys: list) -> tuple[str, dict]:
    """(signer, CycloneDX document) of the image's SBOM attestation; ImageNotTrusted otherwise."""
    layers = _layers(client, repository, cosign.attestation_tag(digest), cosign.DSSE_ENVELOPE)
    if not layers:
        raise ImageNotTrusted(f"it has no SBOM attestation ({cosign.attestation_tag(digest)} is not in {repository})")
    opened, reasons = _first_verified(layers, lambda _, envelope: cosign.open_attestation(
        envelope, digest, cosign.CYCLONEDX_PREDICATE, keys))
    if opened is None:
        raise ImageNotTrusted(f"its SBOM attestation does not verify ({'; '.join(reasons)})")
    return opened


def sign_image(client: RegistryClient, repository: str, digest: str, private_key: bytes, own_key, sbom: dict,
               on_line: Progress = silent) -> None:
    """Sign `repository@digest` and attach its SBOM attestation, unless verifying ones are there
    (the two side by side: each is a few registry round trips)."""
    from concurrent.futures import ThreadPoolExecutor

    def signature() -> str:
        try:
            verify_image(client, repository, digest, [own_key])
            return f"{cosign.signature_tag(digest)}: already signed by {own_key.name}"
        except ImageNotTrusted:
            _put(client, repository, cosign.signature_tag(digest), cosign.signature_layer(private_key, repository, digest))
            return f"signed {repository}@{digest[:19]} ({cosign.signature_tag(digest)})"

    def attestation() -> str:
        try:
            signed_sbom(client, repository, digest, [own_key])
            return f"{cosign.attestation_tag(digest)}: SBOM already attested"
        except ImageNotTrusted:
            layer = cosign.attestation_layer(private_key, repository, digest, cosign.CYCLONEDX_PREDICATE, sbom)
            _put(client, repository, cosign.attestation_tag(digest), layer)
            return (f"attached the SBOM ({len(sbom.get('components', []))} components, {len(layer.data) / 1e3:.0f} kB) as "
                    f"{cosign.attestation_tag(digest)}")

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sign") as pool:
        lines = [pool.submit(signature), pool.submit(attestation)]
        for line in lines:
            on_line(line.result())


def copy_signatures(source: RegistryClient, source_repository: str, target: RegistryClient, target_repository: str,
                    digest: str, on_line: Progress = silent) -> None:
    """The image's signature and SBOM attestation from source to target, by their own digests."""
    for tag in (cosign.signature_tag(digest), cosign.attestation_tag(digest)):
        if not source.has_manifest(source_repository, tag):
            raise ImageNotTrusted(f"{source_repository}@{digest} has no {tag} to copy: push it again with `toolkit push`")
        tag_digest, media_type, raw = source.manifest(source_repository, tag)
        if target.has_manifest(target_repository, tag) and target.manifest(target_repository, tag)[0] == tag_digest:
            continue  # copied before: nothing to write (and an immutable tag is left alone)
        copy_image(source, source_repository, tag_digest, target, target_repository, None, on_line)
        target.put_manifest(target_repository, tag, media_type, raw)  # (re)points the tag: a stale one is replaced
