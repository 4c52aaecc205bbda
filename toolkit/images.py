"""Serving images with the docker SDK: wheelhouse on the host, build context, build, push.

The image installs only what serving imports (SERVE_REQUIREMENTS, at the versions pinned in
constraints.txt), from a wheelhouse built here, because pip inside a build cannot reach an index.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolkit.artifacts import load_artifact
from toolkit.errors import BadInputError, ToolkitError
from toolkit.version import git_short_sha

SERVE_REQUIREMENTS = ["numpy", "pydantic", "PyYAML", "click", "fastapi", "uvicorn", "prometheus-client"]
# The training image adds the S3 client and the progress bar (no matplotlib: curves are skipped there).
TRAINING_REQUIREMENTS = ["boto3", "tqdm"]
DOCKERFILE = Path(__file__).resolve().parent / "serve" / "Dockerfile"
Progress = Callable[[str], None]


def docker_client(root: Path):
    import docker

    from toolkit.local import docker_base_url

    try:
        client = docker.DockerClient(base_url=docker_base_url(root), timeout=600)
        client.ping()
    except Exception as exc:
        raise ToolkitError(f"no Docker engine answers at {docker_base_url(root)} ({exc}); run `toolkit local up`.") from None
    return client


def build_wheelhouse(root: Path, on_line: Progress = print) -> Path:
    """Wheels of the serving requirements (pinned by constraints.txt) and of the toolkit itself.

    Both are cached by content hash: unchanged inputs leave the wheel files byte-identical,
    so Docker's layer cache holds and a model-only change rebuilds only the last layer."""
    wheelhouse = root / ".local" / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
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
    sources = b"".join(p.read_bytes() for p in sorted(root.glob("toolkit/**/*")) if p.is_file() and "__pycache__" not in p.parts)
    sources += (root / "pyproject.toml").read_bytes()
    if _changed(wheelhouse / ".toolkit.sha256", sources) or not list(wheelhouse.glob("toolkit-*.whl")):
        on_line("wheelhouse: toolkit")
        for old in wheelhouse.glob("toolkit-*.whl"):
            old.unlink()
        _run(pip + ["wheel", "--no-deps", "--wheel-dir", str(wheelhouse), str(root)], "pip wheel")
        _remember(wheelhouse / ".toolkit.sha256", sources)
    return wheelhouse


def _changed(stamp: Path, content: bytes) -> bool:
    return not stamp.exists() or stamp.read_text() != hashlib.sha256(content).hexdigest()


def _remember(stamp: Path, content: bytes) -> None:
    stamp.write_text(hashlib.sha256(content).hexdigest())


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolkitError(f"{what} failed (exit {result.returncode}):\n{(result.stderr or result.stdout)[-3000:]}")


def build_context(root: Path, model_dir: Path, wheelhouse: Path) -> Path:
    """Dockerfile + wheelhouse/ + model/, hard-linked where possible (no copies of big wheels)."""
    context = root / ".local" / "build-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copy2(DOCKERFILE, context / "Dockerfile")
    shutil.copytree(wheelhouse, context / "wheelhouse", copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns(".*"))
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


def build_image(root: Path, model_dir: Path, repository: str, base_image: str, on_line: Progress = print,
                target: str = "serving") -> BuiltImage:
    """Build the serving image for a verified model, tag `<model version>-<git short sha>`; or
    (target "training") the training image, tag `training-<git short sha>`."""
    model = load_artifact(model_dir)  # refuses a model whose checksums fail
    client = docker_client(root)
    if base_image.startswith("toolkit-base:"):
        from toolkit.local import ensure_base_image

        ensure_base_image(client, root, base_image, on_line)
    commit = (git_short_sha(root) or "nogit").replace(".dirty", "-dirty")
    tag = f"{model.version}-{commit}" if target == "serving" else f"{target}-{commit}"
    context = build_context(root, model.path, build_wheelhouse(root, on_line))
    buildargs = {
        "BASE_IMAGE": base_image, "SOURCE": "toolkit", "REVISION": commit,
        "MODEL_VERSION": model.version, "MODEL_SHA256": model.manifest["files"]["weights.npz"]["sha256"],
    }
    image_id = None
    for chunk in client.api.build(path=str(context), tag=f"{repository}:{tag}", buildargs=buildargs, rm=True,
                                  forcerm=True, decode=True, pull=False, target=target):
        if "error" in chunk:
            raise ToolkitError(f"docker build failed: {chunk['error'].strip()}")
        if chunk.get("stream", "").strip():
            on_line(chunk["stream"].rstrip())
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    image = client.images.get(image_id or f"{repository}:{tag}")
    return BuiltImage(repository, tag, image.id, image.attrs["Size"])


def _last_build_file(root: Path, env: str) -> Path:
    return root / ".local" / f"last-build-{env}.json"


def save_last_build(root: Path, env: str, image: BuiltImage, training: BuiltImage | None = None) -> None:
    import json

    record = {"image": image.reference, "id": image.image_id, "training_image": training.reference if training else None}
    _last_build_file(root, env).write_text(json.dumps(record))


