"""CI identity and cluster access on the synthesized stacks: who may assume the plan and deploy
roles (one exact subject each, GitHub's audience, GitHub's provider), what each may do, and who
may use the cluster's Kubernetes API. Trust and permission documents are data sources rendered by
Terraform at apply time, so the assertions read the synthesized data blocks. (Applied on moto in
test_infra_local.)"""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from infra_helpers import resources, synth_stack
from modules.ci_identity import AUDIENCE, GITHUB_OIDC_HOST
from toolkit.config import load_environment

REAL = ("dev", "staging", "prod")


def _documents(synth: dict) -> dict[str, dict]:
    """The CI documents by role and kind: {"plan-trust": {...}, "deploy-policy": {...}, ...} (and the
    promote role's where the environment promotes from another)."""
    found = {}
    for key, document in synth["data"]["aws_iam_policy_document"].items():
        for role in ("plan", "deploy", "promote"):
            for kind in ("trust", "policy-document"):
                if key.startswith(f"ci_{role}-{kind}_"):
                    found[f"{role}-{kind.split('-')[0]}"] = document
    assert {"deploy-policy", "deploy-trust", "plan-policy", "plan-trust"} <= set(found)
    assert set(found) - {"deploy-policy", "deploy-trust", "plan-policy", "plan-trust"} in (set(), {"promote-policy", "promote-trust"})
    return found


def _actions(document: dict) -> dict[str, list[str]]:
    """{action: resources} over every statement."""
    out: dict[str, list[str]] = {}
    for statement in document["statement"]:
        for action in statement["actions"]:
            out.setdefault(action, []).extend(statement["resources"])
    return out


@pytest.mark.parametrize("env", ["local", *REAL])
def test_each_role_trusts_one_exact_subject_of_the_repository_through_githubs_provider(synthesized, env):
    config = load_environment(env)
    documents = _documents(synthesized[env])
    repository = config.ci.github_repository
    expected = {"plan": f"repo:{repository}:pull_request", "deploy": f"repo:{repository}:environment:{env}"}
    if config.promotion_from:  # the promotion job runs in a GitHub environment of its own
        expected["promote"] = f"repo:{repository}:environment:{env}-promotion"
    assert ("promote-trust" in documents) == bool(config.promotion_from)
    providers = synthesized[env]["resource"]["aws_iam_openid_connect_provider"]
    [github] = [p for key, p in providers.items() if key.startswith("ci_github-oidc")]  # the other one is the cluster's (IRSA)
    for role, subject in expected.items():
        [statement] = documents[f"{role}-trust"]["statement"]
        assert statement["actions"] == ["sts:AssumeRoleWithWebIdentity"] and statement["effect"] == "Allow"
        [principal] = statement["principals"]
        assert principal["type"] == "Federated" and len(principal["identifiers"]) == 1
        assert "github-oidc" in principal["identifiers"][0] and principal["identifiers"][0].endswith(".arn}")
        conditions = {c["variable"]: c for c in statement["condition"]}
        assert set(conditions) == {f"{GITHUB_OIDC_HOST}:aud", f"{GITHUB_OIDC_HOST}:sub"}
        assert all(c["test"] == "StringEquals" for c in conditions.values())  # never StringLike
        assert conditions[f"{GITHUB_OIDC_HOST}:aud"]["values"] == [AUDIENCE]
        assert conditions[f"{GITHUB_OIDC_HOST}:sub"]["values"] == [subject]
        assert "*" not in subject and "?" not in subject
    assert github["url"] == "https://token.actions.githubusercontent.com" and github["client_id_list"] == [AUDIENCE]


def test_an_environment_in_an_account_that_has_the_provider_looks_it_up():
    config = load_environment("staging")
    synth = synth_stack(config.model_copy(update={"ci": config.ci.model_copy(update={"create_oidc_provider": False})}))
    assert not [k for k in synth["resource"]["aws_iam_openid_connect_provider"] if k.startswith("ci_")]
    [lookup] = synth["data"]["aws_iam_openid_connect_provider"].values()
    assert lookup["url"] == "https://token.actions.githubusercontent.com"
    trust = _documents(synth)["deploy-trust"]["statement"][0]
    assert trust["principals"][0]["identifiers"][0].startswith("${data.aws_iam_openid_connect_provider.")


