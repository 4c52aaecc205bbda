"""The emulator is as strict as the API server where the toolkit's correctness depends on it: each test
fails against a permissive emulator (the one before issue 15), with the real `kubernetes` client."""

from __future__ import annotations

import pytest
from kubernetes import client

from kube_emulator import EmulatorThread
from toolkit.workloads.kube import Kube, KubeError

NS = "apps"


@pytest.fixture(scope="module")
def emulator():
    with EmulatorThread() as thread:
        yield thread


@pytest.fixture
def kube(emulator):
    emulator.reset()
    configuration = client.Configuration()
    configuration.host = emulator.url
    kube = Kube(client.ApiClient(configuration))
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return kube


def _deployment(name="web", labels=None, selector=None, image="registry/web@sha256:" + "a" * 64, replicas=2, strategy=None):
    labels = labels or {"app": name}
    spec = {"replicas": replicas, "selector": {"matchLabels": selector or {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main", "image": image}]}}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def _config_map(data: dict, name="settings") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS}, "data": data}


def test_a_namespaced_object_needs_its_namespace(kube):
    missing = {**_config_map({"a": "1"}), "metadata": {"name": "x", "namespace": "nowhere"}}
    with pytest.raises(KubeError, match='HTTP 404: namespaces "nowhere" not found') as refused:
        kube.apply(missing)
    assert refused.value.status == 404
    kube.apply({**missing, "metadata": {"name": "x", "namespace": "kube-system"}})  # system namespaces exist


def test_a_deployment_selector_is_immutable(kube):
    kube.apply(_deployment())
    changed = _deployment(labels={"app": "web", "tier": "front"}, selector={"app": "web", "tier": "front"})
    with pytest.raises(KubeError, match=r'HTTP 422: Deployment.apps "web" is invalid: spec.selector: .*field is immutable'):
        kube.apply(changed)


def test_a_selector_must_match_the_template_labels(kube):
    with pytest.raises(KubeError, match=r"HTTP 422: .*spec.template.metadata.labels: .*`selector` does not match template `labels`"):
        kube.apply(_deployment(labels={"app": "other"}))


def test_a_job_template_is_immutable(kube):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": NS},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x@sha256:" + "b" * 64}]}}}}
    kube.apply(job)
    live = kube.get("Job", "once", NS)
    assert "batch.kubernetes.io/controller-uid" in live["spec"]["selector"]["matchLabels"]  # the server's selector
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "x@sha256:" + "c" * 64
    with pytest.raises(KubeError, match=r'HTTP 422: Job.batch "once" is invalid: spec.template: .*field is immutable'):
        kube.apply(job)


def test_a_service_cluster_ip_may_not_change(kube):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
    assigned = kube.apply(service)["spec"]["clusterIP"]
    assert kube.apply(service)["spec"]["clusterIP"] == assigned  # not applied, so kept
    service["spec"]["clusterIP"] = "10.0.0.99"
    with pytest.raises(KubeError, match=r"HTTP 422: .*spec.clusterIPs\[0\]: .*may not change once set"):
        kube.apply(service)


def test_unknown_fields_are_refused_under_strict_field_validation(kube):
    """The toolkit asks for fieldValidation=Strict: a misspelled field is an error, not silently dropped."""
    typo = _deployment()
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(KubeError, match=r"HTTP 400: .*\.spec\.template\.spec\.containers\[0\]\.imagePullPolicyy: field not declared in schema"):
        kube.apply(typo)


def test_apply_removes_the_fields_a_manager_stops_applying_unless_another_owns_them(kube):
    kube.apply(_config_map({"a": "1", "b": "2", "c": "3"}))
    kube.apply(_config_map({"a": "1", "b": "2"}))
    assert kube.get("ConfigMap", "settings", NS)["data"] == {"a": "1", "b": "2"}  # c: no longer applied, owned by no one
    kube.apply(_config_map({"b": "2"}), manager="someone-else")
    kube.apply(_config_map({"a": "1"}))
    assert kube.get("ConfigMap", "settings", NS)["data"] == {"a": "1", "b": "2"}  # b: someone-else owns it too
    owners = {e["manager"]: e["fieldsV1"] for e in kube.get("ConfigMap", "settings", NS)["metadata"]["managedFields"]}
    assert owners == {"toolkit": {"f:data": {"f:a": {}}}, "someone-else": {"f:data": {"f:b": {}}}}


def test_a_conflicting_apply_is_refused_unless_forced(kube):
    kube.apply(_config_map({"a": "1"}))
    with pytest.raises(KubeError, match=r'HTTP 409: Apply failed with 1 conflict\(s\): conflict with "toolkit": .data.a'):
        kube.apply(_config_map({"a": "2"}), manager="someone-else", force=False)
    kube.apply(_config_map({"a": "2"}), manager="someone-else", force=True)
    assert [e["manager"] for e in kube.get("ConfigMap", "settings", NS)["metadata"]["managedFields"]] == ["someone-else"]


