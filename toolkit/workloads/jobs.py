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
