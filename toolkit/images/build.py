"""Image builds with the docker SDK: build context (Dockerfile, wheelhouse, model), build, labels.

Targets of one Dockerfile: `serving` (the inference server with the model baked in, tag
`<model version>-<git short sha>`), `training` (the toolkit plus boto3, tag `training-<sha>`) and
`training-gpu` (the training image plus CuPy and CUDA libraries, tag `training-gpu-<sha>`)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.images.base_image import ensure_base_image, is_offline_base
from toolkit.images.docker import docker_client
from toolkit.images.wheelhouse import build_gpu_wheelhouse, build_wheelhouse, inputs_digest
from toolkit.lines import silent
from toolkit.ml.artifacts import WEIGHTS, ModelArtifact, load_artifact
from toolkit.paths import ProjectPaths
from toolkit.version import git_short_sha

DOCKERFILE = Path(__file__).resolve().parent / "Dockerfile"
MODEL_VERSION_LABEL = "io.toolkit.model.version"
BUILD_INPUTS_LABEL = "io.toolkit.build-inputs"
Progress = Callable[[str], None]


def build_context(paths: ProjectPaths, model_dir: Path, wheelhouse: Path, gpu_wheelhouse: Path | None = None) -> Path:
    """Dockerfile + wheelhouse/ + model/ (+ wheelhouse-gpu/ for the CUDA image only: the other
    builds never send its 800 MB to Docker), hard-linked where possible (no copies of big wheels)."""
    context = paths.state / "build-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copy2(DOCKERFILE, context / "Dockerfile")
    wheelhouses = {"wheelhouse": wheelhouse, **({"wheelhouse-gpu": gpu_wheelhouse} if gpu_wheelhouse else {})}
    for name, source in wheelhouses.items():
        shutil.copytree(source, context / name, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(model_dir.resolve(), context / "model")
    return context


def _link_or_copy(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


@dataclass
class BuiltImage:
    repository: str
    tag: str
    image_id: str
    size_bytes: int

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


def build_inputs(ctx: Context, model: ModelArtifact, target: str) -> str:
    """One digest of everything the image is built from: the same in any checkout of the same commit
    (sources, pinned requirements, base image reference, target; and the model for serving)."""
    parts = {**inputs_digest(ctx.paths), "base_image": ctx.config.serving.base_image, "target": target}
    if target == "serving":
        parts["model"] = model.manifest["checksum"]
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def build_image(ctx: Context, model_dir: Path, on_line: Progress = silent, target: str = "serving",
                no_cache: bool = False) -> BuiltImage:
    """Build the environment's serving image for a verified model, or (target "training" or
    "training-gpu") a training image."""
    model = load_artifact(model_dir)  # refuses a model whose checksums fail
    repository, base_image = ctx.config.registry.name, ctx.config.serving.base_image
    client = docker_client(ctx.paths)
    if is_offline_base(base_image):
        ensure_base_image(client, ctx.paths, base_image, on_line)
    commit = (git_short_sha(ctx.root) or "nogit").replace(".dirty", "-dirty")
    tag = f"{model.version}-{commit}" if target == "serving" else f"{target}-{commit}"
    gpu_wheelhouse = build_gpu_wheelhouse(ctx.paths, on_line) if target == "training-gpu" else None
    context = build_context(ctx.paths, model.path, build_wheelhouse(ctx.paths, on_line), gpu_wheelhouse)
    buildargs = {
        "BASE_IMAGE": base_image, "SOURCE": "toolkit", "REVISION": commit,
        "MODEL_VERSION": model.version, "MODEL_SHA256": model.manifest["files"][WEIGHTS]["sha256"],
        "BUILD_INPUTS": build_inputs(ctx, model, target),
    }
    image_id = None
    for chunk in client.api.build(path=str(context), tag=f"{repository}:{tag}", buildargs=buildargs, rm=True,
                                  forcerm=True, decode=True, pull=False, target=target, nocache=no_cache):
        if "error" in chunk:
            raise ToolkitError(f"docker build failed: {chunk['error'].strip()}")
        if chunk.get("stream", "").strip():
            on_line(chunk["stream"].rstrip())
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    image = client.images.get(image_id or f"{repository}:{tag}")
    return BuiltImage(repository, tag, image.id, image.attrs["Size"])


def image_model_version(paths: ProjectPaths, image_ref: str) -> str:
    """The model version label `build_image` put on the image."""
    labels = docker_client(paths).images.get(image_ref).labels or {}
    return labels.get(MODEL_VERSION_LABEL, "unknown")