def _fail_rollout(kube, emulator, strategy):
    kube.apply(_deployment(strategy=strategy))
    _wait(kube, lambda d: d.get("status", {}).get("availableReplicas") == 2)
    old = {p["metadata"]["name"] for p in emulator.call(emulator.emulator.objects_of, "pods", NS)}
    broken = "registry/web@sha256:" + "f" * 64
    emulator.call(emulator.emulator.behaviour.__setitem__, broken, "crash")
    kube.apply(_deployment(image=broken, strategy=strategy))
    _wait(kube, lambda d: d.get("status", {}).get("observedGeneration") == 2)
    return old & {p["metadata"]["name"] for p in emulator.emulator.deleted_pods}


def _wait(kube, done, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(kube.get("Deployment", "web", NS)):
            return
        time.sleep(0.05)
    raise AssertionError("the simulated controller did not get there")


@pytest.mark.parametrize("strategy, taken_down", [
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}, 0),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}, 1),
    ({"type": "Recreate"}, 2),
])
def test_a_failing_rollout_takes_down_what_the_strategy_allows(kube, emulator, strategy, taken_down):
    assert len(_fail_rollout(kube, emulator, strategy)) == taken_down


# ---------------------------------------------------------------- Indexed Jobs (issue 29)


def _indexed_job(name: str, completions: int, parallelism: int, per_index: int = 0, max_failed: int | None = None) -> dict:
    spec = {"completionMode": "Indexed", "completions": completions, "parallelism": parallelism,
            "backoffLimitPerIndex": per_index,
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "registry/t@sha256:" + "b" * 64}]}}}
    if max_failed is not None:
        spec["maxFailedIndexes"] = max_failed
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def _run_indexed(kube, emulator, job: dict, fails) -> tuple[dict, list[int]]:
    """Apply `job` with a runner that records each pod's JOB_COMPLETION_INDEX and fails where
    `fails(index, attempt)`; wait for a final condition."""
    import threading
    import time

    seen, attempts, lock = [], {}, threading.Lock()

    def runner(pod_job: dict):
        env = {e["name"]: e["value"] for e in pod_job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        index = int(env["JOB_COMPLETION_INDEX"])
        with lock:
            seen.append(index)
            attempts[index] = attempts.get(index, 0) + 1
            attempt = attempts[index]
        time.sleep(0.05)
        return not fails(index, attempt), f"index {index}", ""

    emulator.emulator.job_runner = runner
    kube.apply(job)
    name = job["metadata"]["name"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        live = kube.get("Job", name, NS)
        if any(c["type"] in ("Complete", "Failed") for c in live.get("status", {}).get("conditions", [])):
            return live, seen
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish: {live.get('status')}")


def test_an_indexed_job_gives_each_pod_its_index_and_runs_at_most_parallelism_at_once(kube, emulator):
    live, seen = _run_indexed(kube, emulator, _indexed_job("ix", 5, 2), lambda index, attempt: False)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert emulator.emulator.max_running["ix"] == 2  # never more than parallelism, and it did run two at once
    pods = kube.list("Pod", NS, label_selector="job-name=ix")
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1", "2", "3", "4"]
    assert all(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] ==
               p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    status = live["status"]
    assert status["completedIndexes"] == "0-4" and status["succeeded"] == 5 and "failedIndexes" not in status
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"] and status["completionTime"]


def test_a_failing_index_is_retried_on_its_own_up_to_its_backoff_limit(kube, emulator):
    live, seen = _run_indexed(kube, emulator, _indexed_job("retry", 4, 2, per_index=1), lambda index, attempt: index == 2 and attempt == 1)
    assert sorted(seen) == [0, 1, 2, 2, 3]  # index 2 ran twice, no other index again
    status = live["status"]
    assert status["completedIndexes"] == "0-3" and status["failed"] == 1 and status["succeeded"] == 4
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    retried = [p for p in kube.list("Pod", NS, label_selector="job-name=retry")
               if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "2"]
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] for p in retried) == ["0", "1"]


def test_failed_indexes_within_the_maximum_let_the_others_finish_and_fail_the_job_at_the_end(kube, emulator):
    live, seen = _run_indexed(kube, emulator, _indexed_job("some", 5, 2, per_index=0, max_failed=1), lambda index, attempt: index == 1)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    status = live["status"]
    assert status["completedIndexes"] == "0,2-4" and status["failedIndexes"] == "1"
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [("FailureTarget", "FailedIndexes"), ("Failed", "FailedIndexes")]
    assert "completionTime" not in status


def test_more_failed_indexes_than_allowed_stop_the_job(kube, emulator):
    live, seen = _run_indexed(kube, emulator, _indexed_job("many", 6, 1, per_index=0, max_failed=1), lambda index, attempt: index in (0, 1))
    assert seen == [0, 1]  # one at a time: the second failure stops it before index 2 starts
    status = live["status"]
    assert status["failedIndexes"] == "0-1" and "completedIndexes" not in status
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [("FailureTarget", "MaxFailedIndexesExceeded"),
                                                                       ("Failed", "MaxFailedIndexesExceeded")]
