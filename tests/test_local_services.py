"""`toolkit local up|status|down` start and stop a real moto server (own port, own state dir)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

import yaml

from conftest import SERVICES, free_port
from toolkit.aws import client
from toolkit.config import load_environment
from toolkit.local.moto import start_moto, stop_moto
from toolkit.paths import ProjectPaths

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


def _iam_call(url: str, params: dict, invocation: str, attempt: int) -> tuple[int, str]:
    """One IAM query-protocol request marked as an AWS SDK marks each attempt of a call."""
    request = urllib.request.Request(url + "/", data=urllib.parse.urlencode({**params, "Version": "2010-05-08"}).encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20261207/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        "amz-sdk-invocation-id": invocation, "amz-sdk-request": f"attempt={attempt}; max=3"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_retry_of_a_call_moto_answered_gets_that_answer_not_a_second_run(tmp_path):
    """The Terraform AWS provider retries a call whose answer it lost (toolkit.local.moto_server):
    the retry of a create that succeeded must not become a 409."""
    root = ProjectPaths(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    start_moto(root, url)
    try:
        create = {"Action": "CreateRole", "RoleName": "retried", "AssumeRolePolicyDocument": "{}"}
        first = _iam_call(url, create, "call-1", 1)
        assert first[0] == 200 and "<RoleName>retried</RoleName>" in first[1]
        assert _iam_call(url, create, "call-1", 2) == first  # the same answer, not EntityAlreadyExists
        # Another call creating the same name is AWS's 409, as before.
        status, body = _iam_call(url, create, "call-2", 1)
        assert status == 409 and "EntityAlreadyExists" in body
        # An error is never replayed: the retry after it reaches moto, which has the role by then.
        get = {"Action": "GetRole", "RoleName": "later"}
        assert _iam_call(url, get, "call-3", 1)[0] == 404
        assert _iam_call(url, {**create, "RoleName": "later"}, "call-4", 1)[0] == 200
        status, body = _iam_call(url, get, "call-3", 2)
        assert status == 200 and "<RoleName>later</RoleName>" in body
        config = load_environment("local")
        iam = client("iam", config.model_copy(update={"aws": config.aws.model_copy(update={"endpoint_url": url})}))
        assert sorted(role["RoleName"] for role in iam.list_roles()["Roles"]) == ["later", "retried"]
    finally:
        stop_moto(root)
