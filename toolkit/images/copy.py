"""Copy an image between registries by digest, through the registry API.

The manifest's bytes and the blobs move as they are (never pulled, re-tagged and pushed through a
Docker engine, which may rewrite the manifest), so the image has the same digest in both. For an
index, each platform image is copied first. Blobs the target already holds are skipped.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from toolkit.errors import ToolkitError
from toolkit.images.distribution import INDEX_TYPES, RegistryClient
from toolkit.lines import silent

Progress = Callable[[str], None]


def digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def copy_image(source: RegistryClient, source_repository: str, digest: str, target: RegistryClient, target_repository: str,
               tag: str | None, on_line: Progress = silent) -> str:
    """Copy `source_repository@digest` to `target_repository` (tagged `tag`, if given); returns the
    digest in the target, which is checked to be `digest`."""
    _, media_type, raw = source.manifest(source_repository, digest)
    if digest_of(raw) != digest:
        raise ToolkitError(f"the source registry returned a manifest for {source_repository}@{digest} whose bytes hash to "
                           f"{digest_of(raw)}: refusing to copy it.")
    if tag and target.has_manifest(target_repository, tag):
        existing, _, _ = target.manifest(target_repository, tag)
        if existing != digest:
            raise ToolkitError(f"{target_repository}:{tag} already exists with another digest ({existing}); tags are immutable.")
        on_line(f"{target_repository}:{tag} already holds {digest}")
        return existing
    manifest = json.loads(raw)
    if media_type in INDEX_TYPES or "manifests" in manifest:
        for child in manifest["manifests"]:
            copy_image(source, source_repository, child["digest"], target, target_repository, None, on_line)
    else:
        for blob in [manifest["config"], *manifest.get("layers", [])]:
            if target.has_blob(target_repository, blob["digest"]):
                continue
            on_line(f"copying blob {blob['digest'][:19]} ({blob.get('size', 0) / 1e6:.1f} MB)")
            target.upload_blob(target_repository, blob["digest"], source.blob_stream(source_repository, blob["digest"]))
    stored = target.put_manifest(target_repository, tag or digest, media_type, raw)
    check, _, raw_back = target.manifest(target_repository, digest)
    if (stored and stored != digest) or digest_of(raw_back) != digest:
        raise ToolkitError(f"the target registry stored {target_repository}@{stored or check}, not {digest}: the copy is not faithful.")
    return digest
