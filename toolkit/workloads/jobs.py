"""GPU training Jobs: submit, stream the pod's log, report completion or failure."""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable

from toolkit.config import EnvironmentConfig
from toolkit.errors import ToolkitError
from toolkit.images.release import Release
from toolkit.workloads.job_result import read_job_result
from toolkit.workloads.kube import Kube
from toolkit.workloads.manifests import training_manifests


class JobFailed(ToolkitError):
    pass


def job_name(env: str, now: dt.datetime | None = None, kind: str = "train") -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{kind}-{env}-{now:%Y%m%d-%H%M%S}"


def job_outcome(job: dict) -> tuple[str | None, str]:
    """('succeeded' | 'failed' | None while running, message) from the Job's conditions."""
    for condition in job.get("status", {}).get("conditions", []):
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded", "completed"
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "failed", f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".rstrip(": ")
    return None, f"active {job.get('status', {}).get('active', 0)}"


def run_training_job(kube: Kube, config: EnvironmentConfig, outputs: dict, release: Release, environment_yaml: str, timeout: float,
                     on_log: Callable[[str], None], poll: float = 2.0, name: str | None = None,
                     command: list[str] | None = None) -> dict:
    """Apply the Job (and its environment ConfigMap), stream logs, wait; JobFailed on failure or timeout.
    `command`: what the Job runs instead of `toolkit train` (manifests.training_job)."""
    name = name or job_name(config.name)
    namespace = config.workloads.namespace
    for obj in training_manifests(config, outputs, release, name, environment_yaml, command):
        kube.apply(obj)
    printed: dict[str, int] = {}
    start = time.monotonic()
    while True:
        for pod in kube.list("Pod", namespace, label_selector=f"job-name={name}"):
            pod_name = pod["metadata"]["name"]
            if pod.get("status", {}).get("phase") == "Pending":
                continue
            text = kube.pod_log(namespace, pod_name)
            for line in text[printed.get(pod_name, 0):].splitlines():
                on_log(f"[{pod_name}] {line}")
            printed[pod_name] = len(text)
        job = kube.get("Job", name, namespace)
        if job is None:
            raise JobFailed(f"Job {namespace}/{name} disappeared while running.")
        outcome, message = job_outcome(job)
        elapsed = time.monotonic() - start
        if outcome == "succeeded":
            pods = kube.list("Pod", namespace, label_selector=f"job-name={name}")
            return {"job": name, "namespace": namespace, "outcome": outcome, "seconds": round(elapsed, 1),
                    "result": read_job_result(pods)}
        if outcome == "failed":
            raise JobFailed(f"training Job {namespace}/{name} failed: {message}")
        if elapsed >= timeout:
            raise JobFailed(f"training Job {namespace}/{name} still running after {timeout:.0f} s ({message}); it keeps "
                            f"running until its active deadline ({config.workloads.remote_training.active_deadline_seconds} s).")
        time.sleep(poll)


def indexes(text: str | None) -> list[int]:
    """The indexes of a Job status's `completedIndexes`/`failedIndexes` ("1,3-5,7")."""
    found: list[int] = []
    for part in (text or "").split(","):
        if part:
            first, _, last = part.partition("-")
            found.extend(range(int(first), int(last or first) + 1))
    return found


def run_sweep_job(kube: Kube, config: EnvironmentConfig, outputs: dict, release: Release, environment_yaml: str, sweep_id: str,
                  timeout: float, on_status: Callable[[dict], None], poll: float = 2.0, name: str | None = None) -> dict:
    """Apply a sweep's Indexed Job (manifests.sweep_job) and wait until every index has finished.
    Returns the Job's name, the seconds and its completed and failed indexes: failed indexes within
    `maxFailedIndexes` end the Job Failed (reason FailedIndexes) and are returned, not raised, so the
    settings that did finish still rank; JobFailed when it stopped early (more failed indexes than
    allowed, its deadline) or on timeout."""
    from toolkit.workloads.manifests import sweep_job

    name = name or job_name(config.name, kind="sweep")
    namespace = config.workloads.namespace
    job = sweep_job(config, outputs, release, name, sweep_id)
    for obj in training_manifests(config, outputs, release, name, environment_yaml, job=job):
        kube.apply(obj)
    start = time.monotonic()
    while True:
        job = kube.get("Job", name, namespace)
        if job is None:
            raise JobFailed(f"Job {namespace}/{name} disappeared while running.")
        status = job.get("status", {})
        on_status(status)
        finished = {c.get("type"): c for c in status.get("conditions", []) if c.get("status") == "True"}
        elapsed = round(time.monotonic() - start, 1)
        result = {"job": name, "namespace": namespace, "seconds": elapsed,
                  "completed": indexes(status.get("completedIndexes")), "failed": indexes(status.get("failedIndexes"))}
        if "Complete" in finished:
            return result
        if "Failed" in finished:
            reason = finished["Failed"].get("reason", "Failed")
            if reason == "FailedIndexes":
                return result
            raise JobFailed(f"sweep Job {namespace}/{name} stopped: {reason}: {finished['Failed'].get('message', '')} "
                            f"(completed {len(result['completed'])}, failed indexes {result['failed']}); the results so far "
                            "are kept: running the sweep again resumes it.")
        if elapsed >= timeout:
            raise JobFailed(f"sweep Job {namespace}/{name} still running after {timeout:.0f} s; it keeps running until its "
                            f"active deadline, and `toolkit sweep --remote` run again picks up its results.")
        time.sleep(poll)
