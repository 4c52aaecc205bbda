"""Integration: the real Terraform binary applies platform-local against a real moto server,
boto3 reads everything back, then destroy leaves nothing behind."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from conftest import PATHS, SERVICES, free_port
from toolkit.aws import client
from toolkit.config import load_all_environments, load_environment
from toolkit.context import Context
from toolkit.local.moto import start_moto, stop_moto
from toolkit.monitoring.rules import render as render_rules
from toolkit.paths import ProjectPaths
from toolkit.terraform.adapter import Workspace
from toolkit.terraform.outputs import stack_outputs
from toolkit.terraform.state import bootstrap_state_bucket

pytestmark = SERVICES  # they start services of their own: not in `make test-fast`


@pytest.fixture(scope="module")
def local_config(tmp_path_factory):
    """The shipped local config pointed at a moto server of this test's own (its own port and state dir)."""
    root = ProjectPaths(tmp_path_factory.mktemp("moto-root"))
    url = f"http://127.0.0.1:{free_port()}"
    start_moto(root, url)
    config = load_environment("local")
    config = config.model_copy(update={"aws": config.aws.model_copy(update={"endpoint_url": url})})
    yield config
    stop_moto(root)


def _synth(configs, outdir):
    from infra.app import build_app

    build_app(configs, outdir=str(outdir)).synth()
    return outdir / "stacks"


def test_full_synth_of_every_stack_passes_terraform_validate(tmp_path):
    stacks = _synth(load_all_environments(), tmp_path)
    assert sorted(p.name for p in stacks.iterdir()) == ["platform-dev", "platform-local", "platform-prod", "platform-staging"]
    workspace = Workspace(stacks / "platform-prod", PATHS)
    workspace.init(backend=False)
    workspace.validate()


def _hcl_stack(config, tmp_path):
    """`toolkit hcl` of this test's local stack: a checkout whose local.yaml points at this test's moto."""
    from toolkit.terraform.hcl import export_hcl

    root = tmp_path / "hcl-checkout"
    (root / "environments").mkdir(parents=True)
    shipped = (PATHS.environments / "local.yaml").read_text()
    (root / "environments" / "local.yaml").write_text(shipped.replace("http://127.0.0.1:4566", config.aws.endpoint_url))
    for name in ("infra", "modules", "cdktf.json", "node_modules", ".cache"):
        (root / name).symlink_to(PATHS.root / name)
    return export_hcl(ProjectPaths(root), tmp_path / "hcl", ["local"])["platform-local"]


def test_apply_read_back_and_destroy_on_moto(local_config, tmp_path):
    config = local_config
    assert bootstrap_state_bucket(config) is True
    assert bootstrap_state_bucket(config) is False  # idempotent
    workspace = Workspace(_synth({"local": config}, tmp_path) / "platform-local", PATHS)
    workspace.init()
    workspace.apply()
    try:
        # Idempotent: nothing drifts between the emulator and the configuration.
        assert workspace.plan_has_changes() is False
        # The way out of CDKTF: the same stack as plain HCL, on the same remote state, plans no change.
        hcl = Workspace(_hcl_stack(config, tmp_path), PATHS)
        hcl.init()
        assert hcl.plan_has_changes() is False
        outputs = workspace.outputs()
        assert outputs["cluster_name"] == config.cluster.name
        assert outputs["registry_url"].endswith(config.registry.name)

        # A checkout that never deployed reads the same outputs from the remote state (init on demand).
        elsewhere = ProjectPaths(tmp_path / "other-checkout")
        copy = elsewhere.stack_dir("local")
        copy.mkdir(parents=True)
        (copy / "cdk.tf.json").write_text((workspace.directory / "cdk.tf.json").read_text())
        assert stack_outputs(Context(config, elsewhere)) == outputs

        eks = client("eks", config)
        cluster = eks.describe_cluster(name=config.cluster.name)["cluster"]
        assert cluster["status"] == "ACTIVE"
        assert cluster["version"] == config.cluster.kubernetes_version
        gpu_pool = config.gpu_pools()[0]
        group = eks.describe_nodegroup(clusterName=config.cluster.name, nodegroupName=f"{config.cluster.name}-{gpu_pool.name}")["nodegroup"]
        assert group["amiType"] == gpu_pool.ami_type
        assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
        assert group["labels"] == gpu_pool.labels
        assert group["scalingConfig"]["minSize"] == 0
        assert sorted(eks.list_nodegroups(clusterName=config.cluster.name)["nodegroups"]) == sorted(outputs["node_pools"])

        repo = client("ecr", config).describe_repositories(repositoryNames=[config.registry.name])["repositories"][0]
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"

        s3 = client("s3", config)
        bucket = config.artifact_store.bucket
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        # Monitoring: the AMP workspace with its logging, the same rules as every other target, the alert topic.
        amp = client("amp", config)
        [amp_workspace] = [w for w in amp.list_workspaces()["workspaces"] if w["alias"] == f"{config.cluster.name}-metrics"]
        namespace = amp.describe_rule_groups_namespace(workspaceId=amp_workspace["workspaceId"], name="toolkit-serving")
        assert namespace["ruleGroupsNamespace"]["data"].decode() == render_rules(config)
        logging = amp.describe_logging_configuration(workspaceId=amp_workspace["workspaceId"])["loggingConfiguration"]
        assert logging["logGroupArn"].endswith(f"log-group:/aws/prometheus/{config.cluster.name}:*")
        assert outputs["prometheus_endpoint"].endswith(f"/workspaces/{amp_workspace['workspaceId']}/")
        topic = client("sns", config).get_topic_attributes(TopicArn=outputs["alert_topic_arn"])["Attributes"]
        assert topic["KmsMasterKeyId"].startswith("arn:aws:kms:") and "aps.amazonaws.com" in topic["Policy"]
        # CI identity: GitHub's OIDC provider and the deploy role trusting this environment's GitHub environment only.
        iam = client("iam", config)
        providers = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
        assert any(arn.endswith("oidc-provider/token.actions.githubusercontent.com") for arn in providers)
        deploy_role = iam.get_role(RoleName=f"{config.cluster.name}-ci-deploy")["Role"]
        assert outputs["deploy_role_arn"] == deploy_role["Arn"]
        trust = deploy_role["AssumeRolePolicyDocument"]
        trust = json.loads(urllib.parse.unquote(trust)) if isinstance(trust, str) else trust
        [statement] = trust["Statement"]
        assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == \
            f"repo:{config.ci.github_repository}:environment:local"
        assert client("secretsmanager", config).describe_secret(SecretId=config.signing_secret_name)["Name"] == outputs["signing_key_secret"]
        # Remote state landed in the state bucket, with the S3 lockfile released.
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=config.state.bucket).get("Contents", [])]
        assert keys == [config.state.key]
    finally:
        workspace.destroy()

    assert workspace.state_resources() == []
    assert client("eks", config).list_clusters()["clusters"] == []
    assert client("ecr", config).describe_repositories()["repositories"] == []
    assert [b["Name"] for b in client("s3", config).list_buckets()["Buckets"]] == [config.state.bucket]
    assert client("ec2", config).describe_nat_gateways(
        Filters=[{"Name": "state", "Values": ["available", "pending"]}])["NatGateways"] == []
