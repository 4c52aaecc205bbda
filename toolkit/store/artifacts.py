"""Signed model artifacts up to and down from the store.

An artifact's manifest is uploaded after the files it lists and the signature last (it vouches for
the rest), so a reader that finds the signature finds everything. Downloads are checked file by
file against their sha256 and then against the manifest; the signature is checked where the model
is loaded (`toolkit.ml.signing.load_signed_artifact`), against keys the caller chooses.
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.config import EnvironmentConfig
from toolkit.errors import ToolkitError
from toolkit.ml.artifacts import verify_artifact
from toolkit.ml.manifest import MANIFEST
from toolkit.ml.signing import SIGNATURE
from toolkit.store.s3 import download_file, upload_file


def upload_artifact(config: EnvironmentConfig, artifact_dir: Path, prefix_url: str) -> str:
    """Upload a verified artifact (and its signature) to <prefix_url>/<version>/; returns that URL."""
    manifest = verify_artifact(artifact_dir)
    base = prefix_url.rstrip("/") + "/" + manifest["version"] + "/"
    signature = [SIGNATURE] if (artifact_dir / SIGNATURE).is_file() else []
    for name in [*sorted(manifest["files"]), MANIFEST, *signature]:
        upload_file(config, artifact_dir / name, base + name)
    return base


def download_artifact(config: EnvironmentConfig, url: str, directory: Path) -> Path:
    """Download the artifact at <url> (…/<version>/) and its signature, if any, into
    `directory`/<version>/ and verify its checksums."""
    base = url.rstrip("/") + "/"
    target = directory / base.rstrip("/").rsplit("/", 1)[-1]
    target.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(download_file(config, base + MANIFEST, target).read_text())
    for name in manifest.get("files", {}):
        if "/" in name or name.startswith("."):
            raise ToolkitError(f"{base}{MANIFEST} lists {name!r}, which is not a plain file name.")
        download_file(config, base + name, target)
    try:
        download_file(config, base + SIGNATURE, target)
    except ToolkitError as exc:
        if "404" not in str(exc) and "Not Found" not in str(exc):
            raise
        (target / SIGNATURE).unlink(missing_ok=True)  # an unsigned artifact: refused where it is loaded, with that reason
    verify_artifact(target)
    return target
