"""EKS access without kubectl or a kubeconfig: a bearer token made like `aws eks get-token`.

The token is `k8s-aws-v1.` + unpadded base64url of a presigned STS GetCallerIdentity URL that
signs the `x-k8s-aws-id: <cluster>` header. EKS accepts it for 15 minutes; we refresh a minute early.
"""

from __future__ import annotations

import base64
import tempfile
import time
from typing import Callable

from toolkit.aws import client as aws_client
from toolkit.config import EnvironmentConfig
from toolkit.errors import BadInputError, ToolkitError
from toolkit.paths import Output, stack_name

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_HEADER = "x-k8s-aws-id"
PRESIGN_SECONDS = 60  # what aws-cli and aws-iam-authenticator sign with
TOKEN_LIFETIME = 15 * 60  # EKS's acceptance window for a presigned request
REFRESH_MARGIN = 60


def presigned_identity_url(sts_client, cluster_name: str) -> str:
    def add_cluster_header(request, **_):
        request.headers[CLUSTER_HEADER] = cluster_name

    events = sts_client.meta.events
    events.register_first("before-sign.sts.GetCallerIdentity", add_cluster_header, unique_id="toolkit-k8s-aws-id")
    try:
        return sts_client.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=PRESIGN_SECONDS, HttpMethod="GET")
    finally:
        events.unregister("before-sign.sts.GetCallerIdentity", unique_id="toolkit-k8s-aws-id")


def make_token(sts_client, cluster_name: str) -> str:
    url = presigned_identity_url(sts_client, cluster_name)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class TokenSource:
    """A token that is remade when it is within REFRESH_MARGIN of expiring."""

    def __init__(self, sts_client, cluster_name: str, clock: Callable[[], float] = time.time) -> None:
        self.sts, self.cluster, self.clock = sts_client, cluster_name, clock
        self.token, self.expires_at = "", 0.0

    def current(self) -> str:
        now = self.clock()
        if now >= self.expires_at - REFRESH_MARGIN:
            self.token, self.expires_at = make_token(self.sts, self.cluster), now + TOKEN_LIFETIME
        return self.token


def cluster_access(config: EnvironmentConfig, outputs: dict) -> tuple[str, str, str]:
    """(endpoint, base64 CA, name) of the environment's EKS cluster: from the stack outputs when they
    have them, else from `eks describe-cluster` (a stack applied before these outputs existed)."""
    name = outputs.get(Output.CLUSTER_NAME) or config.cluster.name
    if outputs.get(Output.CLUSTER_ENDPOINT) and outputs.get(Output.CLUSTER_CA):
        return outputs[Output.CLUSTER_ENDPOINT], outputs[Output.CLUSTER_CA], name
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        cluster = aws_client("eks", config).describe_cluster(name=name)["cluster"]
    except (ClientError, BotoCoreError) as exc:
        raise ToolkitError(f"EKS cluster {name} ({config.aws.region}): the stack outputs have no endpoint and "
                           f"describe-cluster failed: {exc}. Run `cdktf deploy {stack_name(config.name)}` first.") from None
    if cluster.get("status") != "ACTIVE" or not cluster.get("endpoint"):
        raise ToolkitError(f"EKS cluster {name} is {cluster.get('status', 'not ready')}; wait until it is ACTIVE.")
    return cluster["endpoint"], cluster["certificateAuthority"]["data"], name


def eks_api_client(config: EnvironmentConfig, endpoint: str, ca_data_b64: str, cluster_name: str, clock: Callable[[], float] = time.time):
    """A kubernetes ApiClient for an EKS cluster from the stack outputs (endpoint, CA) and boto3 credentials."""
    from kubernetes import client

    source = TokenSource(aws_client("sts", config), cluster_name, clock)
    configuration = client.Configuration()
    configuration.host = endpoint
    ca_file = tempfile.NamedTemporaryFile(prefix="eks-ca-", suffix=".pem", delete=False)
    ca_file.write(base64.b64decode(ca_data_b64))
    ca_file.close()
    configuration.ssl_ca_cert = ca_file.name
    configuration.api_key_prefix["authorization"] = "Bearer"
    configuration.api_key["authorization"] = source.current()

    def refresh(conf) -> None:  # called by the client before every request
        conf.api_key["authorization"] = source.current()

    configuration.refresh_api_key_hook = refresh
    return client.ApiClient(configuration)


def kubeconfig_api_client(kubeconfig: str | None, context: str | None):
    """Any other cluster: a kubeconfig file and context (the kubernetes client's own loader)."""
    from kubernetes import config as kube_config

    try:
        return kube_config.new_client_from_config(config_file=kubeconfig, context=context)
    except (kube_config.ConfigException, OSError) as exc:
        raise BadInputError(f"cannot use kubeconfig {kubeconfig or '~/.kube/config'} context {context or '(current)'}: {exc}") from None
