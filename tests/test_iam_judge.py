"""Who may do what, judged by tools we did not write.

- The IAM simulator `@cloud-copilot/iam-simulate` (npm, tests/iam_judge.mjs) evaluates each request
  against the principal's identity policies and the resource's policy (bucket, secret, KMS key
  policy, queue) of the synthesized stacks, rendered as AWS gets them (tests/iam_policies.py). A
  table of (role, action, resource) → allowed or denied, across roles, environments and resources.
- parliament (PyPI) lints every policy document the stacks synthesize: no finding, but the few
  listed in PARLIAMENT_SKIPS with their reason.

Before issue 26 the table failed on, among others: the deploy role writing its own promotion
records (allowed), an administrator reading the signing key (allowed: no resource policy) and the
retrain controller's queue (no such role or queue).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from iam_policies import stack_policies

from conftest import REPO
from toolkit.config import load_environment

ALLOWED, DENIED = "Allowed", ("ExplicitlyDenied", "ImplicitlyDenied")
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ENVS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def stacks(synthesized) -> dict:
    return {env: stack_policies(synthesized[env], load_environment(env).aws.account_id, load_environment(env).aws.region) for env in ENVS}


def judge(simulations: list[dict]) -> list[dict]:
    result = subprocess.run(["node", str(REPO / "tests" / "iam_judge.mjs")], input=json.dumps(simulations), capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class World:
    """Every principal and resource policy of the three cloud stacks, and the ARNs the table names."""

    def __init__(self, stacks: dict) -> None:
        self.identities = {arn: role["policies"] for policies in stacks.values() for arn, role in policies.roles.items()}
        self.resources = {arn: doc for policies in stacks.values() for arn, doc in policies.resources.items()}

    def role(self, env: str, name: str) -> str:
        config = load_environment(env)
        return f"arn:aws:iam::{config.aws.account_id}:role/{config.cluster.name}-{name}"

    def admin(self, env: str) -> str:
        """A principal of the account with AdministratorAccess-like rights (what a broad IAM grant looks like)."""
        return f"arn:aws:iam::{load_environment(env).aws.account_id}:role/break-glass-admin"

    def object(self, env: str, key: str) -> str:
        return f"arn:aws:s3:::{load_environment(env).artifact_store.bucket}/{key}"

    def secret(self, env: str, which: str) -> str:
        config = load_environment(env)
        name = config.signing_secret_name if which == "signing" else config.feedback_secret_name
        return f"arn:aws:secretsmanager:{config.aws.region}:{config.aws.account_id}:secret:{name}-AbCdEf"

    def store_key(self, env: str) -> str:
        return next(arn for arn in self.resources if arn.startswith(f"arn:aws:kms:{load_environment(env).aws.region}:"
                                                                     f"{load_environment(env).aws.account_id}:key/artifact-store"))

    def queue(self, env: str) -> str:
        config = load_environment(env)
        return f"arn:aws:sqs:{config.aws.region}:{config.aws.account_id}:{config.cluster.name}-retrain"

    def simulation(self, principal: str, action: str, resource: str, context: dict | None = None) -> dict:
        account = principal.split(":")[4]
        identity = [ADMIN_POLICY] if principal.endswith("/break-glass-admin") else self.identities[principal]
        resource_account = resource.split(":")[4]
        if resource.startswith("arn:aws:s3:::"):  # an S3 ARN names no account: the bucket's owner's
            bucket = resource.split(":::")[1].split("/")[0]
            resource_account = next(load_environment(e).aws.account_id for e in ENVS
                                    if bucket in (load_environment(e).artifact_store.bucket, load_environment(e).state.bucket))
        policy = self._resource_policy(resource)
        simulation = {
            "identityPolicies": [{"name": f"p{i}", "policy": p} for i, p in enumerate(identity)],
            "request": {"principal": principal, "action": action, "resource": {"accountId": resource_account, "resource": resource},
                        "contextVariables": {"aws:PrincipalArn": principal, "aws:PrincipalAccount": account,
                                             "aws:SecureTransport": "true", **(context or {})}},
        }
        if policy is not None:
            simulation["resourcePolicy"] = policy
        return simulation

    def _resource_policy(self, resource: str) -> dict | None:
        """The policy of the resource (an object's: its bucket's); None: it has none."""
        if resource.startswith("arn:aws:s3:::"):
            return self.resources.get(f"arn:aws:s3:::{resource.split(':::')[1].split('/')[0]}")
        return self.resources.get(resource)


def _via(service: str, env: str) -> dict:
    return {"kms:ViaService": f"{service}.{load_environment(env).aws.region}.amazonaws.com",
            "kms:CallerAccount": load_environment(env).aws.account_id}


def _cases(world: World) -> list[tuple[str, str, str, str, dict | None, bool]]:
    """(what, principal, action, resource, context, allowed?)"""
    w = world
    prod_state = load_environment("prod").state
    state = f"arn:aws:s3:::{prod_state.bucket}/{prod_state.key}"
    return [
        # promotion records: only the promote role writes them; whoever deploys only reads them
        ("deploy role writes its own promotion record", w.role("prod", "ci-deploy"), "s3:PutObject", w.object("prod", "promotions/prod/x.json"), None, False),
        ("deploy role reads its promotion records", w.role("prod", "ci-deploy"), "s3:GetObject", w.object("prod", "promotions/prod/x.json"), None, True),
        ("promote role writes the promotion record", w.role("prod", "ci-promote"), "s3:PutObject", w.object("prod", "promotions/prod/x.json"), None, True),
        ("an administrator writes a promotion record", w.admin("prod"), "s3:PutObject", w.object("prod", "promotions/prod/x.json"), None, False),
        ("promote role reads the source's verified release", w.role("prod", "ci-promote"), "s3:GetObject",
         w.object("staging", "releases/staging/latest.json"), None, True),
        ("deploy role reads the source's verified release", w.role("prod", "ci-deploy"), "s3:GetObject",
         w.object("staging", "releases/staging/latest.json"), None, False),
        ("promote role writes in the source", w.role("prod", "ci-promote"), "s3:PutObject", w.object("staging", "models/staging/v/x"), None, False),
        ("deploy role writes a model", w.role("prod", "ci-deploy"), "s3:PutObject", w.object("prod", "models/prod/v/weights.npz"), None, True),
        # sweeps: a sweep's pods (the training role) write their results, in their environment only
        ("training role writes a sweep result", w.role("prod", "training"), "s3:PutObject",
         w.object("prod", "sweeps/prod/sweep-0123456789ab/7.json"), None, True),
        ("training role writes another environment's sweep prefix", w.role("prod", "training"), "s3:PutObject",
         w.object("prod", "sweeps/staging/sweep-0123456789ab/7.json"), None, False),
        ("serving role writes a sweep result", w.role("prod", "serving"), "s3:PutObject",
         w.object("prod", "sweeps/prod/sweep-0123456789ab/7.json"), None, False),
        # secrets: their readers only
        ("training role reads the signing key", w.role("prod", "training"), "secretsmanager:GetSecretValue", w.secret("prod", "signing"), None, True),
        ("deploy role reads the signing key", w.role("prod", "ci-deploy"), "secretsmanager:GetSecretValue", w.secret("prod", "signing"), None, True),
        ("an administrator reads the signing key", w.admin("prod"), "secretsmanager:GetSecretValue", w.secret("prod", "signing"), None, False),
        ("serving role reads the signing key", w.role("prod", "serving"), "secretsmanager:GetSecretValue", w.secret("prod", "signing"), None, False),
        ("prod's deploy role reads dev's signing key", w.role("prod", "ci-deploy"), "secretsmanager:GetSecretValue", w.secret("dev", "signing"),
         None, False),
        ("an administrator sets the signing key", w.admin("prod"), "secretsmanager:PutSecretValue", w.secret("prod", "signing"), None, False),
        ("serving role reads the feedback credentials", w.role("prod", "serving"), "secretsmanager:GetSecretValue", w.secret("prod", "feedback"),
         None, True),
        ("training role reads the feedback credentials", w.role("prod", "training"), "secretsmanager:GetSecretValue", w.secret("prod", "feedback"),
         None, False),
        ("deploy role reads the feedback credentials", w.role("prod", "ci-deploy"), "secretsmanager:GetSecretValue", w.secret("prod", "feedback"),
         None, False),
        # the store's key: used through S3 and Secrets Manager, never directly
        ("an administrator decrypts with the store's key directly", w.admin("prod"), "kms:Decrypt", w.store_key("prod"), None, False),
        ("serving role decrypts through S3", w.role("prod", "serving"), "kms:Decrypt", w.store_key("prod"), _via("s3", "prod"), True),
        ("serving role decrypts directly", w.role("prod", "serving"), "kms:Decrypt", w.store_key("prod"), None, False),
        # state: the plan role writes its lock and nothing else; nobody in CI deletes the state
        ("plan role writes the state lock", w.role("prod", "ci-plan"), "s3:PutObject", f"{state}.tflock", None, True),
        ("plan role writes the state", w.role("prod", "ci-plan"), "s3:PutObject", state, None, False),
        ("deploy role deletes the state", w.role("prod", "ci-deploy"), "s3:DeleteObject", state, None, False),
        ("plan role writes the artifact store", w.role("prod", "ci-plan"), "s3:PutObject", w.object("prod", "models/prod/x"), None, False),
        # serving writes its logs, nothing else
        ("serving role writes predictions", w.role("prod", "serving"), "s3:PutObject", w.object("prod", "predictions/prod/d/x.jsonl.gz"), None, True),
        ("serving role writes feedback", w.role("prod", "serving"), "s3:PutObject", w.object("prod", "feedback/prod/d/x.jsonl.gz"), None, True),
        ("serving role writes a model", w.role("prod", "serving"), "s3:PutObject", w.object("prod", "models/prod/v/x"), None, False),
        ("serving role writes a decision", w.role("prod", "serving"), "s3:PutObject", w.object("prod", "decisions/prod/x.json"), None, False),
        # the retrain controller: its queue only
        ("controller receives from its queue", w.role("prod", "retrain-controller"), "sqs:ReceiveMessage", w.queue("prod"), None, True),
        ("controller deletes from its queue", w.role("prod", "retrain-controller"), "sqs:DeleteMessage", w.queue("prod"), None, True),
        ("controller sends to its queue", w.role("prod", "retrain-controller"), "sqs:SendMessage", w.queue("prod"), None, False),
        ("controller reads a model", w.role("prod", "retrain-controller"), "s3:GetObject", w.object("prod", "models/prod/v/x"), None, False),
        ("controller reads the feedback credentials", w.role("prod", "retrain-controller"), "secretsmanager:GetSecretValue",
         w.secret("prod", "feedback"), None, False),
        ("dev's controller receives from prod's queue", w.role("dev", "retrain-controller"), "sqs:ReceiveMessage", w.queue("prod"), None, False),
    ]


def test_the_simulator_decides_as_the_table_says(stacks):
    world = World(stacks)
    cases = _cases(world)
    results = judge([world.simulation(principal, action, resource, context) for _, principal, action, resource, context, _ in cases])
    wrong = []
    for (what, principal, action, resource, _, allowed), result in zip(cases, results, strict=True):
        assert result["errors"] is None, (what, result["errors"])
        if (result["result"] == ALLOWED) != allowed:
            wrong.append(f"{what}: {action} on {resource} by {principal}: {result['result']}")
    assert not wrong, "\n".join(wrong)


def test_the_judge_can_say_no_and_yes():
    """The simulator is not a rubber stamp: a plain allow and a plain deny, without our policies."""
    simulation = {"identityPolicies": [{"name": "p", "policy": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/public/*"}]}}],
        "request": {"principal": "arn:aws:iam::111111111111:role/r", "action": "s3:GetObject",
                    "resource": {"accountId": "111111111111", "resource": "arn:aws:s3:::b/public/x"}, "contextVariables": {}}}
    denied = {**simulation, "request": {**simulation["request"], "resource": {"accountId": "111111111111", "resource": "arn:aws:s3:::b/private/x"}}}
    assert [r["result"] for r in judge([simulation, denied])] == ["Allowed", "ImplicitlyDenied"]


# parliament is an identity-policy linter; the findings it makes on what is not one, each with the reason
# it does not apply: (kind of document, issue, text in the finding's detail) → why.
PARLIAMENT_SKIPS = {
    ("trust", "MALFORMED", "neither Resource"): "a trust policy takes no Resource (AWS refuses one there)",
    ("trust", "UNKNOWN_FEDERATION_SOURCE", "oidc-provider/"): "parliament knows Cognito, web identity and SAML, not IAM OIDC providers "
                                                              "(GitHub's, the EKS cluster's)",
    ("resource", "RESOURCE_STAR", "kms:"): "in a key policy, Resource '*' is the key the policy is attached to",
    ("resource", "RESOURCE_STAR", "secretsmanager:"): "in a secret's resource policy, Resource '*' is that secret",
    ("resource", "RESOURCE_STAR", "ecr:"): "in a repository policy, Resource '*' is that repository",
    ("identity", "RESOURCE_STAR", "ecr:GetAuthorizationToken"): "ECR's login takes no resource: AWS allows only '*'",
}


def _kind(where: str) -> str:
    return "trust" if where.endswith("(trust)") else "identity" if where.startswith("aws_iam_role_policy.") else "resource"


def test_parliament_finds_nothing_in_any_policy_the_stacks_synthesize(stacks, tmp_path):
    documents = {f"{env}: {where}": doc for env, policies in stacks.items() for where, doc in policies.documents.items()}
    script = tmp_path / "lint.py"
    script.write_text(
        "import json, sys\n"
        "from parliament import analyze_policy_string\n"
        "out = {}\n"
        "for name, doc in json.load(sys.stdin).items():\n"
        "    policy = analyze_policy_string(json.dumps(doc), include_community_auditors=False)\n"
        "    out[name] = [{'issue': f.issue, 'severity': f.severity, 'detail': str(f.detail)[:300]} for f in policy.findings]\n"
        "print(json.dumps(out))\n")
    result = subprocess.run([str(REPO / ".venv-tools" / "bin" / "python"), str(script)], input=json.dumps(documents), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    findings = json.loads(result.stdout)
    assert len(findings) == len(documents) > 20
    left = [f"{name}: {f['issue']} ({f['severity']}): {f['detail']}" for name, found in findings.items() for f in found
            if not any(kind == _kind(name.split(": ", 1)[1]) and issue == f["issue"] and needle in f["detail"]
                       for kind, issue, needle in PARLIAMENT_SKIPS)]
    assert not left, "\n".join(left)
