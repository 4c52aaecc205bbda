"""The python-terraform adapter: every Terraform call the toolkit makes goes through here.

python-terraform 0.10.1 is unmaintained; on Terraform 1.11 some defaults break, so each
call sets its flags explicitly (docs/terraform.md) and is tested against the real binary.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from python_terraform import IsFlagged, IsNotFlagged

from toolkit.errors import ToolkitError
from toolkit.paths import ProjectPaths

# Offline provider mirror on these machines; real users download providers normally.
PROVIDER_MIRROR = Path("/opt/tf-plugins")
CLI_CONFIG = """disable_checkpoint = true
provider_installation {{
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["registry.terraform.io/*/*"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*"]
  }}
}}
"""


class TerraformError(ToolkitError):
    pass


def cli_config_file(paths: ProjectPaths) -> Path | None:
    """Write a CLI config that installs providers from the local mirror, when it exists."""
    if not PROVIDER_MIRROR.is_dir():
        return None
    path = paths.cache / "terraformrc"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = CLI_CONFIG.format(mirror=PROVIDER_MIRROR)
    if not path.exists() or path.read_text() != text:
        partial = path.with_name(f".{path.name}.{os.getpid()}")  # whole or not at all: readers run in parallel
        partial.write_text(text)
        partial.replace(path)
    return path


def terraform_environment(paths: ProjectPaths) -> dict[str, str]:
    """Environment for terraform and cdktf: our CLI config (these machines export a
    TF_CLI_CONFIG_FILE that does not exist), no checkpoint calls, jsii cache in the repo."""
    env = {
        "CHECKPOINT_DISABLE": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "JSII_RUNTIME_PACKAGE_CACHE_ROOT": str(paths.cache / "jsii"),
        "CDKTF_DISABLE_PLUGIN_CACHE_ENV": "1",
        "TF_IN_AUTOMATION": "1",
    }
    config = cli_config_file(paths)
    if config is not None:
        env["TF_CLI_CONFIG_FILE"] = str(config)
    elif os.environ.get("TF_CLI_CONFIG_FILE") and not Path(os.environ["TF_CLI_CONFIG_FILE"]).exists():
        env["TF_CLI_CONFIG_FILE"] = ""  # a dangling path breaks terraform; fall back to defaults
    return env


@contextlib.contextmanager
def _environment(extra: dict[str, str]):
    """`extra` in os.environ for the duration of one call, then as it was: python-terraform passes
    a copy of os.environ to every terraform process and has no parameter for an environment."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Terraform:
    """python-terraform's Terraform, each call run with the toolkit's terraform environment."""

    def __init__(self, directory: Path, environment: dict[str, str]) -> None:
        from python_terraform import Terraform

        self._tf, self._environment = Terraform(working_dir=str(directory)), environment

    def __getattr__(self, verb: str):
        method = getattr(self._tf, verb)

        def call(*args, **kwargs):
            with _environment(self._environment):
                return method(*args, **kwargs)

        return call