@pytest.mark.parametrize("env", REAL)
def test_the_plan_role_reads_and_writes_only_the_state_lock(synthesized, env):
    config = load_environment(env)
    actions = _actions(_documents(synthesized[env])["plan-policy"])
    state = f"arn:aws:s3:::{config.state.bucket}/{config.state.key}"
    writes = {a: r for a, r in actions.items() if a.split(":")[1].startswith(("Put", "Delete", "Create", "Update", "Upload",
                                                                               "Initiate", "Complete", "Attach", "Tag"))}
    assert writes == {"s3:PutObject": [f"{state}.tflock"], "s3:DeleteObject": [f"{state}.tflock"]}
    assert actions["s3:GetObject"] == [state]  # no artifact, no dataset
    for forbidden in ("secretsmanager:GetSecretValue", "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "eks:AccessKubernetesApi",
                      "kms:GenerateDataKey", "iam:PassRole", "sts:AssumeRole"):
        assert forbidden not in actions
    assert not any(a.endswith(":*") or a == "*" for a in actions)


@pytest.mark.parametrize("env", REAL)
def test_the_deploy_role_pushes_to_its_repository_and_writes_its_prefixes_only(synthesized, env):
    synth = synthesized[env]
    actions = _actions(_documents(synth)["deploy-policy"])
    [registry] = synth["resource"]["aws_ecr_repository"]
    push = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage")
    assert all(actions[a] == [f"${{aws_ecr_repository.{registry}.arn}}"] for a in push)
    assert actions["ecr:GetAuthorizationToken"] == ["*"]  # AWS offers no narrower resource
    objects = actions["s3:PutObject"]
    assert set(objects) <= set(actions["s3:GetObject"])
    assert all(r.split("}")[-1].rstrip("*").strip("/") for r in objects)  # a prefix, never the whole bucket
    assert any(r.endswith(f"/retrain/{env}/*") for r in objects) and any(r.endswith(f"/models/{env}/*") for r in objects)
    [secret] = [key for key, spec in synth["resource"]["aws_secretsmanager_secret"].items() if spec["name"].endswith("-model-signing-key")]
    assert actions["secretsmanager:GetSecretValue"] == [f"${{aws_secretsmanager_secret.{secret}.arn}}"]
    assert not any(a.startswith(("iam:", "ec2:", "kms:Create", "kms:Put")) for a in actions)
    assert not any(a.endswith(":*") or a == "*" for a in actions)


