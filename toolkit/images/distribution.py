"""Reading from an OCI registry over its HTTP API (the distribution spec): manifests, config blobs.

Used where the Docker engine cannot help: the labels of an image that is only in the registry
(`push` compares build inputs with them). Basic auth with the registry login works for ECR and
for the local registry; plain HTTP only on loopback.
"""

from __future__ import annotations

import json

from toolkit.errors import ToolkitError
from toolkit.images.login import RegistryLogin

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
])
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


class RegistryClient:
    def __init__(self, login: RegistryLogin, timeout: float = 30.0) -> None:
        import requests

        loopback = login.host.split(":")[0] in ("127.0.0.1", "localhost")
        self.base = f"{'http' if loopback else 'https'}://{login.host}/v2"
        self.session = requests.Session()
        self.session.auth = (login.username, login.password)
        self.timeout = timeout

    def _get(self, path: str, accept: str | None = None):
        import requests

        try:
            response = self.session.get(f"{self.base}/{path}", headers={"Accept": accept} if accept else {}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ToolkitError(f"cannot reach the registry at {self.base}: {exc}") from None
        if response.status_code >= 400:
            raise ToolkitError(f"registry GET {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes]:
        """(digest, media type, raw bytes) of a tag or digest."""
        response = self._get(f"{repository}/manifests/{reference}", MANIFEST_TYPES)
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return response.headers.get("Docker-Content-Digest", ""), media_type, response.content

    def blob(self, repository: str, digest: str) -> bytes:
        return self._get(f"{repository}/blobs/{digest}").content

    def image_config(self, repository: str, reference: str) -> dict:
        """The image's config (labels under config.Labels); for an index, its linux/amd64 image."""
        _, media_type, raw = self.manifest(repository, reference)
        manifest = json.loads(raw)
        if media_type in INDEX_TYPES or "manifests" in manifest:
            chosen = next((m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64"),
                          manifest["manifests"][0])
            _, _, raw = self.manifest(repository, chosen["digest"])
            manifest = json.loads(raw)
        return json.loads(self.blob(repository, manifest["config"]["digest"]))

    def labels(self, repository: str, reference: str) -> dict[str, str]:
        return self.image_config(repository, reference).get("config", {}).get("Labels") or {}
