"""Shared fixtures. Tests run in one process; each gets its own artifact directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.context import Context
from toolkit.paths import ProjectPaths
from toolkit.terraform.adapter import terraform_environment

REPO = Path(__file__).resolve().parent.parent
PATHS = ProjectPaths(REPO)
HEART = REPO / "data" / "heart-cleveland.csv"

# Models the tests train are signed with this checkout's local key (.local/signing/, generated on
# first use), which every server and `toolkit predict` the tests start trusts through the variable
# the serving container gets its keys from.
from toolkit.serving import PUBLIC_KEYS_ENV  # noqa: E402
from toolkit.signing_keys import local_key_files  # noqa: E402

SIGNING_KEY, SIGNING_PUBLIC_KEY = local_key_files(PATHS)
os.environ[PUBLIC_KEYS_ENV] = SIGNING_PUBLIC_KEY.read_text()
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata here: fail fast, never wait for it

# jsii cache in the repo, offline provider mirror, no checkpoint calls: as the Makefile does.
os.environ.update(terraform_environment(PATHS))


# ---------------------------------------------------------------- how `make test` spreads the tests over workers

# pytest-xdist with --dist loadgroup: a module runs in one worker, so its module fixtures (a plan
# story on moto, an emulator) are built once. Every module that uses the Docker engine runs in one
# worker: the engine, its cached base image, the wheelhouse and the local runtime's port belong to
# the checkout. The longest groups are handed out first (`--no-loadscope-reorder` keeps this order);
# test_workloads (~2 min) last on a worker made that worker finish 90 s after the others.
DOCKER_GROUP = "docker-engine"
LONGEST_FIRST = ("test_plan_review.py", "test_infra_local.py", DOCKER_GROUP, "test_workloads.py")
# Tests that use one of these need a service (moto, dockerd, the registry, the Kubernetes
# emulator, cdktf synthesis); modules that start one themselves say so with `pytestmark = SERVICES`.
SERVICE_FIXTURES = {"engine", "local", "local_ctx", "emulator", "kube", "synthesized", "served_model", "plans", "hcl_stacks",
                    "local_config", "stack"}
SERVICES = pytest.mark.services


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the group into the test's id
def pytest_collection_modifyitems(config, items):
    engine_modules = {item.path for item in items if "engine" in item.fixturenames}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(DOCKER_GROUP if item.path in engine_modules else item.path.name))
        if SERVICE_FIXTURES & set(item.fixturenames):
            item.add_marker(SERVICES)

    def rank(item):
        group = DOCKER_GROUP if item.path in engine_modules else item.path.name
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def wait_until(what: str, check, timeout: float = 20.0, interval: float = 0.2):
    """`check()`'s first truthy value; fails naming `what` at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def wait_ready(url: str, timeout: float = 30.0, process=None) -> None:
    """Until `url` answers; fails at the timeout, or at once when `process` (a Popen) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{url}: the server exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout} s")


class HttpConnection:
    """A raw keep-alive connection to 127.0.0.1:`port` that reads responses one at a time, pipelined ones
    included (what urllib cannot send: chunked uploads by hand, pipelining, bodies cut short)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server; unread: {self.buffer!r}")
        self.buffer += chunk

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """(status, headers by lower-case name, body) of the next response."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(" ")[1]), headers, body

    def closed_by_server(self) -> bool:
        return self.sock.recv(1024) == b""

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def uvicorn_in_thread(app, keep_alive: float = 5.0):
    """`app` under uvicorn with the config `toolkit serve` runs (serve/server.py's uvicorn_config), on a
    real socket in a thread of the test process; yields (port, server, the paths of the POST requests
    that reached its ASGI app, i.e. were not answered directly)."""
    import threading

    import uvicorn

    from toolkit.serve.server import uvicorn_config

    reached: list[str] = []
    inner = app.asgi

    async def watched(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            reached.append(scope["path"])
        await inner(scope, receive, send)

    app.asgi = watched
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, keep_alive=keep_alive))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until("uvicorn started", lambda: server.started, timeout=20, interval=0.05)
    try:
        yield port, server, reached
    finally:
        server.should_exit = True
        thread.join(15)


def metric_sum(url: str, prefix: str) -> float:
    """The sum of the server's (at `url`) metric lines that start with `prefix`, e.g. a series with its labels."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def feedback_credentials(*names: str) -> tuple[str, dict[str, str]]:
    """A credentials document (toolkit/feedback_auth.py) with a labeller for each name, and their tokens."""
    from toolkit.feedback_auth import FeedbackCredentials, new_token

    credentials, tokens = FeedbackCredentials.new(), {}
    for name in names or ("tester",):
        tokens[name] = new_token()
        credentials = credentials.with_labeller(name, tokens[name])
    return credentials.dumps(), tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def remove_serving_containers(engine, env: str) -> None:
    """The local runtime's serving container of `env` and its candidate, if any (a test's cleanup)."""
    import docker

    from toolkit.workloads.local_runtime import container_name

    for suffix in ("", "-candidate"):
        try:
            engine.containers.get(container_name(env) + suffix).remove(force=True)
        except docker.errors.NotFound:
            pass


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for a service of a test's own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def repo_copy(tmp_path, monkeypatch) -> Path:
    """A scratch project root with the real environments/ and data/, safe to edit."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "environments", root / "environments")
    shutil.copytree(REPO / "data", root / "data")
    monkeypatch.setenv("TOOLKIT_ROOT", str(root))
    return root


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def synthesized():
    """Every shipped environment's stack, synthesized once per session: {env: synth JSON}."""
    from infra_helpers import synth_stack
    from toolkit.config import load_all_environments

    return {env: synth_stack(config) for env, config in load_all_environments().items()}


# ---------------------------------------------------------------- Docker engine, registry, models (session-wide)


@pytest.fixture(scope="session")
def engine():
    """The Docker engine (an existing one, else dockerd under the repo's .local, stopped afterwards).
    The offline base image it builds stays cached there between runs."""
    from toolkit.images.docker import docker_client
    from toolkit.local.dockerd import docker_status, start_dockerd, stop_dockerd

    was_running = docker_status(PATHS).running
    start_dockerd(PATHS)
    yield docker_client(PATHS)
    if not was_running:
        stop_dockerd(PATHS)


@pytest.fixture(scope="session")
def local(tmp_path_factory):
    """The local config with moto and the registry on ports of this test's own (their state in a
    directory of its own)."""
    from toolkit.images.login import registry_login
    from toolkit.local.moto import start_moto, stop_moto
    from toolkit.local.registry import start_registry, stop_registry

    services = ProjectPaths(tmp_path_factory.mktemp("image-services"))
    ctx = Context.load("local", REPO)
    config = ctx.config.model_copy(update={
        "aws": ctx.config.aws.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"}),
        "registry": ctx.config.registry.model_copy(update={"endpoint": f"127.0.0.1:{free_port()}"}),
    })
    start_moto(services, config.aws.endpoint_url)
    login = registry_login(config)
    start_registry(services, config.registry.endpoint, login.username, login.password)
    yield config
    stop_registry(services)
    stop_moto(services)


@pytest.fixture(scope="session")
def local_ctx(local) -> Context:
    """`local` as the context of this checkout (its .local/ holds the wheelhouse, records and builds)."""
    return Context(local, PATHS)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return train_small_model(tmp_path_factory.mktemp("image-model"), seed=7)


def train_small_model(root, seed: int):
    """A quickly trained model artifact (15 epochs) of the local environment's training settings."""
    from toolkit.config import load_environment
    from toolkit.ml.signing import sign_artifact
    from toolkit.ml.train import DatasetChoice, train_and_save

    settings = load_environment("local").training.model_copy(update={"epochs": 15, "seed": seed})
    artifact = train_and_save(DatasetChoice.from_config(settings), settings, root, env="test").artifact_dir
    sign_artifact(artifact, SIGNING_KEY.read_bytes())
    return artifact
