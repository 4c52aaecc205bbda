"""The rendered NetworkPolicies against what each workload needs (toolkit/workloads/egress.py),
evaluated with Kubernetes' semantics (tests/netpol.py): every declared need is allowed and nothing
else, in every direction the policies isolate. Before issue 26, the serving policy allowed DNS only
and so blocked the prediction log's HTTPS to S3 and STS: the first assertion here failed."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from netpol import Cluster, External, Pod

from toolkit.config import load_environment
from toolkit.images.release import Release
from toolkit.workloads import egress
from toolkit.workloads.manifests import RETRAIN_CONTROLLER, SERVING, TRAINING, retrain_controller_enabled, serving_manifests
from toolkit.workloads.objects import object_labels

RELEASE = Release("111111111111.dkr.ecr.eu-west-1.amazonaws.com/x@sha256:" + "1" * 64, "v1")
S3, STS, GITHUB = External("52.218.1.10"), External("3.5.0.1"), External("140.82.112.3")


def _vpc_ip(config, index: int) -> str:
    """An address of the VPC: on EKS (the VPC CNI) pods, nodes and the API's ENIs all have one."""
    return str(ipaddress.ip_network(config.network.vpc_cidr)[1000 + index])


def _kube_dns(config) -> Pod:
    return Pod("kube-system", {"k8s-app": "kube-dns"}, _vpc_ip(config, 0))


def _workloads(config) -> dict[str, tuple[Pod, tuple]]:
    ns = config.workloads.namespace
    pods = {SERVING: (Pod(ns, object_labels(config, SERVING), _vpc_ip(config, 1), {"http": config.serving.port}), egress.SERVING),
            TRAINING: (Pod(ns, object_labels(config, TRAINING, {"job-name": "train"}), _vpc_ip(config, 2)), egress.TRAINING)}
    if retrain_controller_enabled(config):
        pods[RETRAIN_CONTROLLER] = (Pod(ns, object_labels(config, RETRAIN_CONTROLLER), _vpc_ip(config, 3), {"health": 9095}),
                                    egress.RETRAIN_CONTROLLER)
    return pods


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_declared_need_is_allowed_and_nothing_else(env):
    config = load_environment(env)
    cluster = Cluster(serving_manifests(config, {}, RELEASE))
    inside_vpc, kube_dns = External(_vpc_ip(config, 10)), _kube_dns(config)  # an address of the VPC: the EKS API's ENIs
    stranger = Pod("default", {"app": "stranger"}, _vpc_ip(config, 11), {"http": 8080})
    for name, (pod, needs) in _workloads(config).items():
        # what it needs: shipping the prediction log (S3), the IRSA credentials (STS), the secrets, DNS
        for need in needs:
            destination = kube_dns if need.to == "cluster-dns" else S3
            assert cluster.allowed(pod, destination, need.protocol, need.port), (name, need)
        assert cluster.allowed(pod, STS, "TCP", 443) == any(n.to == "aws" for n in needs)
        # and nothing else: every other destination, protocol and port is refused
        for destination, protocol, port in itertools.product([S3, GITHUB, inside_vpc, kube_dns, stranger], ["TCP", "UDP"],
                                                              [22, 53, 80, 443, 5432, 6443, 8080]):
            declared = any(n.protocol == protocol and n.port == port and
                           (n.to == "cluster-dns" and destination is kube_dns or n.to == "aws" and destination in (S3, GITHUB))
                           for n in needs)
            assert cluster.egress_allowed(pod, destination, protocol, port) == declared, (name, destination, protocol, port)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_only_the_serving_port_and_the_probes_take_traffic_in(env):
    config = load_environment(env)
    cluster = Cluster(serving_manifests(config, {}, RELEASE))
    pods = _workloads(config)
    serving, training = pods[SERVING][0], pods[TRAINING][0]
    client = Pod("default", {"app": "client"}, _vpc_ip(config, 12))
    assert cluster.ingress_allowed(serving, client, "TCP", config.serving.port)
    assert not cluster.ingress_allowed(serving, client, "TCP", 22) and not cluster.ingress_allowed(serving, client, "TCP", 9095)
    assert not any(cluster.ingress_allowed(training, client, "TCP", port) for port in (22, 80, 443, 8080))
    # one workload cannot reach another sideways: serving's egress refuses the training pod
    assert not cluster.allowed(serving, training, "TCP", 8080)


def test_the_evaluator_follows_the_api_semantics():
    """The evaluator itself, on the cases its semantics turn on."""
    ns = "team"
    web = Pod(ns, {"app": "web"}, ports={"http": 8080})
    policies = [
        {"kind": "NetworkPolicy", "metadata": {"namespace": ns, "name": "deny"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},  # empty selector: every pod, isolated both ways
        {"kind": "NetworkPolicy", "metadata": {"namespace": ns, "name": "web-in"},
         "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "front"}}}], "ports": [{"port": "http"}]}]}},
    ]
    cluster = Cluster(policies)
    front, other = Pod(ns, {"app": "front"}), Pod("elsewhere", {"app": "front"})
    assert cluster.ingress_allowed(web, front, "TCP", 8080)  # rules are unions; a named port resolves on the pod
    assert not cluster.ingress_allowed(web, front, "TCP", 8081) and not cluster.ingress_allowed(web, front, "UDP", 8080)
    assert not cluster.ingress_allowed(web, other, "TCP", 8080)  # podSelector alone: the policy's own namespace
    assert not cluster.egress_allowed(front, web, "TCP", 8080)  # front is isolated for egress by "deny", with no rule
    assert Cluster([]).allowed(front, External("1.1.1.1"), "TCP", 443)  # no policy: nothing isolated


def test_the_dns_only_serving_policy_of_before_blocked_shipping():
    """The serving policy before issue 26 (egress to kube-dns only), as it was rendered: the evaluator
    refuses the prediction log's HTTPS to S3 and the IRSA call to STS, which the current policy allows."""
    config = load_environment("prod")
    current = [o for o in serving_manifests(config, {}, RELEASE) if o["kind"] == "NetworkPolicy"]
    serving_policy = next(o for o in current if o["metadata"]["name"] == SERVING)
    before = {**serving_policy, "spec": {**serving_policy["spec"], "egress": [
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}
    pod = _workloads(config)[SERVING][0]
    old = Cluster([before if o is serving_policy else o for o in current])
    assert not old.allowed(pod, S3, "TCP", 443) and not old.allowed(pod, STS, "TCP", 443)
    assert old.allowed(pod, _kube_dns(config), "UDP", 53)
    assert Cluster(current).allowed(pod, S3, "TCP", 443) and Cluster(current).allowed(pod, STS, "TCP", 443)
