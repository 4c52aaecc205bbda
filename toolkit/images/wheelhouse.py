"""The wheelhouse images install from (pip inside a build cannot reach an index): the serving and
training requirements at the versions pinned in constraints.txt, and the toolkit's own wheel."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from toolkit.errors import ToolkitError
from toolkit.images.wheel_strip import STRIP_RULES, strip_wheel
from toolkit.lines import silent
from toolkit.paths import ProjectPaths

# boto3: the server ships its prediction log to the artifact store and reads its feedback credentials from Secrets Manager (the image keeps only botocore's S3, STS and Secrets Manager models).
# model-signing and pyopenssl: the server verifies the model's signature before it serves.
# uvloop and httptools: uvicorn's fast event loop and HTTP parser.
SERVE_REQUIREMENTS = ["numpy", "pydantic", "PyYAML", "click", "fastapi", "uvicorn", "uvloop", "httptools", "prometheus-client",
                      "boto3", "orjson", "model-signing", "pyopenssl"]
# The training image adds the progress bar (no matplotlib: curves are skipped there).
TRAINING_REQUIREMENTS = ["tqdm"]
# The CUDA training image adds CuPy and, from NVIDIA's PyPI wheels, only the CUDA libraries the core
# calls: the runtime, cuBLAS (matmul) and NVRTC (CuPy compiles its elementwise kernels). The GPU
# node's AMI brings the driver, so no CUDA base image is needed.
GPU_TRAINING_REQUIREMENTS = ["cupy-cuda12x", "cuda-toolkit[cublas,cudart,nvrtc]"]


def build_wheelhouse(paths: ProjectPaths, on_line: Callable[[str], None] = silent) -> Path:
    """Both parts are cached by content hash: unchanged inputs leave the wheel files byte-identical,
    so Docker's layer cache holds and a model-only change rebuilds only the last layer."""
    root = paths.root
    wheelhouse = paths.state_subdir("wheelhouse")
    pins = _pins(root)
    strip = shutil.which("strip")
    if strip is None:
        on_line("wheelhouse: no `strip` (Debian package binutils): shared objects keep their symbols, the images ~20 MB bigger")
    requirements = {name: _pinned(wanted, pins)
                    for name, wanted in (("requirements.txt", SERVE_REQUIREMENTS), ("requirements-training.txt", TRAINING_REQUIREMENTS))}
    # The stamp names the stripping rules too: wheels stripped by other rules are downloaded afresh.
    stamp = ("".join(requirements.values()) + (STRIP_RULES if strip else "")).encode()
    if _changed(wheelhouse / ".requirements.sha256", stamp):
        on_line("wheelhouse: requirements")
        for old in _dependency_wheels(wheelhouse):
            old.unlink()
        for name, text in requirements.items():
            (wheelhouse / name).write_text(text)
            _download(root, wheelhouse, wheelhouse / name)
        if strip:
            saved = sum(strip_wheel(wheel, strip) for wheel in _dependency_wheels(wheelhouse))
            on_line(f"wheelhouse: {saved / 1e6:.1f} MB of symbols stripped from shared objects")
        _remember(wheelhouse / ".requirements.sha256", stamp)
    sources = _sources(paths)
    if _changed(wheelhouse / ".toolkit.sha256", sources) or not list(wheelhouse.glob("toolkit-*.whl")):
        on_line("wheelhouse: toolkit")
        for old in wheelhouse.glob("toolkit-*.whl"):
            old.unlink()
        _run(PIP + ["wheel", "--no-deps", "--wheel-dir", str(wheelhouse), str(root)], "pip wheel")
        _remember(wheelhouse / ".toolkit.sha256", sources)
    return wheelhouse


def build_gpu_wheelhouse(paths: ProjectPaths, on_line: Callable[[str], None] = silent) -> Path:
    """The CUDA training image's extra wheels (about 800 MB), in a directory of their own: only the
    builds that need them download them or send them to Docker."""
    wheelhouse = paths.state_subdir("wheelhouse-gpu")
    pins = _pins(paths.root)
    text = _pinned(GPU_TRAINING_REQUIREMENTS, pins)
    if _changed(wheelhouse / ".requirements.sha256", text.encode()):
        on_line("wheelhouse-gpu: CuPy and the CUDA runtime, cuBLAS and NVRTC wheels (about 800 MB)")
        for old in wheelhouse.glob("*.whl"):
            old.unlink()
        (wheelhouse / "requirements.txt").write_text(text)
        _download(paths.root, wheelhouse, wheelhouse / "requirements.txt")
        for wheel in wheelhouse.glob("numpy-*.whl"):  # CuPy's dependency, already in the training image's venv
            wheel.unlink()
        _remember(wheelhouse / ".requirements.sha256", text.encode())
    return wheelhouse


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def _download(root: Path, wheelhouse: Path, requirements: Path) -> None:
    """Binary wheels of `requirements` and their dependencies, at the versions constraints.txt pins."""
    _run(PIP + ["download", "--only-binary=:all:", "--dest", str(wheelhouse), "-c", str(root / "constraints.txt"),
                "-r", str(requirements)], "pip download")


def _pins(root: Path) -> dict[str, str]:
    return {line.split("==")[0].lower().replace("_", "-"): line.strip()
            for line in (root / "constraints.txt").read_text().splitlines() if "==" in line}


def _pinned(wanted: list[str], pins: dict[str, str]) -> str:
    """Requirement lines at the pinned versions; `name[extra,...]` keeps its extras."""
    lines = []
    for requirement in wanted:
        name, _, extras = requirement.partition("[")
        pin = pins.get(name.lower())
        lines.append(pin.replace("==", f"[{extras}==", 1) if pin and extras else pin or requirement)
    return "\n".join(lines) + "\n"


def _dependency_wheels(wheelhouse: Path) -> list[Path]:
    """The wheels pip downloaded (all but the toolkit's own)."""
    return [wheel for wheel in wheelhouse.glob("*.whl") if not wheel.name.startswith("toolkit-")]


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
    requirements = "\n".join(SERVE_REQUIREMENTS + ["--training--"] + TRAINING_REQUIREMENTS
                             + ["--training-gpu--"] + GPU_TRAINING_REQUIREMENTS).encode()
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
