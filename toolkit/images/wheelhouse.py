"""The wheelhouse images install from (pip inside a build cannot reach an index): the serving and
training requirements at the versions pinned in constraints.txt, and the toolkit's own wheel."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Callable

from toolkit.errors import ToolkitError
from toolkit.paths import ProjectPaths

# boto3: the server ships its prediction log to the artifact store (the image keeps only botocore's S3 and STS models).
# model-signing and pyopenssl: the server verifies the model's signature before it serves.
# uvloop and httptools: uvicorn's fast event loop and HTTP parser.
SERVE_REQUIREMENTS = ["numpy", "pydantic", "PyYAML", "click", "fastapi", "uvicorn", "uvloop", "httptools", "prometheus-client",
                      "boto3", "orjson", "model-signing", "pyopenssl"]
# The training image adds the progress bar (no matplotlib: curves are skipped there).
TRAINING_REQUIREMENTS = ["tqdm"]


def build_wheelhouse(paths: ProjectPaths, on_line: Callable[[str], None] = print) -> Path:
    """Both parts are cached by content hash: unchanged inputs leave the wheel files byte-identical,
    so Docker's layer cache holds and a model-only change rebuilds only the last layer."""
    root = paths.root
    wheelhouse = paths.state_subdir("wheelhouse")
    pins = {line.split("==")[0].lower().replace("_", "-"): line.strip()
            for line in (root / "constraints.txt").read_text().splitlines() if "==" in line}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    for name, wanted in (("requirements.txt", SERVE_REQUIREMENTS), ("requirements-training.txt", TRAINING_REQUIREMENTS)):
        requirements = "\n".join(pins.get(n.lower(), n) for n in wanted) + "\n"
        if _changed(wheelhouse / f".{name}.sha256", requirements.encode()):
            on_line(f"wheelhouse: {name}")
            (wheelhouse / name).write_text(requirements)
            _run(pip + ["download", "--only-binary=:all:", "--dest", str(wheelhouse), "-c", str(root / "constraints.txt"),
                        "-r", str(wheelhouse / name)], "pip download")
            _remember(wheelhouse / f".{name}.sha256", requirements.encode())
    sources = _sources(paths)
    if _changed(wheelhouse / ".toolkit.sha256", sources) or not list(wheelhouse.glob("toolkit-*.whl")):
        on_line("wheelhouse: toolkit")
        for old in wheelhouse.glob("toolkit-*.whl"):
            old.unlink()
        _run(pip + ["wheel", "--no-deps", "--wheel-dir", str(wheelhouse), str(root)], "pip wheel")
        _remember(wheelhouse / ".toolkit.sha256", sources)
    return wheelhouse


def _sources(paths: ProjectPaths) -> bytes:
    """Everything the toolkit's wheel is built from (its files in sorted order, and pyproject.toml)."""
    files = sorted(p for p in paths.root.glob("toolkit/**/*") if p.is_file() and "__pycache__" not in p.parts)
    return b"".join(p.relative_to(paths.root).as_posix().encode() + b"\0" + p.read_bytes() for p in files) + \
        (paths.root / "pyproject.toml").read_bytes()


def inputs_digest(paths: ProjectPaths) -> dict[str, str]:
    """What an image's software is built from, as digests that are the same in any checkout of the
    same commit: the toolkit's sources and the pinned requirements of each image."""
    root = paths.root
    pins = (root / "constraints.txt").read_bytes()
    requirements = "\n".join(SERVE_REQUIREMENTS + ["--training--"] + TRAINING_REQUIREMENTS).encode()
    return {"toolkit_sources": hashlib.sha256(_sources(paths)).hexdigest(),
            "requirements": hashlib.sha256(requirements + b"\0" + pins).hexdigest()}


def _changed(stamp: Path, content: bytes) -> bool:
    return not stamp.exists() or stamp.read_text() != hashlib.sha256(content).hexdigest()


def _remember(stamp: Path, content: bytes) -> None:
    stamp.write_text(hashlib.sha256(content).hexdigest())


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolkitError(f"{what} failed (exit {result.returncode}):\n{(result.stderr or result.stdout)[-3000:]}")
