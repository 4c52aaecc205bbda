"""The GitHub workflows: valid against the GitHub workflow schema (check-jsonschema's vendored
copy, offline), and the plan review never applies anything."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import REPO
from toolkit.terraform.review import MARKER

CHECK = REPO / ".venv-tools" / "bin" / "check-jsonschema"
WORKFLOWS = REPO / ".github" / "workflows"


def _validate(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True)


def test_workflows_validate_against_the_github_schema():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "plan-review.yml", "release.yml", "retrain.yml"]
    result = _validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on: ubuntu-24.04", "runs-onn: ubuntu-24.04"))
    assert _validate(broken).returncode != 0


def test_plan_review_plans_every_real_environment_and_never_applies():
    workflow = yaml.safe_load((WORKFLOWS / "plan-review.yml").read_text())
    triggers = workflow[True]["pull_request"]  # YAML 1.1 reads the key `on` as True
    assert {"infra/**", "modules/**", "environments/**", "pyproject.toml", "constraints.txt"} <= set(triggers["paths"])
    job = workflow["jobs"]["plan"]
    assert job["strategy"]["matrix"]["env"] == ["dev", "staging", "prod"]
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "make plan" in runs
    for forbidden in ("terraform apply", "make deploy", "cdktf deploy", "make destroy", "cdktf destroy", "toolkit deploy"):
        assert forbidden not in runs
    script = next(step["with"]["script"] for step in job["steps"] if "github-script" in step.get("uses", ""))
    assert MARKER.format(env="${env}") in script  # the comment is found again by the review's own marker
    assert "updateComment" in script and "createComment" in script


def test_ci_runs_make_test():
    workflow = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert any("make test" in run for run in runs)


def test_retrain_runs_make_retrain_on_schedule_dispatch_and_by_hand():
    workflow = yaml.safe_load((WORKFLOWS / "retrain.yml").read_text())
    triggers = workflow[True]
    assert triggers["schedule"] and triggers["repository_dispatch"]["types"] == ["retrain"]  # what the alert receiver sends
    assert triggers["workflow_dispatch"]["inputs"]["env"]["options"] == ["dev", "staging", "prod"]
    job = workflow["jobs"]["retrain"]
    assert job["environment"] == "${{ matrix.env }}" and job["concurrency"]["cancel-in-progress"] is False
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert 'make retrain ENV="$ENV"' in runs
    credentials = next(step for step in job["steps"] if "configure-aws-credentials" in step.get("uses", ""))
    assert "DEPLOY_ROLE_ARN_" in credentials["with"]["role-to-assume"]  # OIDC, no stored keys
    assert workflow["permissions"]["id-token"] == "write"


def test_release_builds_once_in_dev_and_promotes_the_digest_through_staging_to_prod():
    """dev builds once; each later environment takes the digest in two jobs: the promotion, in the GitHub
    environment `<env>-promotion` with the promote role (the only writer of promotion records), then
    the deploy, in `<env>` with the deploy role (which only reads them)."""
    workflow = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    assert workflow[True]["push"]["branches"] == ["main"] and workflow["permissions"]["id-token"] == "write"
    assert workflow["concurrency"]["cancel-in-progress"] is False
    jobs = workflow["jobs"]
    order = ["test", "dev", "promote-staging", "staging", "promote-prod", "prod"]
    assert list(jobs) == order and [jobs[name].get("needs") for name in order] == [None, *order[:-1]]
    assert "make test" in jobs["test"]["steps"][-1]["run"]
    for name in order[1:]:
        job = jobs[name]
        env = name.removeprefix("promote-")
        # each role trusts the subject environment:<its environment> only
        assert job["environment"].split(" ")[0] == (f"{env}-promotion" if name.startswith("promote-") else env)
        credentials = next(step for step in job["steps"] if "configure-aws-credentials" in step.get("uses", ""))
        role = "PROMOTE_ROLE_ARN_" if name.startswith("promote-") else "DEPLOY_ROLE_ARN_"
        assert role in credentials["with"]["role-to-assume"] and "aws-access-key-id" not in credentials["with"]
        runs = "\n".join(step.get("run", "") for step in job["steps"])
        if name == "dev":  # the one build
            assert "make train release" in runs and "promote" not in runs
        elif name.startswith("promote-"):  # the same digest, never rebuilt, and not deployed by this role
            assert "make promote" in runs and "release" not in runs and "build" not in runs and "rollout" not in runs
            assert job["env"] == {"FROM": {"staging": "dev", "prod": "staging"}[env], "ENV": env}
        else:
            assert "make rollout" in runs and "promote" not in runs and "build" not in runs


def test_no_workflow_puts_an_expression_into_a_script():
    """`${{ … }}` inside `run:` is script injection when it carries event data (a dispatch payload,
    a PR title): values go through `env:` instead."""
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), f"{path.name} job {name}: {step.get('name', step.get('id'))}"


def test_the_retrain_dispatch_accepts_only_known_environments(tmp_path):
    """The select step's script, run as the workflow would with an untrusted payload."""
    workflow = yaml.safe_load((WORKFLOWS / "retrain.yml").read_text())
    script = workflow["jobs"]["select"]["steps"][0]["run"]
    for payload, code, envs in (("staging", 0, '["staging"]'), ("prod", 0, '["prod"]'), ("$(rm -rf ~)", 1, None), ("local", 1, None)):
        output = tmp_path / "output"
        output.write_text("")
        result = subprocess.run(["bash", "-e", "-c", script], env={"EVENT": "repository_dispatch", "DISPATCH_ENV": payload,
                                                                  "GITHUB_OUTPUT": str(output), "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True)
        assert result.returncode == code, (payload, result.stdout)
        assert output.read_text() == (f"envs={envs}\n" if envs else "")


def _fake_path(directory, commands: list[str]):
    directory.mkdir()
    for command in commands:
        (directory / command).write_text("#!/bin/sh\n")
        (directory / command).chmod(0o755)
    return directory


@pytest.mark.parametrize("present, installed", [
    ([], "docker.io docker-registry debootstrap prometheus prometheus-alertmanager binutils"),
    # a GitHub-hosted runner: Docker CE's dockerd and binutils are there; docker.io would conflict with it
    (["dockerd", "docker", "containerd", "strip"], "docker-registry debootstrap prometheus prometheus-alertmanager"),
    (["dockerd", "docker-registry", "debootstrap", "prometheus", "prometheus-alertmanager", "strip"], ""),
])
def test_setup_installs_only_the_debian_packages_whose_command_is_missing(tmp_path, present, installed):
    path = _fake_path(tmp_path / "bin", present)
    result = subprocess.run(["/bin/bash", str(REPO / "scripts" / "missing-apt-packages")], env={"PATH": str(path)},
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == installed.split()
    assert "bash scripts/missing-apt-packages" in (REPO / "Makefile").read_text()  # what `make setup` installs from


def test_workflow_steps_call_only_make_targets_that_exist():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
    called = set()
    for path in WORKFLOWS.glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                for command in re.findall(r"\bmake ((?:[a-z][a-z-]* ?)+)", step.get("run", "")):
                    called.update(command.split())
    assert called and called <= targets, sorted(called - targets)
    assert {"test", "plan", "train", "release", "promote", "rollout", "retrain"} <= called


class _FakeEngine:
    """A Docker API on a unix socket that answers only what the SDK's ping needs: the engine a runner has."""

    def __init__(self, path) -> None:
        import http.server
        import socketserver
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = b'{"ApiVersion": "1.45", "Version": "27.0.0"}' if "version" in self.path else b"OK"
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if body != b"OK" else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

            def address_string(self):
                return "engine"

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_toolkit_uses_the_docker_engine_a_runner_has_and_starts_its_own_only_without_one(tmp_path, monkeypatch):
    import toolkit.images.docker as engine_choice
    from toolkit.local import dockerd
    from toolkit.paths import ProjectPaths

    paths = ProjectPaths(tmp_path / "checkout")
    system = tmp_path / "docker.sock"
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(engine_choice, "SYSTEM_SOCKET", f"unix://{system}")
    spawned = []
    monkeypatch.setattr(dockerd, "spawn_and_wait", lambda *args, **kwargs: spawned.append(args))

    fake = _FakeEngine(system)  # Docker CE on a GitHub-hosted runner
    try:
        assert engine_choice.docker_base_url(paths) == f"unix://{system}"
        assert dockerd.start_dockerd(paths).running and spawned == []
        monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # an explicit DOCKER_HOST wins
        assert engine_choice.docker_base_url(paths) == "tcp://127.0.0.1:1"
        monkeypatch.delenv("DOCKER_HOST")
    finally:
        fake.close()
    system.unlink()
    # No engine answers: ours, under the checkout's .local/docker (dockerd itself is not run here).
    assert engine_choice.docker_base_url(paths) == f"unix://{paths.docker_socket}"
    monkeypatch.setattr(dockerd.shutil, "which", lambda name: "/usr/bin/dockerd")
    monkeypatch.setattr(dockerd.os, "geteuid", lambda: 0)
    monkeypatch.setattr(dockerd, "docker_status", lambda p: dockerd.Service("docker engine", "x", None, False, tmp_path / "log"))
    dockerd.start_dockerd(paths)
    assert spawned and spawned[0][1][:3] == ["/usr/bin/dockerd", "--host", f"unix://{paths.docker_socket}"]
