"""`toolkit plan` on real plans: Terraform plans the local stack against a real moto server
(empty → full create, no change, a node-pool resize, a replacement of a protected resource,
a destroy, a move, an import and a forget), and a plan holding a sensitive value and credential-like
strings shows neither."""

from __future__ import annotations

import json
import re

import pytest

from conftest import PATHS, REPO, SERVICES, free_port
from toolkit.aws import client
from toolkit.config import load_environment
from toolkit.context import Context
from toolkit.local.moto import start_moto, stop_moto
from toolkit.paths import ProjectPaths
from toolkit.terraform.adapter import Workspace
from toolkit.terraform.plan import EXIT_PROTECTED, plan_review
from toolkit.terraform.review import COMMENT_LIMIT, MARKER, build_review, mask_secrets, render_markdown
from toolkit.terraform.state import bootstrap_state_bucket
from toolkit.terraform.synth import recorded_sources

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def _synth(config, outdir):
    from infra.app import build_app

    build_app({config.name: config}, outdir=str(outdir)).synth()
    return outdir / "stacks" / f"platform-{config.name}"


def _with_pool(config, name: str, **changes):
    pools = [p.model_copy(update=changes) if p.name == name else p for p in config.node_pools]
    return config.model_copy(update={"node_pools": pools})


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Every plan of the story, made once: {name: PlanResult}."""
    root = ProjectPaths(tmp_path_factory.mktemp("plan-moto"))
    url = f"http://127.0.0.1:{free_port()}"
    start_moto(root, url)
    config = load_environment("local")
    config = config.model_copy(update={"aws": config.aws.model_copy(update={"endpoint_url": url})})
    bootstrap_state_bucket(config)
    out = tmp_path_factory.mktemp("plan-stacks")
    try:
        base = _synth(config, out / "base")
        results = {"create": plan_review(Context(config, PATHS), base, checkov=True)}
        Workspace(base, PATHS).apply()
        results["same"] = plan_review(Context(config, PATHS), base, checkov=False)
        # desired_size belongs to the cluster autoscaler (ignore_changes); a resize moves min and max.
        resized = _with_pool(config, "system", min_size=2, desired_size=2, max_size=3, labels={"workload": "system", "owner": AWS_KEY})
        results["resize"] = plan_review(Context(resized, PATHS), _synth(resized, out / "resize"), checkov=False)
        renamed = config.model_copy(update={"registry": config.registry.model_copy(update={"name": "platform-local/serving-v2"})})
        results["replace"] = plan_review(Context(renamed, PATHS), _synth(renamed, out / "replace"), checkov=False)
        results["destroy"] = plan_review(Context(config, PATHS), base, destroy=True, checkov=False)
        results["secrets"] = plan_review(Context(config, PATHS), _secrets_stack(base, out / "secrets"), checkov=False)
        results["moves"] = plan_review(Context(config, PATHS), _moves_stack(config, base, out / "moves"), checkov=False)
        yield results
    finally:
        stop_moto(root)


def _write_stack(base, directory, body: dict):
    """A tiny Terraform JSON config with the synthesized stack's provider (moto) and local state."""
    synth = json.loads((base / "cdk.tf.json").read_text())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cdk.tf.json").write_text(json.dumps({
        "terraform": {"required_providers": synth["terraform"]["required_providers"]}, "provider": synth["provider"], **body}))
    return directory


def _secrets_stack(base, directory):
    """A SecureString parameter (the provider marks its value sensitive) and tags that look like credentials."""
    return _write_stack(base, directory, {"resource": {"aws_ssm_parameter": {"db": {
        "name": "/platform/db-password", "type": "SecureString", "value": "Sup3r-Secret-Value-42",
        "tags": {"dsn": "postgres://app:hunter2hunter2@db.internal:5432/app", "token": "ghp_" + "a1B2" * 9, "key": AWS_KEY}}}}})


