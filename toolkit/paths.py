"""Where things live, and the names `infra/` and `toolkit/` share.

This is the one module both sides import for their contract: the stack name of an environment
and the keys of its outputs, so neither side rebuilds `platform-<env>` or an output key as a
string of its own. `ProjectPaths` is every path the toolkit reads or writes in a checkout:
state of the local services and release records under `.local/`, caches under `.cache/`,
artifacts, synthesized stacks.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENTS_DIR = "environments"
STACK_PREFIX = "platform-"
# In each synthesized stack directory: the toolkit files that synthesis read (written by `python -m
# infra`), so `toolkit plan` re-synthesizes only when one of those changes (toolkit.terraform.synth).
SYNTH_SOURCES = ".toolkit-synth-sources"


def stack_name(env: str) -> str:
    """The CDKTF stack (and Terraform workspace directory) of an environment."""
    return f"{STACK_PREFIX}{env}"


class Output(enum.StrEnum):
    """Outputs of a platform stack: written by infra/stack.py, read by the toolkit."""

    CLUSTER_NAME = "cluster_name"
    CLUSTER_ENDPOINT = "cluster_endpoint"
    CLUSTER_CA = "cluster_ca"
    OIDC_ISSUER = "oidc_issuer"
    REGISTRY_URL = "registry_url"
    BUCKET = "bucket"
    NODE_POOLS = "node_pools"
    TRAINING_ROLE_ARN = "training_role_arn"
    SERVING_ROLE_ARN = "serving_role_arn"
    REGION = "region"
    PROMETHEUS_ENDPOINT = "prometheus_endpoint"  # the AMP workspace's query endpoint
    ALERT_TOPIC_ARN = "alert_topic_arn"
    RETRAIN_QUEUE_URL = "retrain_queue_url"  # where the alert manager's retrain notifications wait for the controller
    RETRAIN_CONTROLLER_ROLE_ARN = "retrain_controller_role_arn"
    # CI (modules/ci_identity.py): the workflows' variables are named after these, per environment:
    # PLAN_ROLE_ARN_<ENV> and DEPLOY_ROLE_ARN_<ENV> (README "Delivery from CI").
    PLAN_ROLE_ARN = "plan_role_arn"
    DEPLOY_ROLE_ARN = "deploy_role_arn"
    PROMOTE_ROLE_ARN = "promote_role_arn"  # only where promotion_from is set: PROMOTE_ROLE_ARN_<ENV>
    SIGNING_KEY_SECRET = "signing_key_secret"  # the Secrets Manager secret of the model-signing key


def project_root() -> Path:
    """The repository root: $TOOLKIT_ROOT, else the nearest ancestor of cwd holding environments/."""
    if os.environ.get("TOOLKIT_ROOT"):
        return Path(os.environ["TOOLKIT_ROOT"]).resolve()
    for candidate in [Path.cwd(), *Path.cwd().parents]:
        if (candidate / ENVIRONMENTS_DIR).is_dir():
            return candidate
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProjectPaths:
    """Paths of one checkout. Directories under `.local/` are created when asked for."""

    root: Path

    @classmethod
    def discover(cls) -> ProjectPaths:
        return cls(project_root())

    # -- inputs
    @property
    def environments(self) -> Path:
        return self.root / ENVIRONMENTS_DIR

    def environment_file(self, env: str) -> Path:
        return self.environments / f"{env}.yaml"

    # -- outputs of the toolkit
    def artifacts(self, env: str) -> Path:
        """Model artifacts trained for `env` (`latest` points at the newest)."""
        return self.root / "artifacts" / env

    @property
    def synth_dir(self) -> Path:
        return self.root / "cdktf.out"

    def stack_dir(self, env: str) -> Path:
        return self.synth_dir / "stacks" / stack_name(env)

    # -- caches (safe to delete)
    @property
    def cache(self) -> Path:
        return self.root / ".cache"

    @property
    def tools_bin(self) -> Path:
        """The tools venv (checkov, kubernetes-validate): its own, because checkov pins an old boto3."""
        return self.root / ".venv-tools" / "bin"

    # -- state of the local environment and release records (one gitignored dir)
    @property
    def state(self) -> Path:
        path = self.root / ".local"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def state_subdir(self, name: str) -> Path:
        path = self.state / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def logs(self) -> Path:
        return self.state_subdir("logs")

    def pidfile(self, service: str) -> Path:
        return self.state / f"{service}.pid"

    def record(self, name: str) -> Path:
        """A JSON record the toolkit keeps between commands (last build, last push, release history)."""
        return self.state / f"{name}.json"

    @property
    def docker_socket(self) -> Path:
        """The socket of the Docker engine the toolkit starts when none answers."""
        return self.state / "docker" / "docker.sock"


def read_json(path: Path, default=None):
    """A record's content, or `default` when it does not exist yet."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def write_json(path: Path, data) -> None:
    """Write a record atomically: a reader sees the old or the new content, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    partial.replace(path)
