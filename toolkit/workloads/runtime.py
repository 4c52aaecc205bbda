"""Where an environment's workloads run: one interface, two implementations.

    KubernetesRuntime   an environment's cluster (EKS from the stack outputs, or any cluster
                        through a kubeconfig context): server-side apply, rollout wait and
                        rollback, the service-proxy smoke test, training Jobs.
    DockerRuntime       an emulated environment (its EKS has no API server): the serving image on
                        the local Docker engine, a candidate container swapped in once ready, a
                        smoke test straight to its port; no cluster for Jobs.

Which one an environment gets is decided once (`toolkit.delivery.runtime.open_runtime`); nothing
outside this module and its two implementations asks which one it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

from toolkit.context import Context
from toolkit.errors import BadInputError
from toolkit.images.release import Release
from toolkit.lines import Lines, silent
from toolkit.workloads.kube import Kube

Progress = Callable[[dict], None]
Verify = Callable[[Release], object]  # raises to refuse a release (delivery.deploy.require_deployable)


class Runtime(ABC):
    """The operations every command and the feedback loop need from where the environment runs.

    `deploy` and `rollback` answer a dict for `--json` (release, model_version, seconds, and what the
    runtime adds); a failed rollout raises RolloutError with the previous release still serving."""

    name: str

    def __init__(self, ctx: Context, outputs: dict, prepare: Callable[[Lines], None] = lambda on_line: None) -> None:
        self.ctx, self.outputs, self._prepare = ctx, outputs, prepare

    def prepare(self, on_line: Lines) -> None:
        """Start what the environment needs and may not be running (an emulated one's local services)."""
        self._prepare(on_line)

    @abstractmethod
    def deploy(self, release: Release, timeout: float, on_progress: Progress, on_line: Lines) -> dict: ...

    @abstractmethod
    def rollback(self, timeout: float, on_progress: Progress, on_line: Lines, verify: Verify) -> dict:
        """Re-deploy the release before the live one, once `verify` accepted it (it raises to refuse)."""

    @abstractmethod
    def status(self) -> dict:
        """What `toolkit status --json` shows: `deployed`, and when it is, image, model_version, history."""

    @abstractmethod
    def status_lines(self, info: dict) -> list[str]:
        """The runtime's own lines of `toolkit status` for `info` (from `status()`, deployed)."""

    @abstractmethod
    def live_release(self) -> Release | None:
        """The release serving now (None: nothing deployed)."""

    @abstractmethod
    def smoke_test(self) -> dict:
        """A real /v1/predict on the live server (workloads.smoke)."""

    @abstractmethod
    def require_cluster(self, instead: str) -> Kube:
        """The cluster to run Jobs on; BadInputError saying `instead` (what to do) when there is none."""

    def run_job(self, release: Release, environment_yaml: str, timeout: float, on_log: Lines, *, instead: str,
                name: str | None = None, command: list[str] | None = None) -> dict:
        """Run a training Job (workloads.jobs) in `release`, logs streamed; `instead`: see require_cluster."""
        from toolkit.workloads.jobs import run_training_job

        kube = self.require_cluster(instead)
        return run_training_job(kube, self.ctx.config, self.outputs, release, environment_yaml, timeout, on_log=on_log,
                                name=name, command=command)

    @property
    def bucket(self) -> str:
        """The artifact store's bucket, as the stack created it (else as the environment file names it)."""
        from toolkit.paths import Output

        return self.outputs.get(Output.BUCKET) or self.ctx.config.artifact_store.bucket


class KubernetesRuntime(Runtime):
    name = "kubernetes"

    def __init__(self, ctx: Context, kube: Kube, outputs: dict, prepare: Callable[[Lines], None] = lambda on_line: None,
                 poll: float = 1.0) -> None:
        super().__init__(ctx, outputs, prepare)
        self.kube, self.poll = kube, poll

    def _public_keys(self) -> str:
        from toolkit.signing_keys import bundle, trusted_keys

        return bundle(trusted_keys(self.ctx))

    def deploy(self, release: Release, timeout: float, on_progress: Progress = lambda e: None, on_line: Lines = silent) -> dict:
        from toolkit.workloads.rollout import deploy

        outcome = deploy(self.kube, self.ctx.config, self.outputs, release, timeout, on_progress, poll=self.poll,
                         public_keys=self._public_keys())
        return {"release": release.image, "model_version": release.model_version, "applied": outcome.applied,
                "pruned": outcome.pruned, "seconds": round(outcome.seconds, 1)}

    def rollback(self, timeout: float, on_progress: Progress = lambda e: None, on_line: Lines = silent,
                 verify: Verify = lambda release: None) -> dict:
        from toolkit.workloads.rollout import rollback

        outcome = rollback(self.kube, self.ctx.config, self.outputs, timeout, on_progress, poll=self.poll,
                           public_keys=self._public_keys(), verify=verify)
        return {"release": outcome.release.image, "model_version": outcome.release.model_version, "seconds": round(outcome.seconds, 1)}

    def status(self) -> dict:
        from toolkit.workloads.rollout import status

        return status(self.kube, self.ctx.config)

    def status_lines(self, info: dict) -> list[str]:
        r = info["replicas"]
        return [f"replicas desired {r['desired']}  updated {r['updated']}  ready {r['ready']}  available {r['available']}"
                f"  (generation {info['generation']}, observed {info['observed_generation']})",
                *(f"event    {event}" for event in info["events"])]

    def live_release(self) -> Release | None:
        from toolkit.workloads.rollout import live_release

        return live_release(self.kube, self.ctx.config)

    def smoke_test(self) -> dict:
        from toolkit.workloads.smoke import smoke_test_service

        return smoke_test_service(self.kube, self.ctx)

    def require_cluster(self, instead: str) -> Kube:
        return self.kube


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, ctx: Context, prepare: Callable[[Lines], None] = lambda on_line: None) -> None:
        super().__init__(ctx, {}, prepare)

    def _login(self):
        from toolkit.images.login import registry_login

        return registry_login(self.ctx.config)

    def deploy(self, release: Release, timeout: float, on_progress: Progress = lambda e: None, on_line: Lines = silent) -> dict:
        from toolkit.workloads.local_runtime import deploy_local

        return deploy_local(self.ctx, release, self._login(), timeout, on_line=on_line)

    def rollback(self, timeout: float, on_progress: Progress = lambda e: None, on_line: Lines = silent,
                 verify: Verify = lambda release: None) -> dict:
        from toolkit.workloads.local_runtime import rollback_local

        return rollback_local(self.ctx, self._login(), timeout, on_line=on_line, verify=verify)

    def status(self) -> dict:
        from toolkit.workloads.local_runtime import status_local

        return status_local(self.ctx)

    def status_lines(self, info: dict) -> list[str]:
        return [f"runtime  docker container {info['container']} ({info['state']}, health {info['health']}, "
                f"{'ready' if info['ready'] else 'NOT ready'}) at {info['url']}"]

    def live_release(self) -> Release | None:
        from toolkit.workloads.local_runtime import current_release

        return current_release(self.ctx)

    def smoke_test(self) -> dict:
        from toolkit.workloads.local_runtime import service_url
        from toolkit.workloads.smoke import smoke_test_url

        return smoke_test_url(service_url(self.ctx.config), self.ctx)

    def require_cluster(self, instead: str) -> Kube:
        raise BadInputError(f"{self.ctx.env} has no Kubernetes cluster (its EKS is emulated): {instead}, "
                            "or give --kubeconfig/--context for a real cluster.")
