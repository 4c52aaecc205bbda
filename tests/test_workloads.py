"""Workloads on Kubernetes: manifests against the official schemas and checkov; apply, prune,
rollout, rollback and training Jobs with the real `kubernetes` client over HTTP against the
emulator (tests/kube_emulator.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from kubernetes import client

from conftest import REPO, free_port, wait_ready
from kube_emulator import EmulatorThread, run_toolkit_job, write_kubeconfig
from toolkit.config import load_all_environments, load_environment
from toolkit.errors import BadInputError, RolloutError, ToolkitError
from toolkit.images.release import Release, ReleaseRecords
from toolkit.paths import ProjectPaths
from toolkit.signing_keys import PRIVATE_KEY_FILE_ENV, local_key_files
from toolkit.workloads import jobs, rollout
from toolkit.workloads.kube import Kube
from toolkit.workloads.manifests import serving_manifests, sweep_job, to_yaml, training_manifests

TOOLS = REPO / ".venv-tools" / "bin"
OUTPUTS = {"serving_role_arn": "arn:aws:iam::111111111111:role/platform-dev-serving",
           "training_role_arn": "arn:aws:iam::111111111111:role/platform-dev-training", "bucket": "platform-dev-artifacts"}
V1 = Release("111111111111.dkr.ecr.eu-west-1.amazonaws.com/platform-dev/serving@sha256:" + "1" * 64, "20261124-000001-aaaa")
V2 = Release("111111111111.dkr.ecr.eu-west-1.amazonaws.com/platform-dev/serving@sha256:" + "2" * 64, "20261124-000002-bbbb")
V3 = Release("111111111111.dkr.ecr.eu-west-1.amazonaws.com/platform-dev/serving@sha256:" + "3" * 64, "20261124-000003-cccc")


# ---------------------------------------------------------------- manifests


OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}  # prometheus-operator's: validated against its CRDs (test_observability.py)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Every environment's Kubernetes manifests (deploy set + training Job) as one YAML file each."""
    directory = tmp_path_factory.mktemp("manifests")
    for env, config in load_all_environments().items():
        objects = serving_manifests(config, OUTPUTS, V1) + training_manifests(config, OUTPUTS, V1, f"train-{env}", "name: x\n")
        if config.training.sweep:  # what `render --sweep` adds
            objects.append(sweep_job(config, OUTPUTS, V1, f"sweep-{env}", "sweep-0123456789ab"))
        (directory / f"{env}.yaml").write_text(to_yaml([o for o in objects if o["kind"] not in OPERATOR_KINDS]))
    return directory


