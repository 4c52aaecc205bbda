"""The EKS bearer token: `aws eks get-token`'s format, a SigV4 signature we recompute here from
the published algorithm (botocore presigns it), and refresh before expiry.

(moto's server cannot answer the presigned GET: it routes a bare query-string request to S3.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

import boto3
import pytest

from kube_emulator import EmulatorThread
from toolkit.config import load_environment
from toolkit.errors import ToolkitError
from toolkit.workloads import eks_auth
from toolkit.workloads.kube import Kube

ACCESS_KEY, SECRET_KEY = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _decode(token: str) -> str:
    body = token.removeprefix(eks_auth.TOKEN_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def _sts(region="eu-west-1"):
    return boto3.client("sts", region_name=region, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def test_token_has_the_get_token_format_and_signature_parameters():
    token = eks_auth.make_token(_sts(), "platform-dev")
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    url = urllib.parse.urlsplit(_decode(token))
    query = dict(urllib.parse.parse_qsl(url.query))
    assert url.scheme == "https" and url.netloc == "sts.eu-west-1.amazonaws.com" and url.path == "/"
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    key, date, region, service, terminator = query["X-Amz-Credential"].split("/")
    assert (key, region, service, terminator) == (ACCESS_KEY, "eu-west-1", "sts", "aws4_request")
    assert query["X-Amz-Date"].startswith(date) and len(query["X-Amz-Signature"]) == 64


def test_signature_is_sigv4_over_the_cluster_header():
    """Recompute the signature (AWS SigV4, query-string form) with the cluster name as a signed header."""
    url = urllib.parse.urlsplit(_decode(eks_auth.make_token(_sts(), "platform-dev")))
    params = urllib.parse.parse_qsl(url.query)
    query = dict(params)
    canonical_query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                               for k, v in sorted(params) if k != "X-Amz-Signature")
    canonical_request = "\n".join(["GET", "/", canonical_query, f"host:{url.netloc}", "x-k8s-aws-id:platform-dev", "",
                                   "host;x-k8s-aws-id", hashlib.sha256(b"").hexdigest()])
    scope = query["X-Amz-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + SECRET_KEY).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    assert hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest() == query["X-Amz-Signature"]
    # A token for another cluster signs a different header value.
    other = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(_decode(eks_auth.make_token(_sts(), "platform-prod"))).query))
    assert other["X-Amz-Signature"] != query["X-Amz-Signature"]


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_refreshed_before_it_expires(monkeypatch):
    made = []
    monkeypatch.setattr(eks_auth, "make_token", lambda sts, cluster: made.append(cluster) or f"k8s-aws-v1.token{len(made)}")
    clock = _Clock()
    source = eks_auth.TokenSource(None, "platform-dev", clock)
    assert source.current() == "k8s-aws-v1.token1"
    clock.now += eks_auth.TOKEN_LIFETIME - eks_auth.REFRESH_MARGIN - 1
    assert source.current() == "k8s-aws-v1.token1"  # still comfortably valid
    clock.now += 1
    assert source.current() == "k8s-aws-v1.token2"  # within a minute of expiry: a new one
    assert made == ["platform-dev", "platform-dev"]


def test_the_api_client_sends_the_current_token_on_every_request(monkeypatch):
    """eks_api_client wires the token into the kubernetes client's refresh hook; checked on the wire."""
    made = []
    monkeypatch.setattr(eks_auth, "make_token", lambda sts, cluster: made.append(cluster) or f"k8s-aws-v1.token{len(made)}")
    clock = _Clock()
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot used over http\n-----END CERTIFICATE-----\n").decode()
    with EmulatorThread() as emulator:
        api = eks_auth.eks_api_client(load_environment("local"), emulator.url, ca, "platform-local", clock)
        kube = Kube(api)
        kube.get("ConfigMap", "any", "default")
        clock.now += eks_auth.TOKEN_LIFETIME
        kube.get("ConfigMap", "any", "default")
        sent = [r.headers.get("Authorization") for r in emulator.emulator._requests]
    assert sent[-2:] == ["Bearer k8s-aws-v1.token1", "Bearer k8s-aws-v1.token2"]


def test_endpoint_and_ca_come_from_describe_cluster_when_the_outputs_lack_them(local):
    from toolkit.aws import client

    eks = client("eks", local)
    made = eks.create_cluster(name="describe-me", roleArn="arn:aws:iam::123456789012:role/eks",
                              resourcesVpcConfig={"subnetIds": []})["cluster"]
    config = local.model_copy(update={"cluster": local.cluster.model_copy(update={"name": "describe-me"})})
    endpoint, ca, name = eks_auth.cluster_access(config, {})
    assert (endpoint, ca, name) == (made["endpoint"], made["certificateAuthority"]["data"], "describe-me")
    assert endpoint.startswith("https://") and base64.b64decode(ca)
    outputs = {"cluster_endpoint": "https://from.outputs", "cluster_ca": "Q0E=", "cluster_name": "describe-me"}
    assert eks_auth.cluster_access(config, outputs) == ("https://from.outputs", "Q0E=", "describe-me")  # outputs first
    missing = local.model_copy(update={"cluster": local.cluster.model_copy(update={"name": "never-made"})})
    with pytest.raises(ToolkitError, match=r"EKS cluster never-made .*describe-cluster failed.*ResourceNotFound.*cdktf deploy platform-local"):
        eks_auth.cluster_access(missing, {})
