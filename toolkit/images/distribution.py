"""An OCI registry over its HTTP API (the distribution spec): manifests, config blobs, blob uploads.

Used where the Docker engine cannot help: the labels of an image that is only in the registry
(`push` compares build inputs with them), and copying an image between registries by digest
(`promote`: manifests and blobs moved as they are, so the digest cannot change). Basic auth with
the registry login works for ECR and for the local registry; plain HTTP only on loopback.
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

    def _request(self, method: str, url: str, ok=(200,), **kwargs):
        import requests

        url = url if url.startswith("http") else f"{self.base}/{url}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ToolkitError(f"cannot reach the registry at {self.base}: {exc}") from None
        if response.status_code not in ok:
            raise ToolkitError(f"registry {method} {url.removeprefix(self.base)}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def _get(self, path: str, accept: str | None = None, **kwargs):
        return self._request("GET", path, headers={"Accept": accept} if accept else {}, **kwargs)

    def has_blob(self, repository: str, digest: str) -> bool:
        return self._request("HEAD", f"{repository}/blobs/{digest}", ok=(200, 404)).status_code == 200

    def has_manifest(self, repository: str, reference: str) -> bool:
        response = self._request("HEAD", f"{repository}/manifests/{reference}", ok=(200, 404), headers={"Accept": MANIFEST_TYPES})
        return response.status_code == 200

    def blob_stream(self, repository: str, digest: str):
        """The blob's bytes as an iterator of chunks (a layer can be GBs: never read whole)."""
        return self._get(f"{repository}/blobs/{digest}", stream=True).iter_content(chunk_size=1 << 20)

    def upload_blob(self, repository: str, digest: str, chunks) -> None:
        """Start an upload, send the bytes in one streamed PATCH, close it with the digest (the
        registry checks it): the sequence `docker push` uses, which ECR and distribution accept."""
        started = self._request("POST", f"{repository}/blobs/uploads/", ok=(202,))
        sent = self._request("PATCH", _absolute(self.base, started.headers["Location"]), ok=(202,), data=chunks,
                             headers={"Content-Type": "application/octet-stream"})
        location = _absolute(self.base, sent.headers["Location"])
        self._request("PUT", location, ok=(201,), params={"digest": digest}, headers={"Content-Length": "0"})

    def upload_small_blob(self, repository: str, digest: str, data: bytes) -> None:
        """A small blob in two requests (start, then one PUT with the bytes: the spec's monolithic
        upload), where upload_blob takes three; each request costs the local registry a bcrypt check."""
        started = self._request("POST", f"{repository}/blobs/uploads/", ok=(202,))
        self._request("PUT", _absolute(self.base, started.headers["Location"]), ok=(201,), params={"digest": digest}, data=data,
                      headers={"Content-Type": "application/octet-stream"})

    def put_manifest(self, repository: str, reference: str, media_type: str, raw: bytes) -> str:
        """Store the manifest's exact bytes under `reference` (a tag or its digest); returns the digest."""
        response = self._request("PUT", f"{repository}/manifests/{reference}", ok=(201,), data=raw,
                                 headers={"Content-Type": media_type})
        return response.headers.get("Docker-Content-Digest", "")

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


def _absolute(base: str, location: str) -> str:
    """An upload Location header is absolute or relative to the registry's root."""
    if location.startswith("http"):
        return location
    return base.removesuffix("/v2") + location
