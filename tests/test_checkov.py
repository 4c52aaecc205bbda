"""checkov on the synthesized prod stack: 0 failed checks; the only skips are in toolkit/terraform/checkov_skips.py."""

from __future__ import annotations

import json
import subprocess

from conftest import REPO
from toolkit.terraform.checkov_skips import SKIPS

CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"


def run_checkov(path) -> dict:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make setup` installs checkov in its own tools venv"
    result = subprocess.run(
        [str(CHECKOV), "-f", str(path), "--framework", "terraform_json", "--output", "json", "--quiet",
         "--skip-check", ",".join(SKIPS)],
        capture_output=True, text=True,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return json.loads(result.stdout)


def test_prod_stack_passes_checkov(synthesized, tmp_path):
    stack = tmp_path / "cdk.tf.json"
    stack.write_text(json.dumps(synthesized["prod"]))
    report = run_checkov(stack)
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 100


def test_every_skip_has_a_reason():
    assert SKIPS and all(len(reason) > 20 for reason in SKIPS.values())
