"""What each workload reaches over the network, declared once, next to nothing else.

The NetworkPolicies (manifests.network_policies) are rendered from these declarations, and the
tests evaluate the rendered policies with Kubernetes' own semantics (tests/netpol.py) against the
same declarations: every need allowed, nothing else. A need goes to
  - "cluster-dns": the cluster's DNS pods (k8s-app=kube-dns), UDP and TCP 53;
  - "aws": HTTPS to addresses outside the VPC (AWS's public endpoints, reached through the NAT
    gateways or S3's gateway endpoint). Inside the VPC (the EKS API's private endpoint, other
    nodes, other pods on 443) nothing is reachable: a team that adds interface endpoints adds
    their subnets here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    why: str
    protocol: str
    port: int
    to: str  # "cluster-dns" or "aws"


DNS = (Need("names (kube-dns)", "UDP", 53, "cluster-dns"), Need("names over TCP (kube-dns)", "TCP", 53, "cluster-dns"))


def https(why: str) -> Need:
    return Need(why, "TCP", 443, "aws")


SERVING = (*DNS, https("S3: the prediction log and the labels (serve/shipping.py)"), https("STS: the IRSA role's credentials"),
           https("Secrets Manager: the feedback credentials, at start (serve/labels.py)"))
TRAINING = (*DNS, https("S3: datasets in, models out"), https("STS: the IRSA role's credentials"),
            https("Secrets Manager: the model-signing key"))
RETRAIN_CONTROLLER = (*DNS, https("SQS: the retrain queue"), https("STS: the IRSA role's credentials"),
                      https("GitHub: repository_dispatch of retrain.yml"))
DEVICE_PLUGIN = ()  # it talks to the kubelet over a socket on the node


def egress_rules(needs: tuple[Need, ...], vpc_cidr: str = "10.0.0.0/16") -> list[dict]:
    """A NetworkPolicy's egress rules for `needs` (one rule per destination, its ports merged)."""
    rules = []
    dns = sorted({(n.protocol, n.port) for n in needs if n.to == "cluster-dns"})
    if dns:
        rules.append({"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                      "ports": [{"protocol": protocol, "port": port} for protocol, port in dns]})
    aws = sorted({(n.protocol, n.port) for n in needs if n.to == "aws"})
    if aws:
        rules.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [vpc_cidr]}}],
                      "ports": [{"protocol": protocol, "port": port} for protocol, port in aws]})
    return rules
