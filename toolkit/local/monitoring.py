"""The local environment's monitoring: Prometheus and Alertmanager from Debian (`prometheus` 2.42,
`prometheus-alertmanager` 0.25) and the toolkit's alert receiver, all on 127.0.0.1 with state
under `.local/`. Prometheus scrapes the local serving endpoint and evaluates the same rules the
cloud environments get; Alertmanager routes to the receiver, which records every notification
in `.local/alerts/notifications.jsonl`. A running Prometheus or Alertmanager is reloaded when
its configuration changed."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import sys
import urllib.request

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.local.process import Service, http_ok, read_pid, spawn_and_wait, stop_pid
from toolkit.monitoring import alertmanager, prometheus, rules
from toolkit.paths import ProjectPaths

PROMETHEUS, ALERTMANAGER, RECEIVER = "prometheus", "alertmanager", "alert-receiver"


def notifications_file(paths: ProjectPaths):
    return paths.state_subdir("alerts") / "notifications.jsonl"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolkitError(f"{name} is not installed; `make setup` installs the Debian packages prometheus and prometheus-alertmanager.")
    return path


def _write(path, text: str) -> bool:
    """Write if different; True when it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def _reload(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/-/reload", method="POST"), timeout=10).read()


def monitoring_status(ctx: Context) -> list[Service]:
    local, paths = ctx.config.monitoring.local, ctx.paths
    urls = {PROMETHEUS: f"http://127.0.0.1:{local.prometheus_port}", ALERTMANAGER: f"http://127.0.0.1:{local.alertmanager_port}",
            RECEIVER: f"http://127.0.0.1:{local.receiver_port}"}
    ready = {PROMETHEUS: "/-/ready", ALERTMANAGER: "/-/ready", RECEIVER: "/healthz"}
    return [Service(name, urls[name], read_pid(paths.pidfile(name)), http_ok(urls[name] + ready[name]),
                    paths.state_subdir(name) / f"{name}.log") for name in (PROMETHEUS, ALERTMANAGER, RECEIVER)]


def receiver_token_file(paths: ProjectPaths):
    """The alert receiver's token (made on first use, 0600): the receiver checks it, Alertmanager sends it."""
    path = paths.state_subdir(RECEIVER) / "token"
    if not path.exists():
        partial = path.with_name(f".token.{os.getpid()}")
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        partial.replace(path)
    return path


def receiver_command(ctx: Context, retrain_command: list[str] | None = None) -> list[str]:
    """The alert receiver, which runs `retrain_command` (default `toolkit retrain --env ENV`) for retrain
    alerts, and forwards them to GitHub when configured."""
    local, retrain = ctx.config.monitoring.local, ctx.config.feedback.retrain
    argv = [sys.executable, "-m", "toolkit.monitoring.receiver", "--port", str(local.receiver_port),
            "--out", str(notifications_file(ctx.paths)), "--env", ctx.env, "--token-file", str(receiver_token_file(ctx.paths))]
    if ctx.config.feedback.enabled:
        retrain_command = retrain_command or [sys.executable, "-m", "toolkit.cli", "retrain", "--env", ctx.env]
        argv += ["--retrain-command", shlex.join(retrain_command),
                 "--retrain-state", str(ctx.paths.state_subdir("retrain")), "--retrain-debounce", str(retrain.debounce_minutes * 60)]
    if retrain.github_repository:
        argv += ["--github-repository", retrain.github_repository, "--github-token-env", retrain.github_token_env]
    return argv


def start_monitoring(ctx: Context, timeout: float = 30.0, retrain_command: list[str] | None = None) -> list[Service]:
    config, paths, local = ctx.config, ctx.paths, ctx.config.monitoring.local
    status = {s.name: s for s in monitoring_status(ctx)}

    receiver = status[RECEIVER]
    if _write(paths.state_subdir(RECEIVER) / "argv.json", json.dumps(receiver_command(ctx, retrain_command))) and receiver.running:
        stop_pid(paths.pidfile(RECEIVER))  # started with other settings: restart it with these
        receiver = Service(receiver.name, receiver.url, None, False, receiver.log)
    if not receiver.running:
        spawn_and_wait("alert receiver", receiver_command(ctx, retrain_command), pidfile=paths.pidfile(RECEIVER), log=receiver.log,
                       ready=lambda: http_ok(receiver.url + "/healthz"), timeout=timeout, env={**os.environ, "TOOLKIT_ROOT": str(ctx.root)})

    base = paths.state_subdir(ALERTMANAGER)
    changed = _write(base / "alertmanager.yml", alertmanager.render(alertmanager.local_config(config, str(receiver_token_file(paths)))))
    manager = status[ALERTMANAGER]
    if not manager.running:
        spawn_and_wait("prometheus-alertmanager", [_binary("prometheus-alertmanager"), f"--config.file={base / 'alertmanager.yml'}",
                                                   f"--storage.path={base / 'data'}",
                                                   f"--web.listen-address=127.0.0.1:{local.alertmanager_port}",
                                                   "--cluster.listen-address="],  # else it binds 0.0.0.0:9094 for gossip
                       pidfile=paths.pidfile(ALERTMANAGER), log=manager.log, ready=lambda: http_ok(manager.url + "/-/ready"),
                       timeout=timeout)
    elif changed:
        _reload(manager.url)

    base = paths.state_subdir(PROMETHEUS)
    changed = _write(base / prometheus.RULES_FILE, rules.render(config))
    changed = _write(base / "prometheus.yml", prometheus.render(prometheus.local_config(config))) or changed
    server = status[PROMETHEUS]
    if not server.running:
        spawn_and_wait("prometheus", [_binary("prometheus"), f"--config.file={base / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={base / 'data'}", f"--web.listen-address=127.0.0.1:{local.prometheus_port}",
                                      "--web.enable-lifecycle"],
                       pidfile=paths.pidfile(PROMETHEUS), log=server.log, ready=lambda: http_ok(server.url + "/-/ready"),
                       timeout=timeout)
    elif changed:
        _reload(server.url)
    return monitoring_status(ctx)


def stop_monitoring(paths: ProjectPaths) -> dict[str, bool]:
    return {name: stop_pid(paths.pidfile(name)) for name in (PROMETHEUS, ALERTMANAGER, RECEIVER)}