@pytest.mark.parametrize("env", REAL)
def test_cluster_access_is_explicit_entries_only(synthesized, env):
    config = load_environment(env)
    synth = synthesized[env]
    [cluster] = resources(synth, "aws_eks_cluster")
    assert cluster["access_config"] == {"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False}
    entries = synth["resource"]["aws_eks_access_entry"]
    principals = sorted(e["principal_arn"] for e in entries.values())
    [deploy_role] = [k for k in synth["resource"]["aws_iam_role"] if k.startswith("ci_deploy-role")]
    assert principals == sorted([f"${{aws_iam_role.{deploy_role}.arn}}", *config.cluster.admin_principals])
    associations = {}
    for association in synth["resource"]["aws_eks_access_policy_association"].values():
        entry = next(k for k in entries if k in association["principal_arn"])
        associations.setdefault(entries[entry]["principal_arn"], []).append(
            (association["policy_arn"].rsplit("/", 1)[1], association["access_scope"].get("namespaces")))
    assert sorted(associations[f"${{aws_iam_role.{deploy_role}.arn}}"]) == [
        ("AmazonEKSEditPolicy", [config.workloads.namespace, "kube-system"]), ("AmazonEKSViewPolicy", None)]
    for admin in config.cluster.admin_principals:
        assert associations[admin] == [("AmazonEKSClusterAdminPolicy", None)]


def test_the_local_cluster_has_no_access_entries_moto_cannot_apply(synthesized):
    synth = synthesized["local"]
    assert "aws_eks_access_entry" not in synth["resource"]
    [cluster] = resources(synth, "aws_eks_cluster")
    assert "access_config" not in cluster


@pytest.mark.parametrize("env", ["local", *REAL])
def test_role_arns_are_outputs_the_workflows_are_named_after(synthesized, env):
    outputs = synthesized[env]["output"]
    assert outputs["plan_role_arn"]["value"].startswith("${aws_iam_role.ci_plan-role")
    assert outputs["deploy_role_arn"]["value"].startswith("${aws_iam_role.ci_deploy-role")
    workflows = json.dumps([(REPO / ".github" / "workflows" / name).read_text() for name in ("plan-review.yml", "release.yml",
                                                                                               "retrain.yml")])
    assert "PLAN_ROLE_ARN_" in workflows and "DEPLOY_ROLE_ARN_" in workflows


@pytest.mark.parametrize("source_env, target_env", [("dev", "staging"), ("staging", "prod")])
def test_a_promotion_target_reads_its_sources_releases_models_and_images_and_nothing_else(synthesized, source_env, target_env):
    source, target = load_environment(source_env), load_environment(target_env)
    assert target.promotion_from == source_env
    role = target.ci_role_arn("promote")  # the promote role reads the source; the deploy role does not
    account_root = f"arn:aws:iam::{target.aws.account_id}:root"
    readable = [f"{source.artifact_store.models_prefix}{source_env}/", f"releases/{source_env}/"]

    # The target's promote role: read-only on the source (identity policy, in the target's stack).
    statements = {s["sid"]: s for s in _documents(synthesized[target_env])["promote-policy"]["statement"]}
    assert "PullFromPromotionSource" not in {s["sid"] for s in _documents(synthesized[target_env])["deploy-policy"]["statement"]}
    pull = statements["PullFromPromotionSource"]
    assert pull["resources"] == [f"arn:aws:ecr:{source.aws.region}:{source.aws.account_id}:repository/{source.registry.name}"]
    assert not any(a in pull["actions"] for a in ("ecr:PutImage", "ecr:InitiateLayerUpload"))
    read = statements["ReadPromotionSource"]
    assert read["actions"] == ["s3:GetObject"]
    assert read["resources"] == [f"arn:aws:s3:::{source.artifact_store.bucket}/{p}*" for p in readable]
    decrypt = statements["DecryptPromotionSourceThroughS3"]
    assert decrypt["actions"] == ["kms:Decrypt"] and decrypt["condition"][0]["values"] == [f"s3.{source.aws.region}.amazonaws.com"]

    # The source's resource policies grant exactly that role (by its account and ARN), the same reads.
    synth = synthesized[source_env]
    [repository_policy] = resources(synth, "aws_ecr_repository_policy")
    [grant] = json.loads(repository_policy["policy"])["Statement"]
    assert grant["Principal"] == {"AWS": [account_root]} and grant["Condition"]["ArnEquals"]["aws:PrincipalArn"] == [role]
    assert set(grant["Action"]) == set(pull["actions"])
    [bucket_policy] = resources(synth, "aws_s3_bucket_policy")
    assert f'"aws:PrincipalArn" = ["{role}"]' in bucket_policy["policy"]
    grants = _bucket_statements(synth, source)
    assert all(f'/{p}*"' in bucket_policy["policy"] for p in readable)
    assert not any("s3:PutObject" in s["Action"] for s in grants if s["Effect"] == "Allow")
    [store_key] = [k for key, k in synth["resource"]["aws_kms_key"].items() if key.startswith("artifact-store")]
    key_grant = json.loads(store_key["policy"])["Statement"][-1]
    assert key_grant["Action"] == ["kms:Decrypt"] and key_grant["Condition"]["ArnEquals"]["aws:PrincipalArn"] == [role]
    assert key_grant["Condition"]["StringEquals"]["kms:ViaService"] == f"s3.{source.aws.region}.amazonaws.com"


def test_an_environment_nothing_promotes_from_grants_nothing(synthesized):
    synth = synthesized["prod"]
    assert not resources(synth, "aws_ecr_repository_policy")
    assert not [s for s in _bucket_statements(synth, load_environment("prod")) if s["Effect"] == "Allow"]


def _bucket_statements(synth: dict, config) -> list[dict]:
    from iam_policies import stack_policies

    policies = stack_policies(synth, config.aws.account_id, config.aws.region)
    return policies.resources[f"arn:aws:s3:::{config.artifact_store.bucket}"]["Statement"]
