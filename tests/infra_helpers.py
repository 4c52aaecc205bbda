"""cdktf is imported once per pytest session (it costs ~20 s and ~1 GB): every infra test
goes through the session fixtures in conftest.py, which use these helpers."""

from __future__ import annotations

import json


def synth_stack(config) -> dict:
    """Testing.synth of one PlatformStack as parsed JSON."""
    from cdktf import Testing

    from infra.stack import PlatformStack

    app = Testing.app()
    stack = PlatformStack(app, config)
    return json.loads(Testing.synth(stack))


def resources(synth: dict, kind: str) -> list[dict]:
    return list(synth.get("resource", {}).get(kind, {}).values())


def one(synth: dict, kind: str) -> dict:
    found = resources(synth, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