def last_build(root: Path, env: str, key: str = "image") -> str | None:
    """The last `toolkit build --env ENV`'s serving image (key "image") or training image."""
    import json

    path = _last_build_file(root, env)
    if not path.exists():
        raise ToolkitError(f"no image built for {env} yet: run `toolkit build --env {env}` or pass --image.")
    return json.loads(path.read_text()).get(key)


def image_model_version(root: Path, image_ref: str) -> str:
    """The model version label `toolkit build` put on the image."""
    labels = docker_client(root).images.get(image_ref).labels or {}
    return labels.get("io.toolkit.model.version", "unknown")


# ---------------------------------------------------------------- registry credentials and push


@dataclass
class RegistryLogin:
    host: str  # host[:port] images are pushed to
    username: str
    password: str

    def auth_config(self) -> dict:
        return {"username": self.username, "password": self.password, "serveraddress": self.host}


def registry_login(config) -> RegistryLogin:
    """Credentials from ECR (`get_authorization_token`, user AWS), for real AWS and, through moto,
    for the local environment; the host is ECR's endpoint unless `registry.endpoint` overrides it."""
    import base64

    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from toolkit.aws import client

    try:
        data = client("ecr", config).get_authorization_token()["authorizationData"][0]
    except NoCredentialsError:
        raise ToolkitError(f"no AWS credentials to get an ECR login for {config.name}: configure AWS credentials "
                           "(AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and try again.") from None
    except (BotoCoreError, ClientError) as exc:
        raise ToolkitError(f"ECR refused the login for {config.name}: {exc}") from None
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = config.registry.endpoint or data["proxyEndpoint"].removeprefix("https://")
    return RegistryLogin(host, username, password)


def remote_digest(docker, reference: str, login: RegistryLogin) -> str | None:
    """The digest `reference` (repo:tag) has in the registry; None when the tag is not there."""
    import docker as docker_sdk

    try:
        return docker.api.inspect_distribution(reference, auth_config=login.auth_config())["Descriptor"]["digest"]
    except docker_sdk.errors.NotFound:
        return None
    except docker_sdk.errors.APIError as exc:
        if "manifest unknown" in str(exc) or "not found" in str(exc).lower():
            return None
        raise ToolkitError(f"cannot check whether {reference} exists: {exc.explanation or exc}") from None


def _local_digest(docker, image_ref: str, remote: str) -> str | None:
    """The digest this local image already has in `remote` (from an earlier push or pull)."""
    for repo_digest in docker.images.get(image_ref).attrs.get("RepoDigests", []):
        repository, _, digest = repo_digest.partition("@")
        if repository == remote:
            return digest
    return None


TRANSIENT = ("timeout", "connection reset", "connection refused", "503", "502", "504", "TLS handshake", "EOF")


def push_image(root: Path, image_ref: str, config, on_line: Progress = print, attempts: int = 4,
               on_event: Callable[[dict], None] | None = None) -> str:
    """Push a local image to the environment's registry; returns the pushed digest.

    Refuses `latest`, and a tag an immutable registry already holds with other content (pushing
    the very same image again is a no-op); retries transient errors with exponential backoff."""
    import time

    docker = docker_client(root)
    local_repository, _, tag = image_ref.rpartition(":")
    if not tag or tag == "latest":
        raise BadInputError(f"refusing to push {image_ref!r}: give an explicit release tag, never 'latest'.")
    login = registry_login(config)
    remote = f"{login.host}/{config.registry.name}"
    try:
        docker.images.get(image_ref).tag(remote, tag)
    except Exception as exc:
        raise ToolkitError(f"no local image {image_ref}: {exc}") from None
    existing = remote_digest(docker, f"{remote}:{tag}", login) if config.registry.tag_immutability else None
    if existing is not None:
        # The same image pushed again (a re-run release) is a no-op; other content under the tag is refused.
        if existing == _local_digest(docker, image_ref, remote):
            on_line(f"{remote}:{tag} is already in the registry with this content ({existing})")
            return existing
        raise BadInputError(f"{remote}:{tag} already exists with other content ({existing}) and tags are immutable: "
                            "build a new version instead.")
    for attempt in range(1, attempts + 1):
        digest, error = None, None
        for chunk in docker.api.push(remote, tag, auth_config=login.auth_config(), stream=True, decode=True):
            if "error" in chunk:
                error = chunk["error"]
            elif "aux" in chunk and "Digest" in chunk["aux"]:
                digest = chunk["aux"]["Digest"]
            elif chunk.get("status") and chunk.get("id"):
                if on_event is not None:
                    on_event(chunk)  # per-layer status and progressDetail {current, total}
                elif chunk["status"] != "Pushing":
                    on_line(f"{chunk['id']}: {chunk['status']}")
        if error is None and digest:
            return digest
        if error and any(word.lower() in error.lower() for word in TRANSIENT) and attempt < attempts:
            delay = 2 ** attempt
            on_line(f"push failed ({error.strip()}); retrying in {delay} s ({attempt}/{attempts - 1})")
            time.sleep(delay)
            continue
        raise ToolkitError(f"push of {remote}:{tag} failed: {error or 'no digest returned'}")
    raise AssertionError("unreachable")
