"""What makes a warm `toolkit plan` fast, and must never make it wrong: synthesis is skipped only
while nothing it reads has changed, `terraform init` only while the providers, backend and lock
file are those it ran for (a real init here), and the plan's text comes from `plan` itself."""

from __future__ import annotations

import json
import shutil

from conftest import PATHS, REPO, SERVICES
from toolkit.terraform.adapter import Workspace
from toolkit.terraform.synth import synthesis_inputs


def test_the_synthesis_key_changes_with_anything_synthesis_reads(tmp_path):
    for name in ("infra", "modules", "toolkit", "environments"):
        (tmp_path / name).mkdir()
    (tmp_path / "infra" / "stack.py").write_text("x = 1\n")
    (tmp_path / "environments" / "dev.yaml").write_text("name: dev\n")
    (tmp_path / "environments" / "dev.usage.yaml").write_text("bucket: {}\n")
    key = synthesis_inputs(tmp_path)
    assert synthesis_inputs(tmp_path) == key
    (tmp_path / "toolkit" / "__pycache__").mkdir()
    (tmp_path / "toolkit" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")  # not an input
    assert synthesis_inputs(tmp_path) == key
    for path, text in ((tmp_path / "environments" / "dev.yaml", "name: dev\nx: 1\n"), (tmp_path / "infra" / "stack.py", "x = 2\n"),
                       (tmp_path / "modules" / "new.py", ""), (tmp_path / "toolkit" / "prices.json", "{}")):
        path.write_text(text)
        assert synthesis_inputs(tmp_path) != key, path
        key = synthesis_inputs(tmp_path)


def test_a_recorded_synthesis_keys_on_the_toolkit_files_it_read_and_no_others(tmp_path):
    for name in ("infra", "modules", "toolkit", "environments"):
        (tmp_path / name).mkdir()
    read, unread, data = tmp_path / "toolkit" / "config.py", tmp_path / "toolkit" / "cli.py", tmp_path / "toolkit" / "rules.yaml"
    for path in (read, unread, data):
        path.write_text("x = 1\n")
    sources = [read, data]
    key = synthesis_inputs(tmp_path, sources)
    unread.write_text("x = 2\n")  # the CLI: synthesis never loaded it
    assert synthesis_inputs(tmp_path, sources) == key
    assert synthesis_inputs(tmp_path) != synthesis_inputs(tmp_path, sources)  # unrecorded: all of toolkit/ counts
    for change in (lambda: read.write_text("x = 2\n"), lambda: data.write_text("y: 1\n"), read.unlink,
                   lambda: (tmp_path / "modules" / "new.py").write_text("")):
        change()
        assert synthesis_inputs(tmp_path, sources) != key
        key = synthesis_inputs(tmp_path, sources)


@SERVICES
def test_init_is_reused_only_for_the_same_providers_and_lock_file(tmp_path):
    stack = json.loads((REPO / "cdktf.out" / "stacks" / "platform-local" / "cdk.tf.json").read_text()) \
        if (REPO / "cdktf.out" / "stacks" / "platform-local" / "cdk.tf.json").is_file() else None
    providers = (stack or {}).get("terraform", {}).get("required_providers") or {"aws": {"source": "aws", "version": "5.100.0"}}
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "cdk.tf.json").write_text(json.dumps({"terraform": {"required_providers": providers}}))
    workspace = Workspace(directory, PATHS)
    assert workspace.init_if_needed(backend=False) is True and (directory / ".terraform.lock.hcl").is_file()
    assert workspace.init_if_needed(backend=False) is False  # nothing changed
    (directory / ".terraform.lock.hcl").unlink()  # a lock file changed (here: gone) → init again
    assert workspace.init_if_needed(backend=False) is True
    assert workspace.init_if_needed(backend=False) is False
    body = json.loads((directory / "cdk.tf.json").read_text())
    body["terraform"]["required_version"] = ">= 1.5"  # the stack's terraform block changed → init again
    (directory / "cdk.tf.json").write_text(json.dumps(body))
    assert workspace.init_if_needed(backend=False) is True
    shutil.rmtree(directory / ".terraform")  # a fresh checkout
    assert workspace.init_if_needed(backend=False) is True