def _moves_stack(config, base, directory):
    """Two applied buckets, then a config that moves one (`moved`), forgets the other (`removed`,
    destroy = false) and adopts a bucket made outside Terraform (`import`)."""
    _write_stack(base, directory, {"resource": {"aws_s3_bucket": {"old": {"bucket": "review-moved"}, "kept": {"bucket": "review-forgotten"}}}})
    workspace = Workspace(directory, PATHS)
    workspace.init()
    workspace.apply()
    client("s3", config).create_bucket(Bucket="review-imported")
    return _write_stack(base, directory, {
        "resource": {"aws_s3_bucket": {"renamed": {"bucket": "review-moved"}, "adopted": {"bucket": "review-imported"}}},
        "moved": [{"from": "aws_s3_bucket.old", "to": "aws_s3_bucket.renamed"}],
        "import": [{"to": "aws_s3_bucket.adopted", "id": "review-imported"}],
        "removed": [{"from": "aws_s3_bucket.kept", "lifecycle": {"destroy": False}}]})


def test_empty_to_full_create(plans):
    review = plans["create"].review
    creates = review.count("create")
    assert creates > 40 and review.count("update") == review.count("delete") == review.count("replace") == 0
    assert review.headline() == f"+{creates} ~0 -0 ±0"
    assert plans["create"].exit_code == 0  # creating protected resources is fine
    text = plans["create"].markdown
    assert text.startswith(MARKER.format(env="local"))
    assert f"`+{creates} ~0 -0 ±0`" in text and f"#### + create ({creates})" in text
    assert "`cluster/cluster` <sub>`aws_eks_cluster.cluster_" in text  # construct path, then the address
    assert re.search(r"\| `pool-system/node-group` \| t3\.large on-demand × 1 \| 730 h \| \$0\.0832/h \| \$0 → \$60\.74 \(\+\$61\) \| "
                     r"\[ec2\]\(https://aws\.amazon\.com/ec2/pricing/on-demand/\) \|", text), text[:3000]
    assert re.search(r"\*\*Monthly cost:\*\* \$0 → \$\d+ \(\*\*\+\$\d+\*\*\)", text)
    assert "**checkov** on the stack:" in text and plans["create"].review.checkov["passed"] > 50
    assert "<details><summary>Full plan" in text and len(text) <= COMMENT_LIMIT


def test_no_change_plan_says_so_and_nothing_more(plans):
    assert plans["same"].review.has_changes is False
    assert plans["same"].markdown == f"{MARKER.format(env='local')}\n### `platform-local`: no changes\n"


def test_node_pool_resize_is_an_update_with_its_cost(plans):
    result = plans["resize"]
    [change] = result.review.changes
    assert change.action == "update" and change.type == "aws_eks_node_group"
    assert change.construct == "pool-system/node-group"
    assert {"scaling_config[0].min_size: 1 → 2", "scaling_config[0].max_size: 2 → 3"} <= set(change.attributes)
    assert result.exit_code == 0 and result.review.headline() == "+0 ~1 -0 ±0"
    # The autoscaler owns desired_size, so the priced instance count (and the monthly cost) stays.
    assert "| `pool-system/node-group` | t3.large on-demand × 1 | 730 h | $0.0832/h | $60.74 |" in result.markdown
    assert re.search(r"\*\*Monthly cost:\*\* \$(\d+) → \$\1 \(\*\*±\$0\*\*\)", result.markdown)


def test_replacing_a_protected_resource_warns_and_exits_3(plans):
    result = plans["replace"]
    assert result.exit_code == EXIT_PROTECTED
    replaced = {c.type: c for c in result.review.changes if c.action == "replace"}
    assert "aws_ecr_repository" in replaced and replaced["aws_ecr_repository"].forced_by == ["name"]
    assert [c.type for c in result.review.dangerous] == ["aws_ecr_repository"]  # its lifecycle policy and key alias are not protected
    text = result.markdown
    assert "> [!CAUTION]" in text and "**replace** registry `registry/repository`" in text and "forced by `name`" in text


def test_destroy_plan_lists_every_protected_resource(plans):
    result = plans["destroy"]
    review = result.review
    assert review.count("delete") == plans["create"].review.count("create")
    assert result.exit_code == EXIT_PROTECTED
    kinds = {c.type for c in review.dangerous}
    assert {"aws_eks_cluster", "aws_eks_node_group", "aws_ecr_repository", "aws_s3_bucket"} <= kinds