def test_every_environment_renders_its_sweep_as_an_indexed_job(rendered, run_cli):
    import yaml

    for env in ("local", "dev", "staging", "prod"):
        job = next(o for o in yaml.safe_load_all((rendered / f"{env}.yaml").read_text()) if o and o["metadata"]["name"] == f"sweep-{env}")
        spec, config = job["spec"], load_environment(env).training.sweep
        assert spec["completionMode"] == "Indexed" and spec["completions"] == config.trial_count() * config.folds
        assert (spec["parallelism"], spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (
            config.parallelism, config.backoff_limit_per_index, config.max_failed_indexes)
        pod = spec["template"]["spec"]
        gpus = pod["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
        assert (gpus == "1") is config.gpu and pod["containers"][0]["command"][:2] == ["toolkit", "sweep-item"]
        assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    shown = run_cli("render", "--env", "prod", "--sweep", "--image", V1.image, "--training-image", V2.image)
    rendered_jobs = [o for o in yaml.safe_load_all(shown.stdout) if o and o["kind"] == "Job"]
    assert [j["metadata"]["name"] for j in rendered_jobs] == ["train-prod", "sweep-prod"]
    assert rendered_jobs[1]["spec"]["template"]["spec"]["containers"][0]["image"] == V2.image
    prod = load_environment("prod")
    queued = prod.model_copy(update={"training": prod.training.model_copy(update={
        "sweep": prod.training.sweep.model_copy(update={"queue_name": "team-ml"})})})
    assert sweep_job(queued, OUTPUTS, V1, "sweep-prod", "sweep-0123456789ab")["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-ml"


def test_every_manifest_passes_kubernetes_validate_strict_for_1_29_to_1_32(rendered):
    files = sorted(str(p) for p in rendered.glob("*.yaml"))
    assert len(files) == 4
    versions = [arg for v in ("1.29.0", "1.30.0", "1.31.0", "1.32.0") for arg in ("-k", v)]
    result = subprocess.run([str(TOOLS / "kubernetes-validate"), "--strict", *versions, *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    objects = sum(p.read_text().count("\n---\n") + 1 for p in rendered.glob("*.yaml"))
    for version in ("1.29", "1.30", "1.31", "1.32"):  # every object was checked against every version
        assert result.stdout.count(f"against version {version}\n") == objects, version
    assert result.stdout.count(" passed for resource ") == 4 * objects


def test_the_validator_does_reject_a_bad_manifest(rendered, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((rendered / "dev.yaml").read_text().replace("revisionHistoryLimit", "revisionHistoryLimitt"))
    result = subprocess.run([str(TOOLS / "kubernetes-validate"), "--strict", "-k", "1.31.0", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "revisionHistoryLimitt" in result.stdout + result.stderr


def test_checkov_reports_no_failed_check_and_every_skip_has_a_reason(rendered):
    result = subprocess.run([str(TOOLS / "checkov"), "-d", str(rendered), "--framework", "kubernetes", "--output", "json", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 500
    for skipped in report["results"].get("skipped_checks", []):
        assert len(skipped.get("suppress_comment", "")) > 20, skipped["check_id"]


def test_deployment_is_pinned_hardened_and_probed():
    config = load_environment("prod")
    objects = {o["kind"]: o for o in serving_manifests(config, OUTPUTS, V1) if o["metadata"]["name"] == "serving"}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == V1.image and "@sha256:" in container["image"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert objects["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert objects["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    if config.serving.autoscaling.enabled:
        assert "replicas" not in objects["Deployment"]["spec"]  # the HPA owns it
        assert objects["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"


def test_training_job_targets_the_gpu_pool():
    config = load_environment("dev")
    job = next(o for o in training_manifests(config, OUTPUTS, V1, "train-x", "name: dev\n") if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"workload": "gpu-training"}
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]
    assert job["spec"]["backoffLimit"] >= 0 and job["spec"]["activeDeadlineSeconds"] and job["spec"]["ttlSecondsAfterFinished"]
    assert "s3://platform-dev-artifacts/models/dev/" in pod["containers"][0]["command"]


def test_an_image_not_pinned_by_digest_is_refused():
    with pytest.raises(BadInputError, match="not pinned by digest"):
        Release("registry/serving:latest", "v1")


# ---------------------------------------------------------------- against the emulator


@pytest.fixture(scope="module")
def emulator():
    with EmulatorThread() as thread:
        yield thread


@pytest.fixture
def kube(emulator):
    emulator.reset()
    configuration = client.Configuration()
    configuration.host = emulator.url
    return Kube(client.ApiClient(configuration))


@pytest.fixture
def dev():
    config = load_environment("dev")
    return config.model_copy(update={"workloads": config.workloads.model_copy(update={"rollout_timeout_seconds": 10})})


def _deploy(kube, config, release, timeout=10.0):
    return rollout.deploy(kube, config, OUTPUTS, release, timeout, poll=0.1)


def test_first_apply_creates_everything(kube, dev):
    result = _deploy(kube, dev, V1)
    rendered = serving_manifests(dev, OUTPUTS, V1)
    assert len(result.applied) == len(rendered) and result.pruned == []
    for obj in rendered:
        live = kube.get(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        assert live is not None, obj["kind"]
        assert live["metadata"]["managedFields"][0]["manager"] == "toolkit"
    deployment = kube.get("Deployment", "serving", "ml-platform")
    assert deployment["metadata"]["generation"] == 1 and deployment["status"]["availableReplicas"] == 1
    assert rollout.status(kube, dev)["image"] == V1.image


def test_second_apply_with_a_new_image_bumps_the_generation_and_waits(kube, emulator, dev):
    _deploy(kube, dev, V1)
    seen = []
    delay = emulator.emulator.delay
    # The rollout outlasts the first poll however loaded the machine: applying the ~20 objects took
    # over a second once, under 3 test workers on 2 cores, and the first poll saw it done.
    emulator.call(setattr, emulator.emulator, "delay", 3.0)
    try:
        rollout.deploy(kube, dev, OUTPUTS, V2, 10.0, on_progress=seen.append, poll=0.05)
    finally:
        emulator.call(setattr, emulator.emulator, "delay", delay)
    deployment = kube.get("Deployment", "serving", "ml-platform")
    assert deployment["metadata"]["generation"] == 2
    assert deployment["status"]["observedGeneration"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == V2.image
    assert not seen[0]["done"] and seen[-1]["done"]  # it did wait for the controller
    assert [r.image for r in rollout.read_history(kube, dev)] == [V1.image, V2.image]


def test_reapplying_the_same_release_changes_nothing(kube, dev):
    _deploy(kube, dev, V1)
    _deploy(kube, dev, V1)
    assert kube.get("Deployment", "serving", "ml-platform")["metadata"]["generation"] == 1


@pytest.mark.parametrize("mode, reason", [("crash", "CrashLoopBackOff"), ("pull-error", "ImagePullBackOff"),
                                          ("stall", "Readiness probe failed")])
def test_a_failed_rollout_is_rolled_back_and_the_old_pods_keep_serving(kube, emulator, dev, mode, reason):
    _deploy(kube, dev, V1)
    old_pods = {p["metadata"]["name"] for p in emulator.call(emulator.emulator.objects_of, "pods", "ml-platform")}
    emulator.call(emulator.emulator.behaviour.__setitem__, V2.image, mode)
    with pytest.raises(RolloutError) as failure:
        rollout.deploy(kube, dev, OUTPUTS, V2, timeout=2.0, poll=0.1)
    message = str(failure.value)
    assert reason in message and f"rolled back to {V1.image}" in message
    deployment = kube.get("Deployment", "serving", "ml-platform")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == V1.image
    assert deployment["metadata"]["annotations"]["toolkit.dev/model-version"] == V1.model_version
    assert deployment["status"]["availableReplicas"] >= 1
    deleted = {p["metadata"]["name"] for p in emulator.emulator.deleted_pods}
    assert old_pods and not old_pods & deleted  # the pods of V1 were never taken down
    assert [r.image for r in rollout.read_history(kube, dev)] == [V1.image]


def test_a_failed_first_rollout_says_there_is_nothing_to_roll_back_to(kube, emulator, dev):
    emulator.call(emulator.emulator.behaviour.__setitem__, V1.image, "crash")
    with pytest.raises(RolloutError, match="no previous release"):
        rollout.deploy(kube, dev, OUTPUTS, V1, timeout=1.0, poll=0.1)


def test_rollback_returns_to_the_previous_release(kube, dev):
    _deploy(kube, dev, V1)
    _deploy(kube, dev, V2)
    result = rollout.rollback(kube, dev, OUTPUTS, 10.0, poll=0.1)
    assert result.release == V1
    assert rollout.live_release(kube, dev) == V1
    assert [r.image for r in rollout.read_history(kube, dev)] == [V1.image]
    with pytest.raises(ToolkitError, match="nothing to roll back to"):
        rollout.rollback(kube, dev, OUTPUTS, 10.0, poll=0.1)


def test_prune_removes_a_dropped_object_and_nothing_else(kube, dev):
    scaled = dev.model_copy(update={"serving": dev.serving.model_copy(update={
        "autoscaling": dev.serving.autoscaling.model_copy(update={"enabled": True})})})
    _deploy(kube, scaled, V1)
    assert kube.get("HorizontalPodAutoscaler", "serving", "ml-platform") is not None
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "someone-elses", "namespace": "ml-platform",
                                                                     "labels": {"app": "other"}}, "data": {"a": "b"}}
    kube.apply(foreign)
    result = _deploy(kube, dev, V2)  # autoscaling disabled: the HPA is no longer rendered
    assert result.pruned == ["HorizontalPodAutoscaler/ml-platform/serving"]
    assert kube.get("HorizontalPodAutoscaler", "serving", "ml-platform") is None
    assert kube.get("ConfigMap", "someone-elses", "ml-platform") is not None
    assert kube.get("ConfigMap", rollout.HISTORY, "ml-platform") is not None
    for obj in serving_manifests(dev, OUTPUTS, V2):
        assert kube.get(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")) is not None


def test_dropping_the_last_gpu_pool_prunes_the_device_plugin(kube, dev):
    _deploy(kube, dev, V1)
    assert kube.get("DaemonSet", "nvidia-device-plugin", "kube-system") is not None
    cpu_only = dev.model_copy(update={"node_pools": [p for p in dev.node_pools if not p.gpu]})
    result = _deploy(kube, cpu_only, V1)
    assert sorted(result.pruned) == ["DaemonSet/kube-system/dcgm-exporter", "DaemonSet/kube-system/nvidia-device-plugin",
                                     "NetworkPolicy/kube-system/dcgm-exporter", "NetworkPolicy/kube-system/nvidia-device-plugin",
                                     "Service/kube-system/dcgm-exporter", "ServiceMonitor/kube-system/dcgm-exporter"]
    assert kube.get("DaemonSet", "nvidia-device-plugin", "kube-system") is None


def test_training_job_completion_is_reported_with_its_logs(kube, emulator, dev):
    emulator.call(emulator.emulator.pod_logs.__setitem__, "train-ok-x7k2p", "epoch 1 loss 0.69\nepoch 2 loss 0.52\nsaved model")
    lines = []
    result = jobs.run_training_job(kube, dev, OUTPUTS, V1, "name: dev\n", timeout=10, on_log=lines.append, poll=0.1, name="train-ok")
    assert result["outcome"] == "succeeded"
    assert "[train-ok-x7k2p] saved model" in lines and lines.count("[train-ok-x7k2p] epoch 1 loss 0.69") == 1
    assert kube.get("ConfigMap", "toolkit-environment", "ml-platform")["data"] == {"dev.yaml": "name: dev\n"}


def test_training_job_failure_is_reported(kube, emulator, dev):
    emulator.call(emulator.emulator.job_behaviour.__setitem__, "train-bad", "fail")
    with pytest.raises(jobs.JobFailed, match="BackoffLimitExceeded"):
        jobs.run_training_job(kube, dev, OUTPUTS, V1, "name: dev\n", timeout=10, on_log=lambda line: None, poll=0.1, name="train-bad")


def test_a_job_still_running_at_the_timeout_is_reported(kube, emulator, dev):
    emulator.emulator.delay = 5.0
    try:
        with pytest.raises(jobs.JobFailed, match="still running after"):
            jobs.run_training_job(kube, dev, OUTPUTS, V1, "name: dev\n", timeout=0.5, on_log=lambda line: None, poll=0.1, name="train-slow")
    finally:
        emulator.emulator.delay = 0.2


@pytest.fixture
def signed(local, repo_copy, monkeypatch):
    """dev as the CLI loads it, its registry the test's and its key a fresh pair; AWS calls go to the
    test's moto. V1 to V3 pushed there as signed manifests: what `toolkit deploy` verifies before it
    applies anything (the emulator never pulls an image)."""
    import yaml
    from signed_images import push_signed_manifests

    from toolkit.aws import emulator_environment
    from toolkit.ml.signing import generate_key_pair

    private, public = generate_key_pair()
    (repo_copy / "keys").mkdir(exist_ok=True)
    (repo_copy / "keys" / "dev-test.pub").write_bytes(public)
    env_file = repo_copy / "environments" / "dev.yaml"
    data = yaml.safe_load(env_file.read_text())
    data["registry"]["endpoint"], data["signing"]["public_key"] = local.registry.endpoint, "keys/dev-test.pub"
    data["aws"]["account_id"] = local.aws.account_id  # the registry's login is the one moto gives that account
    env_file.write_text(yaml.safe_dump(data, sort_keys=False))
    for name, value in emulator_environment(local).items():
        monkeypatch.setenv(name, value)
    return push_signed_manifests(load_environment("dev", repo_copy), private, public,
                                 [V1.model_version, V2.model_version, V3.model_version])


def test_cli_deploy_status_and_rollback_through_a_kubeconfig(emulator, kube, signed, run_cli, tmp_path, monkeypatch):
    """The CLI path: --kubeconfig/--context with the kubernetes client's own kubeconfig loader."""
    v1, v2, v3 = signed
    kubeconfig = _kubeconfig(tmp_path, emulator)
    common = ["--env", "dev", "--kubeconfig", kubeconfig, "--context", "emu", "--timeout", "10", "--no-smoke"]
    first = run_cli("deploy", *common, "--image", v1.image, "--model-version", v1.model_version)
    assert first.exit_code == 0, first.output
    assert f"deployed {v1.image}" in first.stdout and "image signed by dev, SBOM attested by dev" in first.stderr
    assert run_cli("deploy", *common, "--image", v2.image, "--model-version", v2.model_version).exit_code == 0
    status = run_cli("status", "--env", "dev", "--kubeconfig", kubeconfig, "--json")
    assert json.loads(status.stdout)["image"] == v2.image
    back = run_cli("rollback", "--env", "dev", "--kubeconfig", kubeconfig, "--timeout", "10")
    assert back.exit_code == 0 and f"rolled back to {v1.image}" in back.stdout
    emulator.call(emulator.emulator.behaviour.__setitem__, v3.image, "crash")
    failed = run_cli("deploy", *common[:-3], "--timeout", "2", "--no-smoke", "--image", v3.image)
    assert failed.exit_code == 1 and "CrashLoopBackOff" in failed.stderr and "rolled back" in failed.stderr
    unsigned = v3.image.rpartition("@")[0] + "@sha256:" + "4" * 64  # never pushed: nothing to verify, nothing applied
    refused = run_cli("deploy", *common, "--image", unsigned, "--model-version", "v4")
    assert refused.exit_code == 2 and "it has no signature" in refused.stderr
    assert json.loads(run_cli("status", "--env", "dev", "--kubeconfig", kubeconfig, "--json").stdout)["image"] == v1.image
    # The history is a ConfigMap the deploy role writes: one naming an unsigned image as the previous
    # release does not get it rolled out.
    rollout.write_history(kube, load_environment("dev"), [Release(unsigned, "v4"), v1])
    tampered = run_cli("rollback", "--env", "dev", "--kubeconfig", kubeconfig, "--timeout", "10")
    assert tampered.exit_code == 2 and f"refusing {unsigned} in dev: it has no signature" in tampered.stderr
    assert json.loads(run_cli("status", "--env", "dev", "--kubeconfig", kubeconfig, "--json").stdout)["image"] == v1.image


@pytest.fixture
def served_model(model_dir):
    """`toolkit serve` of a trained model on a port of its own: the backend behind the Service."""
    port = free_port()
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(model_dir), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/readyz", process=server)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def test_cli_deploy_smoke_tests_through_the_service_proxy(emulator, kube, signed, run_cli, tmp_path, monkeypatch, served_model):
    """`deploy` ends with a real /v1/predict through the API server's service proxy to the Service."""
    V1, V2, _ = signed  # noqa: N806  (signed twins of the module's V1 and V2)
    kubeconfig = _kubeconfig(tmp_path, emulator)
    common = ["--env", "dev", "--kubeconfig", kubeconfig, "--context", "emu", "--timeout", "10"]
    emulator.call(emulator.emulator.service_backends.__setitem__, ("ml-platform", "serving"), served_model)
    result = run_cli("deploy", *common, "--image", V1.image, "--model-version", V1.model_version)
    assert result.exit_code == 0, result.output
    served = json.loads(urllib.request.urlopen(served_model + "/v1/model").read())["model_version"]
    assert re.search(rf"smoke    service/serving/v1/predict → label [01]  p\(0\)=0\.\d{{3}}  p\(1\)=0\.\d{{3}}  \(model {served}\)", result.stdout)
    answer = json.loads(run_cli("smoke", "--env", "dev", "--kubeconfig", kubeconfig, "--json").stdout)
    assert answer["where"] == "service/serving" and set(answer["prediction"]["probabilities"]) == {"0", "1"}

    # No backend answers behind the Service: the smoke test fails with the API server's reason,
    # and the message says the release is deployed and how to roll back.
    emulator.call(emulator.emulator.service_backends.clear)
    failed = run_cli("deploy", *common, "--image", V2.image, "--model-version", V2.model_version)
    assert failed.exit_code == 1
    assert "smoke test against service/serving failed" in failed.stderr and "error trying to reach service" in failed.stderr
    assert "`toolkit rollback --env dev` returns to the previous one" in failed.stderr


def test_the_service_proxy_needs_a_ready_pod(emulator, kube, dev, served_model):
    emulator.call(emulator.emulator.service_backends.__setitem__, ("ml-platform", "serving"), served_model)
    proxy = "/api/v1/namespaces/ml-platform/services/serving:http/proxy/v1/model"
    with pytest.raises(ToolkitError, match='services "serving" not found'):
        kube.proxy_json(proxy)
    emulator.call(emulator.emulator.behaviour.__setitem__, V1.image, "crash")
    with pytest.raises(RolloutError, match="CrashLoopBackOff.*no previous release"):
        _deploy(kube, dev, V1, timeout=1.0)
    with pytest.raises(ToolkitError, match='no endpoints available for service "serving:http"'):
        kube.proxy_json(proxy)


def _kubeconfig(tmp_path, emulator):
    return write_kubeconfig(tmp_path, emulator.url)


def _point_local_at(repo_copy, local):
    """The checkout's local.yaml with the test's moto and registry (`local`): what the CLI loads."""
    env_file = repo_copy / "environments" / "local.yaml"
    env_file.write_text(env_file.read_text().replace("http://127.0.0.1:4566", local.aws.endpoint_url)
                        .replace("endpoint: 127.0.0.1:5000", f"endpoint: {local.registry.endpoint}"))
    return env_file


def test_cli_train_remote_uploads_the_dataset_and_streams_the_job(emulator, kube, local, repo_copy, run_cli, tmp_path, monkeypatch):
    """`toolkit train --env local --remote --kubeconfig …`: dataset to the artifact store (moto S3), Job on the cluster,
    in a training image whose signature is verified first (an unsigned one starts no Job)."""
    from signed_images import signed_training_release

    from toolkit.aws import client as aws_client

    _point_local_at(repo_copy, local)
    bucket = load_environment("local").artifact_store.bucket  # a kubeconfig cluster: the bucket the environment file names
    aws_client("s3", local).create_bucket(Bucket=bucket)
    records = ReleaseRecords(ProjectPaths(repo_copy), "local")
    trainer = signed_training_release(load_environment("local"), ProjectPaths(repo_copy))
    records.save_push(V1, training_image=V2.image)  # V2: never pushed, so not signed
    kubeconfig = _kubeconfig(tmp_path, emulator)
    key = local_key_files(ProjectPaths(repo_copy))[0]  # mounted in an emulated environment's pod

    def run_job(job: dict) -> tuple[bool, str, str]:  # the pod really runs the Job's `toolkit train`
        environments = kube.get("ConfigMap", "toolkit-environment", job["metadata"]["namespace"])["data"]
        return run_toolkit_job(job, environments, tmp_path / "pod", {PRIVATE_KEY_FILE_ENV: str(key)})

    emulator.emulator.job_runner = run_job
    monkeypatch.setattr("toolkit.workloads.jobs.job_name", lambda env: f"train-{env}")
    refused = run_cli("train", "--env", "local", "--remote", "--kubeconfig", kubeconfig, "--timeout", "120")
    assert refused.exit_code == 2 and f"refusing {V2.image} in local" in refused.stderr
    assert kube.get("Job", "train-local", "ml-platform") is None
    records.save_push(V1, training_image=trainer.image)
    result = run_cli("train", "--env", "local", "--remote", "--kubeconfig", kubeconfig, "--timeout", "120")
    assert result.exit_code == 0, result.output
    assert "training image signed by local, SBOM attested by local" in result.stderr
    assert f"uploaded heart-cleveland.csv to s3://{bucket}/datasets/heart-cleveland.csv" in result.stderr
    # the pod's log, streamed, and its result from the termination message: where it trained, what it uploaded
    assert "[train-local-x7k2p] training on the CPU: CuPy is not installed" in result.stderr
    assert re.search(rf"training Job train-local completed in [\d.]+ s on the CPU: CuPy is not installed .*; "
                     rf"artifact s3://{bucket}/models/local/\d{{8}}-\d{{6}}-[0-9a-f]{{8}}/", result.stdout), result.stdout
    job = kube.get("Job", "train-local", "ml-platform")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == trainer.image  # the training image
    keys = aws_client("s3", local).list_objects_v2(Bucket=bucket)["Contents"]
    assert [k["Key"] for k in keys if k["Key"].startswith("datasets/")] == ["datasets/heart-cleveland.csv"]  # (a shared moto)


def test_train_remote_on_the_local_environment_explains_there_is_no_cluster(run_cli):
    result = run_cli("train", "--env", "local", "--remote")
    assert result.exit_code == 2 and "has no Kubernetes cluster" in result.stderr


# ---------------------------------------------------------------- bugs the strict emulator found (issue 15)


def _autoscaled(config, enabled: bool, replicas: int = 3):
    serving = config.serving.model_copy(update={"replicas": replicas, "autoscaling": config.serving.autoscaling.model_copy(
        update={"enabled": enabled, "min_replicas": 2, "max_replicas": 6})})
    return config.model_copy(update={"serving": serving})


def _replicas(kube) -> int:
    return kube.get("Deployment", "serving", "ml-platform")["spec"]["replicas"]


def test_enabling_autoscaling_hands_replicas_over_without_a_scale_down(kube, emulator, dev):
    """The applied configuration drops spec.replicas once an HPA owns them. Done naively, the toolkit's
    field manager gives the field up, the API server resets it to 1 and 3 serving pods become 1."""
    _deploy(kube, _autoscaled(dev, enabled=False, replicas=3), V1)
    assert _replicas(kube) == 3
    _deploy(kube, _autoscaled(dev, enabled=True), V1)
    assert _replicas(kube) == 3  # not reset to 1
    assert emulator.emulator.deleted_pods == []  # no serving pod was taken down
    owners = {e["manager"] for e in kube.get("Deployment", "serving", "ml-platform")["metadata"]["managedFields"]
              if "f:replicas" in e["fieldsV1"].get("f:spec", {})}
    assert owners == {rollout.HANDOVER_MANAGER}
    # The HPA scales; later releases leave its number alone.
    emulator.call(emulator.emulator.scale, "ml-platform", "serving", 5)
    _deploy(kube, _autoscaled(dev, enabled=True), V2)
    assert _replicas(kube) == 5


def test_cli_deploy_through_a_kubeconfig_needs_no_terraform_outputs(emulator, kube, dev, signed, run_cli, tmp_path, monkeypatch):
    """A kubeconfig cluster needs nothing from the stack outputs (no AWS stack). IRSA role
    annotations already on the cluster's ServiceAccounts are kept."""
    V1, V2, _ = signed  # noqa: N806  (signed twins of the module's V1 and V2)
    def no_terraform(*args, **kwargs):
        raise AssertionError("a kubeconfig cluster must not need the Terraform outputs")

    monkeypatch.setattr("toolkit.terraform.outputs.stack_outputs", no_terraform)
    monkeypatch.setattr("toolkit.workloads.target.stack_outputs", no_terraform)
    _deploy(kube, dev, V1)  # deployed before with the outputs: the ServiceAccounts carry their IRSA roles
    kubeconfig = _kubeconfig(tmp_path, emulator)
    result = run_cli("deploy", "--env", "dev", "--kubeconfig", kubeconfig, "--timeout", "10", "--no-smoke",
                     "--image", V2.image, "--model-version", V2.model_version)
    assert result.exit_code == 0, result.output
    for name, role in (("serving", OUTPUTS["serving_role_arn"]), ("training", OUTPUTS["training_role_arn"])):
        assert kube.get("ServiceAccount", name, "ml-platform")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    emulator.reset()  # a cluster that never had the toolkit: no roles to keep
    result = run_cli("deploy", "--env", "dev", "--kubeconfig", kubeconfig, "--timeout", "10", "--no-smoke", "--image", V1.image)
    assert result.exit_code == 0, result.output
    assert "annotations" not in kube.get("ServiceAccount", "serving", "ml-platform")["metadata"] or \
        "eks.amazonaws.com/role-arn" not in kube.get("ServiceAccount", "serving", "ml-platform")["metadata"]["annotations"]


def test_train_remote_creates_the_namespace_and_service_account_it_needs(emulator, kube, dev):
    """On a fresh cluster (nothing deployed), the training Job's namespace and ServiceAccount exist."""
    jobs.run_training_job(kube, dev, OUTPUTS, V1, "name: dev\n", timeout=10, on_log=lambda line: None, poll=0.1, name="train-fresh")
    assert kube.get("Namespace", "ml-platform") is not None
    account = kube.get("ServiceAccount", "training", "ml-platform")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == OUTPUTS["training_role_arn"]
    assert kube.get("Job", "train-fresh", "ml-platform")["spec"]["template"]["spec"]["serviceAccountName"] == "training"


def test_the_real_cluster_test_passes_against_the_emulator(emulator, kube, served_model, tmp_path):
    """tests/test_real_cluster.py, run as it would be against a cluster (its own pytest, its own
    namespace), here against the emulator with a real `toolkit serve` behind the service proxy."""
    image = "registry.example/serving@sha256:" + "7" * 64
    emulator.call(emulator.emulator.service_backends.__setitem__, ("*", "serving"), served_model)
    emulator.call(emulator.emulator.behaviour.__setitem__, "registry.example/serving@sha256:" + "0" * 64, "pull-error")
    env = {**os.environ, "TOOLKIT_TEST_KUBECONFIG": str(_kubeconfig(tmp_path, emulator)), "TOOLKIT_TEST_IMAGE": image,
           "TOOLKIT_TEST_TRAINING_IMAGE": "registry.example/training@sha256:" + "8" * 64}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "real_cluster",
                             str(REPO / "tests" / "test_real_cluster.py")], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout


def test_a_deploy_leaves_an_up_to_date_namespace_alone_and_fixes_a_changed_one(emulator, dev):
    """The CI deploy role may edit inside the namespace only (EKS access entry), never the
    cluster-scoped Namespace: once it is there as rendered, a deploy does not apply it."""

    class RecordingKube(Kube):
        def __init__(self, api):
            super().__init__(api)
            self.applied = []

        def apply(self, obj, *args, **kwargs):
            self.applied.append(obj["kind"])
            return super().apply(obj, *args, **kwargs)

    emulator.reset()
    configuration = client.Configuration()
    configuration.host = emulator.url
    kube = RecordingKube(client.ApiClient(configuration))
    _deploy(kube, dev, V1)
    assert "Namespace" in kube.applied
    kube.applied.clear()
    _deploy(kube, dev, V2)
    assert "Namespace" not in kube.applied and "Deployment" in kube.applied
    # An admin relaxed the Pod Security label: the next deploy puts it back (an admin's deploy can).
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml-platform", "labels": {
        "pod-security.kubernetes.io/enforce": "baseline"}}}, manager="admin")
    kube.applied.clear()
    _deploy(kube, dev, V1)
    assert "Namespace" in kube.applied
    assert kube.get("Namespace", "ml-platform")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_jobs_on_a_gpu_pool_run_the_cuda_training_image_and_local_builds_none(run_cli):
    """`toolkit build` makes training-gpu-<sha> where the Jobs run on a GPU pool of a real cloud
    (the local environment's pool is emulated: its build stays as it was), with CuPy and CUDA pinned."""
    from toolkit.delivery.publish import jobs_training_target
    from toolkit.images.wheelhouse import GPU_TRAINING_REQUIREMENTS, _pinned, _pins

    targets = {env: jobs_training_target(config) for env, config in load_all_environments().items()}
    assert targets == {"local": "training", "dev": "training-gpu", "staging": "training-gpu", "prod": "training-gpu"}
    assert _pinned(GPU_TRAINING_REQUIREMENTS, _pins(REPO)).split() == ["cupy-cuda12x==14.2.0", "cuda-toolkit[cublas,cudart,nvrtc]==12.9.2.0"]
    # Before a push, render says which image the Job will run.
    result = run_cli("render", "--env", "prod", "--image", V1.image)
    assert "it runs training-gpu-<sha> by digest after `toolkit build` and `toolkit push`" in result.stderr


def test_sweep_remote_runs_an_indexed_job_survives_a_failing_index_and_ranks_as_the_local_run(
        emulator, kube, local, repo_copy, run_cli, tmp_path, monkeypatch):
    """`toolkit sweep --remote` against the emulator, whose Indexed Job pods really run `toolkit
    sweep-item` (results to moto S3): one index killed leaves its setting unranked and the rest ranked as
    the local run ranks them; the same sweep again runs only that index and ranks all as locally.
    (2 settings × 2 folds: each pod is a process of its own.)"""
    import yaml
    from signed_images import signed_training_release

    from toolkit.aws import client as aws_client

    env_file = _point_local_at(repo_copy, local)
    document = yaml.safe_load(env_file.read_text())
    document["training"].update({"epochs": 40, "patience": 5, "sweep": {
        "method": "grid", "space": {"hidden_layers": [[8], [16]]}, "folds": 2, "metric": "roc_auc",
        "parallelism": 2, "backoff_limit_per_index": 0, "max_failed_indexes": 1, "gpu": False}})
    env_file.write_text(yaml.safe_dump(document, sort_keys=False))
    bucket = load_environment("local").artifact_store.bucket
    aws_client("s3", local).create_bucket(Bucket=bucket)
    trainer = signed_training_release(load_environment("local"), ProjectPaths(repo_copy))
    ReleaseRecords(ProjectPaths(repo_copy), "local").save_push(V1, training_image=trainer.image)
    kubeconfig = _kubeconfig(tmp_path, emulator)
    here = json.loads(run_cli("sweep", "--env", "local", "--parallel", "2", "--no-train", "--json").stdout)

    killed = {1}

    def run_job(job: dict) -> tuple[bool, str, str]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        index = int({e["name"]: e["value"] for e in container["env"]}["JOB_COMPLETION_INDEX"])
        if index in killed:
            return False, "OOMKilled", ""
        environments = kube.get("ConfigMap", "toolkit-environment", job["metadata"]["namespace"])["data"]
        return run_toolkit_job(job, environments, tmp_path / f"pod-{index}", {})

    emulator.emulator.job_runner = run_job
    remote = ["sweep", "--env", "local", "--remote", "--kubeconfig", kubeconfig, "--timeout", "120", "--no-train", "--json"]
    first = run_cli(*remote)
    assert first.exit_code == 0, first.output
    partial = json.loads(first.stdout)
    assert partial["sweep"] == here["sweep"] and partial["failed_items"] == [1] and partial["unranked"] == [0]
    assert partial["results"] == f"s3://{bucket}/sweeps/local/{here['sweep']}/"
    without = [{k: v for k, v in row.items() if k != "rank"} for row in here["leaderboard"] if row["trial"] != 0]
    assert [{k: v for k, v in row.items() if k != "rank"} for row in partial["leaderboard"]] == without
    job = next(j for j in kube.list("Job", "ml-platform") if j["metadata"]["name"].startswith("sweep-local-"))
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 4 and job["spec"]["parallelism"] == 2
    assert emulator.emulator.max_running[job["metadata"]["name"]] == 2

    killed.clear()
    time.sleep(1.1)  # a new Job name (they carry the second)
    again = json.loads(run_cli(*remote).stdout)
    assert again["leaderboard"] == here["leaderboard"] and again["unranked"] == [] and again["failed_items"] == []
    logs = "\n".join(emulator.emulator.pod_logs.values())
    assert logs.count("done before, skipped") >= 3  # the second Job ran index 1 only
