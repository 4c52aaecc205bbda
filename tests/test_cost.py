"""The cost section of the plan review and `toolkit cost`: every priced resource a line with its
source, deltas from the plan's prior state, usage from a validated file, and what the table cannot
price listed as such (never $0)."""

from __future__ import annotations

import re

import pytest

from toolkit.config import load_all_environments
from toolkit.errors import ConfigError
from toolkit.terraform.cost import FREE_TYPES, PriceTable, stack_estimate
from toolkit.terraform.review import build_review, construct_paths, render_markdown
from toolkit.terraform.usage import UsageConfig, load_usage

SYNTH = {"resource": {
    "aws_nat_gateway": {"nat_b": {"//": {"metadata": {"path": "platform-prod/network/nat-eu-west-1b"}}}},
    "aws_eks_node_group": {"system": {"//": {"metadata": {"path": "platform-prod/pool-system/node-group"}},
                                      "launch_template": {"id": "${aws_launch_template.system_lt.id}", "version": "1"}}},
    "aws_launch_template": {"system_lt": {"block_device_mappings": [{"ebs": {"volume_size": 50, "volume_type": "gp3"}}]}},
}}
TEMPLATE = {"block_device_mappings": [{"device_name": "/dev/xvda", "ebs": [{"volume_size": 50, "volume_type": "gp3"}]}]}


def _change(address: str, kind: str, actions: list[str], before: dict | None, after: dict | None) -> dict:
    return {"address": address, "mode": "managed", "type": kind, "change": {"actions": actions, "before": before, "after": after}}


def _group(instance_type: str, desired: int) -> dict:
    return {"node_group_name": "platform-prod-system", "instance_types": [instance_type], "capacity_type": "ON_DEMAND",
            "scaling_config": [{"min_size": 1, "desired_size": desired, "max_size": 6}]}


def _plan(*changes) -> dict:
    unchanged = [_change("aws_launch_template.system_lt", "aws_launch_template", ["no-op"], TEMPLATE, TEMPLATE),
                 _change("aws_eks_node_group.system", "aws_eks_node_group", ["no-op"], _group("m6i.xlarge", 3), _group("m6i.xlarge", 3))]
    replaced = {c["address"] for c in changes}
    return {"resource_changes": [c for c in unchanged if c["address"] not in replaced] + list(changes)}


def test_a_plan_adding_a_nat_gateway_shows_its_hours_and_data_in_the_delta():
    plan = _plan(_change("aws_nat_gateway.nat_b", "aws_nat_gateway", ["create"], None, {"connectivity_type": "public"}))
    review = build_review("prod", "eu-west-1", plan, SYNTH, usage=UsageConfig.model_validate({"nat_gateway": {"processed_gb": 500}}),
                          usage_file="environments/prod.usage.yaml")
    text = render_markdown(review)
    assert "| `network/nat-eu-west-1b` | NAT gateway hours | 730 h | $0.048/Hrs | $0 → $35.04 (+$35) | [vpc](https://aws.amazon.com/vpc/pricing/) |" in text
    assert "| 〃 | NAT processed data ᵘ | 500 GB | $0.048/GB | $0 → $24.00 (+$24) | [vpc](https://aws.amazon.com/vpc/pricing/) |" in text
    assert round(review.cost.after.total - review.cost.before.total, 2) == 59.04
    assert "(**+$59**)" in text and "quantities from `environments/prod.usage.yaml`" in text


def test_a_plan_changing_only_an_instance_type_shows_the_node_pool_delta():
    plan = _plan(_change("aws_eks_node_group.system", "aws_eks_node_group", ["update"], _group("m6i.xlarge", 3), _group("m6i.2xlarge", 3)))
    review = build_review("prod", "eu-west-1", plan, SYNTH)
    text = render_markdown(review)
    # One row per component: the instances' row carries the delta, the unchanged root volumes none.
    assert re.search(r"\| `pool-system/node-group` \| m6i\.2xlarge on-demand × 3 \| 2,190 h \| \$0\.428/h \| \$469 → \$937 \(\+\$469\) \|", text), text
    assert "| 〃 | root volumes (gp3, 50 GB × 3) | 150 GB-month | $0.088/GB-Mo | $13.20 |" in text
    assert "(**+$469**)" in text


