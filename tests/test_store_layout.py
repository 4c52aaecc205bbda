"""The artifact store's layout (toolkit/store/layout.py): every prefix named once, and the code that
writes a prefix and the IAM policy that allows it take it from the same place."""

from __future__ import annotations

import asyncio
import re

import pytest

from toolkit.config import load_all_environments, load_environment
from toolkit.serve.loop import FeedbackLoop
from toolkit.serve.metrics import ServerMetrics
from toolkit.serving import LoopSettings
from toolkit.store import layout
from toolkit.store.layout import Area, StoreLayout

ENVS = sorted(load_all_environments())


@pytest.mark.parametrize("env", ENVS)
def test_every_area_has_its_own_prefix_and_all_but_datasets_are_the_environments_own(env):
    store = StoreLayout.of(load_environment(env))
    prefixes = {area: store.prefix(area) for area in Area}
    assert len(set(prefixes.values())) == len(Area)
    for area, prefix in prefixes.items():
        assert prefix.endswith("/") and not prefix.startswith("/")
        assert (f"/{env}/" in f"/{prefix}") is (area is not Area.DATASETS), (area, prefix)
    # no prefix holds another, so a grant on one never reaches into another's records
    assert not any(a != b and a.startswith(b) for a in prefixes.values() for b in prefixes.values())


def test_urls_are_built_from_the_prefixes():
    store = StoreLayout("bucket-x", "dev", "models/", "data/")
    assert store.model("v1") == "s3://bucket-x/models/dev/v1/"
    assert store.dataset("heart.csv") == "s3://bucket-x/data/heart.csv"
    assert store.record(Area.RELEASES, "abc") == "s3://bucket-x/releases/dev/abc.json"
    assert store.object_arns([Area.FEEDBACK], "${aws_s3_bucket.b.arn}") == ["${aws_s3_bucket.b.arn}/feedback/dev/*"]


def _policy_resources(synth: dict, role: str, sid: str) -> list[str]:
    """The Resource list of statement `sid` in the workload role's policy (Terraform's jsonencode(...) text)."""
    [policy] = [p["policy"] for p in synth["resource"]["aws_iam_role_policy"].values() if f"{role}-role" in p["role"]]
    match = re.search(rf'"Sid" = "{sid}"[^{{}}]*?"Resource" = \[([^\]]*)\]', policy)
    assert match, (sid, policy)
    return re.findall(r'"([^"]*)"', match.group(1))


@pytest.mark.parametrize("env", ENVS)
def test_the_workload_roles_grant_exactly_the_layouts_prefixes(synthesized, env):
    synth, store = synthesized[env], StoreLayout.of(load_environment(env))
    [bucket] = synth["resource"]["aws_s3_bucket"]
    arn = f"${{aws_s3_bucket.{bucket}.arn}}"
    assert _policy_resources(synth, "serving", "Write") == store.object_arns(layout.SERVING_WRITES, arn)
    assert _policy_resources(synth, "serving", "Read") == store.object_arns(layout.SERVING_READS, arn)
    assert _policy_resources(synth, "training", "Write") == store.object_arns(layout.TRAINING_WRITES, arn)
    assert _policy_resources(synth, "training", "Read") == store.object_arns(layout.TRAINING_READS, arn)


def test_what_the_server_ships_lands_under_the_prefixes_the_serving_role_may_write(model_dir):
    from toolkit.ml.artifacts import load_artifact
    from toolkit.ml.predict import score_records

    config = load_environment("dev")
    put_keys = []
    settings = LoopSettings(config.name, config.feedback.model_copy(update={"flush_seconds": 0.05}), config.artifact_store.bucket)
    model = load_artifact(model_dir)

    async def serve_one_request():
        loop = FeedbackLoop(model, ServerMetrics(model), settings, put=lambda key, body: put_keys.append(key))
        loop.start()
        columns = {name: [None] for name in model.preprocessor.columns}
        scored = score_records(model, columns, "request")
        loop.on_predictions(list(zip(*columns.values(), strict=True)), scored)
        loop.on_feedback([(scored.predictions[0]["prediction_id"], model.classes[0])], "tester")
        await loop.stop()

    asyncio.run(serve_one_request())
    allowed = StoreLayout.of(config).prefixes(layout.SERVING_WRITES)
    assert {key.split("/")[0] for key in put_keys} == {"predictions", "feedback"}
    assert all(any(key.startswith(prefix) for prefix in allowed) for key in put_keys), (put_keys, allowed)