def test_moves_imports_and_forgets_are_grouped_and_none_is_a_destroy(plans):
    result = plans["moves"]
    by_action = {c.action: c for c in result.review.changes}
    assert sorted(by_action) == ["forget", "import", "move"]
    assert by_action["move"].address == "aws_s3_bucket.renamed" and by_action["move"].previous_address == "aws_s3_bucket.old"
    assert by_action["forget"].address == "aws_s3_bucket.kept"
    # the provider fills in default tags on import: that update is shown, not hidden behind "import"
    assert by_action["import"].address == "aws_s3_bucket.adopted"
    assert any(a.startswith("tags_all.managed-by: null →") for a in by_action["import"].attributes), by_action["import"].attributes
    assert result.review.headline() == "+0 ~0 -0 ±0 ⊘1 →1 ⇐1" and result.exit_code == 0 and not result.review.dangerous
    text = result.markdown
    assert "#### ⊘ forget (1) — leaves Terraform's state, stays in AWS" in text
    assert "- `aws_s3_bucket.renamed` <sub>`aws_s3_bucket.renamed`</sub> (from `aws_s3_bucket.old`)" in text
    assert "#### ⇐ import (1)" in text


def test_sensitive_values_and_credentials_never_appear(plans):
    for name in ("resize", "secrets"):
        text = plans[name].markdown
        assert AWS_KEY not in text, name
    text = plans["secrets"].markdown
    assert "Sup3r-Secret-Value-42" not in text and "hunter2hunter2" not in text and "ghp_a1B2" not in text
    assert "postgres://app:****@db.internal" in text  # the URL stays readable, the password does not
    assert "(sensitive value)" in text  # terraform's own marker in the folded plan


def test_a_huge_plan_is_truncated_keeping_headline_warnings_and_costs(plans):
    result = plans["destroy"]
    review = result.review
    show = "\n".join(f"  # resource line {i} " + "x" * 80 for i in range(2000))  # ~200 kB of plan text
    text = render_markdown(review, show)
    assert len(text) <= COMMENT_LIMIT
    assert "Truncated to fit GitHub's 65,536-character comment limit" in text
    assert text.count("<details>") == text.count("</details>") == 1 and text.count("```") == 2
    for must in (review.headline(), "> [!CAUTION]", "**Monthly cost:**"):
        assert must in text
    # Even a resource list too long for the limit keeps the head and closes cleanly.
    many = build_review("local", "us-east-1", {"resource_changes": [
        {"address": f"aws_s3_bucket.b{i}", "type": "aws_s3_bucket", "change": {"actions": ["delete"], "before": {}, "after": None}}
        for i in range(3000)]})
    text = render_markdown(many, show)
    assert len(text) <= COMMENT_LIMIT and many.headline() in text and "> [!CAUTION]" in text
    assert "resource list cut" in text


def test_masking_covers_the_usual_credential_shapes():
    samples = {
        "aws key id": f"id={AWS_KEY}",
        "private key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "github token": "token ghp_" + "Z" * 36,
        "password in url": "https://user:pa55word@example.com/x",
        "assignment": 'client_secret = "abcdEFGH12345678"',
        "eks token": "k8s-aws-v1." + "a" * 40,
    }
    for what, sample in samples.items():
        masked = mask_secrets(sample)
        assert masked != sample, what
    assert "pa55word" not in mask_secrets(samples["password in url"])
    assert mask_secrets("+ name = \"platform-local\"") == "+ name = \"platform-local\""  # ordinary text untouched
    assert mask_secrets("sha 3f786850e387550fdab836ed7e6dc881de23001b") == "sha 3f786850e387550fdab836ed7e6dc881de23001b"


