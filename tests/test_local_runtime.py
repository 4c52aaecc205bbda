"""Integration: the local environment's runtime on the real Docker engine, with images pulled by
digest from the real registry (ECR login from moto): deploy, a failing new image that must not
replace the healthy one (which keeps answering throughout), a second release, rollback."""

from __future__ import annotations

import threading
import time
import urllib.request

import docker
import pytest

from conftest import SIGNING_PUBLIC_KEY, free_port, remove_serving_containers, train_small_model
from toolkit.errors import RolloutError
from toolkit.images.build import build_image
from toolkit.images.login import registry_login
from toolkit.images.registry import push_image
from toolkit.images.release import Release
from toolkit.serving import PUBLIC_KEYS_ENV
from toolkit.workloads.local_runtime import container_name, deploy_local, rollback_local, status_local
from toolkit.workloads.smoke import http_json, smoke_test_url


@pytest.fixture(scope="module")
def runtime(engine, local_ctx):
    """The local environment under a name and on a port of this test's own (its release history is
    .local/releases-runtime-test.json, removed afterwards)."""
    local = local_ctx.config
    config = local.model_copy(update={
        "name": "runtime-test",
        "serving": local.serving.model_copy(update={"port": free_port()}),
        "workloads": local.workloads.model_copy(update={"rollout_timeout_seconds": 30}),
    })
    yield local_ctx.with_config(config)
    local_ctx.paths.record(f"releases-{config.name}").unlink(missing_ok=True)
    remove_serving_containers(engine, config.name)


def _release(engine, ctx, model_dir) -> Release:
    from toolkit.ml.artifacts import load_artifact

    config = ctx.config
    image = build_image(ctx, model_dir, on_line=lambda line: None)
    digest = push_image(ctx, image.reference, on_line=lambda line: None)
    return Release(f"{registry_login(config).host}/{config.registry.name}@{digest}", load_artifact(model_dir).version)


def _broken_release(engine, ctx, good: Release) -> Release:
    """The good image with an entrypoint that exits: what a bad release looks like at start-up."""
    import io

    dockerfile = (f"FROM {good.image}\n"
                  'ENTRYPOINT ["python3", "-c", "import sys; print(\'cannot load model\'); sys.exit(3)"]\n')
    config = ctx.config
    image, _ = engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=f"{config.registry.name}:broken-{free_port()}", rm=True)
    tag = image.tags[0]
    digest = push_image(ctx, tag, on_line=lambda line: None)
    return Release(f"{registry_login(config).host}/{config.registry.name}@{digest}", "broken")


def _answers(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200
    except OSError:
        return False


def _hammer(url: str, stop: threading.Event, results: list) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                results.append(response.status)
        except OSError as exc:
            results.append(repr(exc))


def test_deploy_refuse_a_broken_release_then_upgrade_and_roll_back(engine, runtime, tmp_path):
    config = runtime.config
    login = registry_login(config)
    quiet = lambda line: None  # noqa: E731
    first = _release(engine, runtime, train_small_model(tmp_path / "first", seed=5))
    url = f"http://127.0.0.1:{config.serving.port}"

    result = deploy_local(runtime, first, login, on_line=quiet)
    assert result["replaced"] is None
    smoke = smoke_test_url(url, runtime)
    assert smoke["model_version"] == first.model_version
    container = engine.containers.get(container_name(config.name))
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert container.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"  # back after `local up`

    # A release whose container exits: refused, and the old one answers every request meanwhile.
    broken = _broken_release(engine, runtime, first)
    stop, statuses = threading.Event(), []
    watcher = threading.Thread(target=_hammer, args=(f"{url}/readyz", stop, statuses))
    watcher.start()
    try:
        with pytest.raises(RolloutError, match="exited with code 3") as failure:
            deploy_local(runtime, broken, login, on_line=quiet)
    finally:
        stop.set()
        watcher.join()
    assert "cannot load model" in str(failure.value) and f"{first.image} keeps serving" in str(failure.value)
    assert statuses and set(statuses) == {200}, statuses[:5]
    assert status_local(runtime)["image"] == first.image
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(container_name(config.name) + "-candidate")

    # Another server already on the service port answers /readyz: a swap must not mistake it for ours.
    second = _release(engine, runtime, train_small_model(tmp_path / "second", seed=11))
    foreign = config.model_copy(update={"name": "runtime-foreign", "serving": config.serving.model_copy(update={"port": free_port()})})
    squatter = engine.containers.run(first.image, detach=True, network_mode="host", name=f"squatter-{foreign.serving.port}",
                                     environment={"TOOLKIT_HOST": "127.0.0.1", "TOOLKIT_PORT": str(foreign.serving.port),
                                                  PUBLIC_KEYS_ENV: SIGNING_PUBLIC_KEY.read_text()})
    try:
        deadline = time.monotonic() + 30
        while not _answers(foreign.serving.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _answers(foreign.serving.port), "the squatter never came up"
        with pytest.raises(RolloutError, match="exited with code|not ready"):
            deploy_local(runtime.with_config(foreign), second, login, timeout=15, on_line=quiet)
        assert http_json(f"http://127.0.0.1:{foreign.serving.port}/v1/model")["model_version"] == first.model_version
    finally:
        squatter.remove(force=True)
        runtime.paths.record(f"releases-{foreign.name}").unlink(missing_ok=True)
        remove_serving_containers(engine, foreign.name)

    # A good new release replaces it; rollback brings the first one back.
    assert deploy_local(runtime, second, login, on_line=quiet)["replaced"] == first.image
    assert http_json(f"{url}/v1/model")["model_version"] == second.model_version
    rollback_local(runtime, login, on_line=quiet)
    info = status_local(runtime)
    assert info["image"] == first.image and info["ready"] is True
    assert http_json(f"{url}/v1/model")["model_version"] == first.model_version