class Workspace:
    """One synthesized stack directory (cdktf.out/stacks/<stack>)."""

    def __init__(self, directory: Path, paths: ProjectPaths) -> None:
        if not any((directory / name).exists() for name in ("cdk.tf.json", "cdk.tf")):
            raise TerraformError(f"{directory}: no synthesized stack here; run `make synth` first.")
        self.directory = directory
        self.tf = _Terraform(directory, terraform_environment(paths))

    def _check(self, action: str, result: tuple[int, str, str], ok: tuple[int, ...] = (0,)) -> str:
        code, out, err = result
        if code not in ok:
            raise TerraformError(f"terraform {action} failed in {self.directory} (exit {code}):\n{(err or out).strip()[-4000:]}")
        return out

    def init(self, backend: bool = True) -> None:
        self._check("init", self.tf.init(backend=backend, input=False, no_color=IsFlagged, reconfigure=True, capture_output=True))

    def _init_key(self, backend: bool) -> str:
        """What `init` depends on: the providers and backend the stack declares, and the lock file."""
        import hashlib

        stack = json.loads((self.directory / "cdk.tf.json").read_text()) if (self.directory / "cdk.tf.json").is_file() else {}
        lock = self.directory / ".terraform.lock.hcl"
        parts = [json.dumps(stack.get("terraform", {}), sort_keys=True), lock.read_text() if lock.is_file() else "", str(backend)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def init_if_needed(self, backend: bool = True) -> bool:
        """`init` unless this directory was initialised for the same providers, backend and lock
        file (.terraform/ keeps the key); True when it ran."""
        stamp = self.directory / ".terraform" / "toolkit-init.sha256"
        if stamp.is_file() and stamp.read_text() == self._init_key(backend):
            return False
        self.init(backend)
        stamp.write_text(self._init_key(backend))
        return True

    def validate(self, warnings_fail: bool = False) -> list[str]:
        """`terraform validate -json`; TerraformError on errors (and on warnings with warnings_fail).
        Returns the warnings, one line each."""
        code, out, err = self.tf.cmd("validate", json=IsFlagged, no_color=IsFlagged, capture_output=True)
        try:
            report = json.loads(out)
        except ValueError:
            self._check("validate", (code, out, err))
            raise TerraformError(f"terraform validate in {self.directory} printed no JSON: {(err or out)[-2000:]}") from None
        lines = [f"{d['severity']}: {d['summary']}" + (f" ({d['range']['filename']}:{d['range']['start']['line']})" if d.get("range") else "")
                 + (f": {d['detail']}" if d.get("detail") else "") for d in report.get("diagnostics", [])]
        if report.get("error_count") or (warnings_fail and report.get("warning_count")):
            raise TerraformError(f"terraform validate in {self.directory}: " + "; ".join(lines))
        return [line for line in lines if line.startswith("warning")]

    def apply(self) -> None:
        # skip_plan=True: python-terraform otherwise runs `apply` without -auto-approve semantics on 1.11.
        self._check("apply", self.tf.apply(skip_plan=True, input=False, no_color=IsFlagged, capture_output=True))

    def plan_has_changes(self, out: Path | None = None) -> bool:
        """`terraform plan -detailed-exitcode`: exit 0 = no changes, 2 = changes, 1 = error."""
        options = dict(detailed_exitcode=IsFlagged, input=False, no_color=IsFlagged, capture_output=True)
        if out is not None:
            options["out"] = str(out)
        code, _, _ = result = self.tf.plan(**options)
        self._check("plan", result, ok=(0, 2))
        return code == 2

    def plan(self, out: Path, destroy: bool = False) -> tuple[bool, str]:
        """`terraform plan -out FILE [-destroy]`: (has changes, the plan as text). The text is what
        `terraform show FILE` prints, less the refresh lines: no second run that loads the provider."""
        options = dict(detailed_exitcode=IsFlagged, input=False, no_color=IsFlagged, capture_output=True, out=str(out))
        if destroy:
            options["destroy"] = IsFlagged
        code, stdout, _ = result = self.tf.plan(**options)
        self._check("plan", result, ok=(0, 2))
        progress = (": Refreshing state...", ": Reading...", ": Read complete after", "Saved the plan to:", "To perform exactly these actions")
        text = "\n".join(line for line in (stdout or "").splitlines() if not any(mark in line for mark in progress)
                         and not line.startswith("    terraform apply"))
        return code == 2, text.strip() + "\n"

    def show_json(self, planfile: Path) -> dict:
        return json.loads(self._check("show", self.tf.cmd("show", str(planfile), json=IsFlagged, no_color=IsFlagged, capture_output=True)))

    def destroy(self) -> None:
        self._check("destroy", self.tf.destroy(force=IsNotFlagged, auto_approve=IsFlagged, input=False, no_color=IsFlagged, capture_output=True))

    def outputs(self) -> dict:
        out = self._check("output", self.tf.cmd("output", json=IsFlagged, no_color=IsFlagged, capture_output=True))
        return {k: v["value"] for k, v in json.loads(out or "{}").items()}

    def state_resources(self) -> list[str]:
        code, out, err = self.tf.cmd("state list", no_color=IsFlagged, capture_output=True)
        if code != 0 and "No state file" not in (err or ""):
            self._check("state list", (code, out, err))
        return [line for line in out.splitlines() if line.strip()]