@SERVICES
def test_cli_plan_writes_the_review_and_reports_synthesis_time(repo_copy, run_cli, tmp_path):
    """`toolkit plan` end to end: synthesis in its own process, init, plan, show; JSON to --out."""
    for name in ("infra", "modules", "cdktf.json"):
        (repo_copy / name).symlink_to(REPO / name)
    (repo_copy / ".cache").mkdir()
    (repo_copy / ".cache" / "jsii").symlink_to(REPO / ".cache" / "jsii")  # the unpacked jsii packages, shared
    env_file = repo_copy / "environments" / "local.yaml"
    env_file.write_text(env_file.read_text().replace("http://127.0.0.1:4566", f"http://127.0.0.1:{free_port()}"))
    try:
        result = run_cli("plan", "--env", "local", "--format", "json", "--out", tmp_path / "review.json", "--no-checkov")
    finally:
        stop_moto(ProjectPaths(repo_copy))
    assert result.exit_code == 0, result.output
    review = json.loads(result.stdout)
    assert review == json.loads((tmp_path / "review.json").read_text())
    assert review["has_changes"] and review["headline"].startswith("+") and review["headline"].endswith("~0 -0 ±0")
    assert review["protected_destroyed"] == []
    assert {"synth_s", "terraform_s", "total_s"} <= set(review["timings"])
    assert "plan: synth" in result.stderr and "plan: +" in result.stderr
    # What synthesis recorded it read: the config model and the store's layout, not the CLI or the server.
    read = set(recorded_sources(ProjectPaths(repo_copy).stack_dir("local")))
    assert {REPO / "toolkit" / "config.py", REPO / "toolkit" / "store" / "layout.py", REPO / "toolkit" / "monitoring" / "rules.py",
            REPO / "toolkit" / "terraform" / "price_table.json"} <= read
    assert not any(path.is_relative_to(REPO / "toolkit" / sub) for path in read for sub in ("cli", "serve", "delivery"))
    assert all(path.is_file() for path in read)


def _pool(name: str, instance_type: str, min_size: int, desired: int) -> dict:
    return {"node_group_name": name, "instance_types": [instance_type],
            "scaling_config": [{"min_size": min_size, "desired_size": desired, "max_size": desired + 1}]}


def _resize_plan(*pools) -> dict:
    return {"resource_changes": [{"address": f"aws_eks_node_group.{before['node_group_name']}", "type": "aws_eks_node_group",
                                  "change": {"actions": ["update"], "before": before, "after": after}} for before, after in pools]}


def test_an_unpriced_instance_type_is_listed_as_not_priced_and_left_out_of_the_total():
    """Issue 13 item 11: p4d.24xlarge-like types missing from the table read as free ($0 → $0)."""
    plan = _resize_plan((_pool("gpu", "g5.xlarge", 0, 1), _pool("gpu", "p5e.96xlarge", 0, 1)),
                        (_pool("system", "m6i.large", 1, 2), _pool("system", "m6i.large", 2, 2)))
    review = build_review("prod", "eu-west-1", plan)
    # Priced before and not after, the gpu pool is left out of both totals: no fake −$820.
    assert review.cost.after.not_priced == review.cost.before.not_priced == {"aws_eks_node_group": 1}
    text = render_markdown(review)
    assert "Not priced (no entry in the price table; left out of the totals): `aws_eks_node_group` ×1" in text
    assert "`aws_eks_node_group.gpu` |" not in text
    assert "| `aws_eks_node_group.system` | m6i.large on-demand × 2 | 1,460 h | $0.107/h | $156 |" in text
    assert "**Monthly cost:** $161 → $161 (**±$0**)" in text


def test_the_price_table_covers_every_gpu_family_in_every_shipped_region():
    from toolkit.config import GPU_INSTANCE_FAMILIES, load_all_environments
    from toolkit.terraform.cost import NODE_PRICES

    prices = json.loads(NODE_PRICES.read_text())
    assert prices["source"] and re.fullmatch(r"\d{4}-\d{2}-\d{2}", prices["date"])
    for env, config in load_all_environments().items():
        table = prices["hourly"][config.aws.region]
        families = {t.split(".")[0] for t in table}
        assert {"g4dn", "g5", "g6", "g6e", "p4d", "p5"} <= families, (env, sorted(families))
        assert GPU_INSTANCE_FAMILIES <= families, sorted(GPU_INSTANCE_FAMILIES - families)
        for pool in config.node_pools:
            assert pool.instance_types[0] in table, (env, pool.name, pool.instance_types)