def test_a_resource_type_the_table_cannot_price_is_listed_never_zero():
    plan = _plan(_change("aws_prometheus_scraper.eks", "aws_prometheus_scraper", ["create"], None, {"alias": "x"}),
                 _change("aws_iam_role.r", "aws_iam_role", ["create"], None, {"name": "r"}))
    review = build_review("prod", "eu-west-1", plan, SYNTH)
    text = render_markdown(review)
    assert review.cost.after.not_priced == {"aws_prometheus_scraper": 1} and review.cost.after.free["aws_iam_role"] == 1
    assert "Not priced (no entry in the price table; left out of the totals): `aws_prometheus_scraper` ×1" in text
    assert "aws_prometheus_scraper.eks` |" not in text and "$0 → $0" not in text


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_every_line_of_the_stacks_cost_carries_a_source(synthesized, env):
    config = load_all_environments()[env]
    table = PriceTable.load()
    estimate = stack_estimate(synthesized[env], construct_paths(synthesized[env]), config.aws.region, UsageConfig(), table)
    kinds = {kind for kind in synthesized[env]["resource"]}
    assert estimate.lines and all(line.source in table.sources and table.sources[line.source]["url"].startswith("https://aws.amazon.com/")
                                  for line in estimate.lines)
    assert all(line.monthly >= 0 and line.construct for line in estimate.lines)  # (Testing.synth drops the construct metadata)
    # Every resource type is priced, free or listed as not priced: none falls through.
    priced = {line.address.split(".")[0] for line in estimate.lines}
    assert kinds == priced | set(estimate.free) | set(estimate.not_priced)
    assert set(estimate.free) <= FREE_TYPES
    things = {line.what.split(" ")[0] for line in estimate.lines}
    assert {"EKS", "NAT", "KMS", "log", "AMP", "S3", "ECR", "SNS", "SQS", "secret", "public"} <= things
    if env != "local":  # AMP's managed collector (not emulated, so not in local): no entry yet
        assert estimate.not_priced == {"aws_prometheus_scraper": 1}
    if env == "prod":
        assert sum(1 for line in estimate.lines if line.what == "NAT gateway hours") == 3  # one per zone


def test_the_usage_file_is_validated_like_the_environment_file(tmp_path):
    (tmp_path / "environments").mkdir()
    assert load_usage(tmp_path, "dev") == (UsageConfig(), None)
    path = tmp_path / "environments" / "dev.usage.yaml"
    path.write_text("nat_gateway:\n  processed_gigabytes: 10\nbucket:\n  stored_gb: -1\n")
    with pytest.raises(ConfigError) as error:
        load_usage(tmp_path, "dev")
    message = str(error.value)
    assert str(path) in message and "nat_gateway.processed_gigabytes: unknown key" in message
    assert "Allowed keys here: processed_gb." in message and "Did you mean 'processed_gb'?" in message
    assert "bucket.stored_gb: Input should be greater than or equal to 0" in message


def test_the_shipped_usage_files_load():
    from conftest import REPO

    for env in load_all_environments():
        usage, path = load_usage(REPO, env)
        assert path is not None and path.name == f"{env}.usage.yaml"


@pytest.mark.parametrize("volume, price", [("gp3", 0.088), ("gp2", 0.11), ("io1", 0.138), ("io2", 0.138), ("st1", 0.05), ("sc1", 0.0168)])
def test_ebs_is_priced_by_volume_type(volume, price):
    plan = _plan(_change("aws_ebs_volume.data", "aws_ebs_volume", ["create"], None, {"size": 100, "type": volume}))
    [line] = [line for line in build_review("prod", "eu-west-1", plan, SYNTH).cost.after.lines if line.address == "aws_ebs_volume.data"]
    assert (line.what, line.quantity, line.unit_price, line.monthly, line.source) == (f"EBS volume ({volume})", 100, price, round(100 * price, 2), "ebs")




def test_cli_cost_prints_the_stack_with_sources(run_cli, synthesized, tmp_path, monkeypatch):
    """`toolkit cost` over the synthesized local stack (synthesis itself: the session's, as
    test_plan_review's CLI test runs the real one)."""
    import json

    stack = tmp_path / "stacks" / "platform-local"
    stack.mkdir(parents=True)
    (stack / "cdk.tf.json").write_text(json.dumps(synthesized["local"]))
    monkeypatch.setattr("toolkit.terraform.synth.synthesize_if_changed", lambda ctx, outdir: (stack, False))
    result = run_cli("cost", "--env", "local", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["usage_file"].endswith("environments/local.usage.yaml") and report["region"] == "us-east-1"
    assert report["monthly_total"] == round(sum(line["monthly"] for line in report["lines"]), 2) > 0
    assert all(report["sources"][line["source"]]["url"] for line in report["lines"])
    assert report["not_priced"] == {} and report["free"]["aws_iam_role"] >= 5
    text = run_cli("cost", "--env", "local").stdout
    assert text.startswith(f"platform-local (us-east-1): {report['monthly_total']:,.2f} USD a month")
    assert re.search(r"\| `aws_eks_cluster\.cluster_\w+` \| EKS cluster hours \| 730 h \| \$0\.1/Hrs \| \$73\.00 \| "
                     r"\[eks\]\(https://aws\.amazon\.com/eks/pricing/\) \|", text), text[:2000]
