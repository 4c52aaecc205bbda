"""`toolkit local up|status|down` start and stop a real moto server (own port, own state dir)."""

from __future__ import annotations

import json
import os

import yaml

from conftest import SERVICES, free_port
from toolkit.aws import client
from toolkit.config import load_environment

pytestmark = SERVICES  # they start services of their own: not in `make test-fast`


def test_local_up_status_down(repo_copy, run_cli):
    path = repo_copy / "environments" / "local.yaml"
    data = yaml.safe_load(path.read_text())
    url = f"http://127.0.0.1:{free_port()}"
    data["aws"]["endpoint_url"] = url
    path.write_text(yaml.safe_dump(data))
    try:
        up = run_cli("local", "up", "--aws-only", "--json")
        assert up.exit_code == 0, up.output
        service = json.loads(up.stdout)[0]
        assert service["running"] and service["url"] == url and service["pid"]
        assert (repo_copy / ".local" / "moto.pid").read_text() == str(service["pid"])
        assert run_cli("local", "up", "--aws-only", "--json").exit_code == 0  # idempotent: reuses the running server
        # It is a real AWS emulator: the state bucket bootstrap works against it.
        assert run_cli("state", "bootstrap", "--env", "local").exit_code == 0
        buckets = [b["Name"] for b in client("s3", load_environment("local")).list_buckets()["Buckets"]]
        assert buckets == [data["state"]["bucket"]]
        status = json.loads(run_cli("local", "status", "--json").stdout)
        assert status[0]["name"].startswith("moto") and status[0]["running"] is True
    finally:
        down = run_cli("local", "down")
    assert down.exit_code == 0 and "moto stopped" in down.stdout
    status = run_cli("local", "status")
    assert status.exit_code == 1 and status.stdout.startswith("down")
    assert not os.path.exists(repo_copy / ".local" / "moto.pid")
