"""Property tests of the synthesized stacks (cdktf.Testing), one synth per environment per session."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra_helpers import one, resources
from toolkit.config import load_environment

ENVS = ["local", "dev", "staging", "prod"]


@pytest.mark.parametrize("env", ENVS)
def test_gpu_pool_from_config(synthesized, env):
    config = load_environment(env)
    gpu_config = config.gpu_pools()[0]
    groups = {g["node_group_name"]: g for g in resources(synthesized[env], "aws_eks_node_group")}
    gpu = groups[f"{config.cluster.name}-{gpu_config.name}"]
    assert gpu["ami_type"] in ("AL2_x86_64_GPU", "AL2023_x86_64_NVIDIA")
    assert gpu["ami_type"] == gpu_config.ami_type
    assert gpu["instance_types"] == gpu_config.instance_types
    assert gpu["taint"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert gpu["scaling_config"]["min_size"] == 0
    assert gpu["scaling_config"]["max_size"] == gpu_config.max_size
    assert gpu["capacity_type"] == gpu_config.capacity_type
    assert gpu["labels"] == gpu_config.labels
    system = groups[f"{config.cluster.name}-system"]
    assert "taint" not in system and system["ami_type"] == "AL2023_x86_64_STANDARD"


@pytest.mark.parametrize("env", ENVS)
def test_launch_templates_require_imdsv2_and_encrypt_root(synthesized, env):
    templates = resources(synthesized[env], "aws_launch_template")
    assert len(templates) == len(load_environment(env).node_pools)
    for template in templates:
        assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1}
        ebs = template["block_device_mappings"][0]["ebs"]
        assert ebs["encrypted"] == "true" and ebs["volume_size"] >= 50


@pytest.mark.parametrize("env", ENVS)
def test_registry_is_immutable_scanned_encrypted(synthesized, env):
    repo = one(synthesized[env], "aws_ecr_repository")
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert repo["image_scanning_configuration"] == {"scan_on_push": True}
    assert repo["encryption_configuration"][0]["encryption_type"] == "KMS"
    rules = json.loads(one(synthesized[env], "aws_ecr_lifecycle_policy")["policy"])["rules"]
    assert rules[0]["selection"]["tagStatus"] == "untagged"
    assert rules[1]["selection"]["countNumber"] == load_environment(env).registry.keep_releases


@pytest.mark.parametrize("env", ENVS)
def test_bucket_encrypted_private_versioned_tls_only(synthesized, env):
    synth = synthesized[env]
    sse = one(synth, "aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    assert sse["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    block = one(synth, "aws_s3_bucket_public_access_block")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    assert one(synth, "aws_s3_bucket_versioning")["versioning_configuration"] == {"status": "Enabled"}
    if env == "local":  # moto serves plain HTTP and enforces bucket policies: TLS-only would refuse every request
        assert not resources(synth, "aws_s3_bucket_policy")
        return
    policy = one(synth, "aws_s3_bucket_policy")["policy"]  # jsonencode(...): rendered by Terraform
    assert policy.startswith("${jsonencode(") and '"Effect" = "Deny"' in policy
    assert '"Condition" = {"Bool" = {"aws:SecureTransport" = "false"}}' in policy


@pytest.mark.parametrize("env", ENVS)
def test_cluster_encrypts_secrets_and_logs(synthesized, env):
    cluster = one(synthesized[env], "aws_eks_cluster")
    config = load_environment(env)
    assert cluster["version"] == config.cluster.kubernetes_version
    assert cluster["encryption_config"]["resources"] == ["secrets"]
    assert "aws_kms_key" in cluster["encryption_config"]["provider"]["key_arn"]
    assert set(cluster["enabled_cluster_log_types"]) == {"api", "audit", "authenticator", "controllerManager", "scheduler"}
    assert all(k["enable_key_rotation"] for k in resources(synthesized[env], "aws_kms_key"))
    providers = synthesized[env]["resource"]["aws_iam_openid_connect_provider"]
    [irsa] = [p for key, p in providers.items() if key.startswith("cluster_")]  # the other is GitHub's (test_ci_identity)
    assert irsa["client_id_list"] == ["sts.amazonaws.com"] and irsa["url"].startswith("${aws_eks_cluster.")


def test_prod_is_private_protected_and_has_nat_per_az(synthesized):
    prod = synthesized["prod"]
    vpc = one(prod, "aws_eks_cluster")["vpc_config"]
    assert vpc["endpoint_public_access"] is False and vpc["endpoint_private_access"] is True
    for kind in ("aws_eks_cluster", "aws_ecr_repository", "aws_s3_bucket"):
        assert one(prod, kind)["lifecycle"]["prevent_destroy"] is True, kind
    assert len(resources(prod, "aws_nat_gateway")) == 3
    dev = synthesized["dev"]
    assert "prevent_destroy" not in json.dumps(one(dev, "aws_eks_cluster").get("lifecycle", {}))
    assert len(resources(dev, "aws_nat_gateway")) == 1


def test_irsa_roles_are_scoped_to_their_service_accounts(synthesized):
    local = synthesized["local"]
    documents = {key: d for key, d in local["data"]["aws_iam_policy_document"].items() if not key.startswith("ci_")}  # CI: test_ci_identity
    subjects = sorted(
        c["values"][0] for d in documents.values() for c in d["statement"][0].get("condition", []) if c["variable"].endswith(":sub")
    )
    assert subjects == ["system:serviceaccount:ml-platform:retrain-controller", "system:serviceaccount:ml-platform:serving",
                        "system:serviceaccount:ml-platform:training"]
    policies = {p["role"]: p["policy"] for p in resources(local, "aws_iam_role_policy")
                if "training-role" in p["role"] or "serving-role" in p["role"]}
    assert len(policies) == 2
    for policy in policies.values():
        assert '"s3:*"' not in policy and '"Action" = "*"' not in policy
    # the feedback loop: the server writes its logs, a retraining Job reads them and writes its challenger
    training = next(p for role, p in policies.items() if "training-role" in role)
    serving = next(p for role, p in policies.items() if "serving-role" in role)
    assert "/predictions/local/*" in serving and "/feedback/local/*" in serving and "retrain/" not in serving
    assert "/retrain/local/*" in training and "/predictions/local/*" in training


def test_remote_state_uses_s3_lockfile(synthesized):
    for env, synth in synthesized.items():
        backend = synth["terraform"]["backend"]["s3"]
        config = load_environment(env)
        assert backend["bucket"] == config.state.bucket and backend["use_lockfile"] is True and backend["encrypt"] is True
    local_backend = synthesized["local"]["terraform"]["backend"]["s3"]
    assert local_backend["endpoints"]["s3"] == load_environment("local").aws.endpoint_url


def test_stack_outputs(synthesized):
    outputs = set(synthesized["local"]["output"])
    assert {"cluster_name", "cluster_endpoint", "cluster_ca", "oidc_issuer", "registry_url", "bucket",
            "node_pools", "training_role_arn", "serving_role_arn"} <= outputs


def test_bad_environment_fails_before_synthesis(repo_copy):
    """`python -m infra` (what cdktf runs) reports the config error, exit 2, no jsii trace."""
    path = repo_copy / "environments" / "dev.yaml"
    path.write_text(path.read_text().replace("kubernetes_version:", "kubernetes_verison:"))
    from conftest import REPO

    result = subprocess.run([sys.executable, "-m", "infra"], capture_output=True, text=True, cwd=REPO,
                            env={**__import__("os").environ, "TOOLKIT_ROOT": str(repo_copy)})
    assert result.returncode == 2
    assert "dev.yaml" in result.stderr and "cluster.kubernetes_verison: unknown key" in result.stderr
    assert "jsii" not in result.stderr.lower()


@pytest.mark.parametrize("env", ENVS)
def test_vpc_flow_logs_to_encrypted_log_group(synthesized, env):
    flow = one(synthesized[env], "aws_flow_log")
    assert flow["traffic_type"] == "ALL" and flow["log_destination_type"] == "cloud-watch-logs"
    groups = resources(synthesized[env], "aws_cloudwatch_log_group")
    assert all(g["retention_in_days"] >= 365 and "kms_key_id" in g for g in groups)


def test_monitoring_construct_per_environment(synthesized):
    """AMP workspace (KMS, logging), the rules, the KMS-encrypted alert topic everywhere; the alert manager
    definition and the managed scraper where AMP's full API exists (not on moto: local.yaml turns them off)."""
    from toolkit.monitoring.rules import render

    for env in ENVS:
        synth, config = synthesized[env], load_environment(env)
        workspace = one(synth, "aws_prometheus_workspace")
        assert "aws_kms_key" in workspace["kms_key_arn"] and workspace["logging_configuration"]["log_group_arn"].endswith(":*")
        assert one(synth, "aws_prometheus_rule_group_namespace")["data"] == render(config)
        topics = {t["name"]: t for t in resources(synth, "aws_sns_topic")}
        assert set(topics) == {f"{config.cluster.name}-alerts", f"{config.cluster.name}-retrain"}
        assert all("aws_kms_key" in t["kms_master_key_id"] for t in topics.values())
        subscriptions = [s for s in resources(synth, "aws_sns_topic_subscription") if s["protocol"] != "sqs"]
        assert [(s["protocol"], s["endpoint"]) for s in subscriptions] == [(s.protocol, s.endpoint) for s in config.monitoring.amp.sns_subscriptions]
        # retrain alerts: their own topic → a KMS-encrypted queue with a dead-letter queue (modules/retrain_queue.py)
        queues = {q["name"]: q for q in resources(synth, "aws_sqs_queue")}
        assert set(queues) == {f"{config.cluster.name}-retrain", f"{config.cluster.name}-retrain-dead-letters"}
        assert all("aws_kms_key" in q["kms_master_key_id"] for q in queues.values())
        assert "deadLetterTargetArn" in queues[f"{config.cluster.name}-retrain"]["redrive_policy"]
        [to_queue] = [s for s in resources(synth, "aws_sns_topic_subscription") if s["protocol"] == "sqs"]
        assert "retrain_topic" in to_queue["topic_arn"] and "retrain_queue" in to_queue["endpoint"]
        managed = env != "local"
        assert bool(resources(synth, "aws_prometheus_alert_manager_definition")) == managed
        assert bool(resources(synth, "aws_prometheus_scraper")) == managed
    prod = synthesized["prod"]
    definition = one(prod, "aws_prometheus_alert_manager_definition")["definition"]
    assert definition.startswith("${yamlencode({\"alertmanager_config\" = yamlencode(") and "aws_sns_topic.monitoring_alerts" in definition
    scraper = one(prod, "aws_prometheus_scraper")
    assert "aws_eks_cluster" in scraper["source"][0]["eks"][0]["cluster_arn"]
    assert "job_name: serving" in scraper["scrape_configuration"]
    policy = resources(prod, "aws_sns_topic_policy")[0]["policy"]
    assert "data.aws_iam_policy_document" in policy
