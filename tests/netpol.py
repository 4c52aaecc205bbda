"""A NetworkPolicy evaluator with the API's semantics (networking.k8s.io/v1), for the tests:

- a pod is isolated for a direction once any policy selecting it (its namespace, its podSelector)
  lists that direction in `policyTypes`; a pod no policy isolates is allowed everything;
- what is allowed is the union of the rules of every policy selecting the pod;
- a rule's peers (`to` / `from`) are ORed; a peer is an ipBlock (cidr minus except), or a
  namespaceSelector and/or podSelector (both given: the pod must match both; an empty selector
  matches everything; podSelector alone means the policy's own namespace);
- a rule without peers matches every peer, without ports every port; a port is a number or the
  name of a container port of the destination pod (egress) or of the selected pod (ingress);
- traffic between pods needs the source's egress and the destination's ingress to allow it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict
    ip: str = "10.0.1.10"
    ports: dict = field(default_factory=dict)  # container port name → number


@dataclass(frozen=True)
class External:
    ip: str


class Cluster:
    def __init__(self, policies: list[dict], namespaces: dict[str, dict] | None = None) -> None:
        self.policies = [p for p in policies if p.get("kind") == "NetworkPolicy"]
        self.namespaces = namespaces or {}  # name → labels (kubernetes.io/metadata.name is added)

    def _namespace_labels(self, name: str) -> dict:
        return {"kubernetes.io/metadata.name": name, **self.namespaces.get(name, {})}

    def _selecting(self, pod: Pod, direction: str) -> list[dict]:
        return [p for p in self.policies if p["metadata"].get("namespace") == pod.namespace
                and _matches(p["spec"].get("podSelector", {}), pod.labels)
                and direction in p["spec"].get("policyTypes", ["Ingress"])]

    def egress_allowed(self, source: Pod, destination: Pod | External, protocol: str, port: int) -> bool:
        policies = self._selecting(source, "Egress")
        if not policies:
            return True
        return any(self._rule_allows(rule, policy, destination, protocol, port, destination)
                   for policy in policies for rule in policy["spec"].get("egress", []))

    def ingress_allowed(self, destination: Pod, source: Pod | External, protocol: str, port: int) -> bool:
        policies = self._selecting(destination, "Ingress")
        if not policies:
            return True
        return any(self._rule_allows(rule, policy, source, protocol, port, destination, peers_key="from")
                   for policy in policies for rule in policy["spec"].get("ingress", []))

    def allowed(self, source: Pod, destination: Pod | External, protocol: str, port: int) -> bool:
        """Both directions: the source's egress and, for a pod, the destination's ingress."""
        if not self.egress_allowed(source, destination, protocol, port):
            return False
        return not isinstance(destination, Pod) or self.ingress_allowed(destination, source, protocol, port)

    def _rule_allows(self, rule: dict, policy: dict, peer, protocol: str, port: int, port_owner, peers_key: str = "to") -> bool:
        ports = rule.get("ports")
        if ports and not any(_port_matches(p, protocol, port, port_owner) for p in ports):
            return False
        peers = rule.get(peers_key)
        if not peers:
            return True
        return any(self._peer_matches(p, policy, peer) for p in peers)

    def _peer_matches(self, spec: dict, policy: dict, peer) -> bool:
        if "ipBlock" in spec:
            address = ipaddress.ip_address(peer.ip)
            block = spec["ipBlock"]
            return address in ipaddress.ip_network(block["cidr"]) and not any(
                address in ipaddress.ip_network(e) for e in block.get("except", []))
        if not isinstance(peer, Pod):
            return False  # selectors select pods, not outside addresses
        if "namespaceSelector" in spec:
            if not _matches(spec["namespaceSelector"], self._namespace_labels(peer.namespace)):
                return False
        elif peer.namespace != policy["metadata"].get("namespace"):
            return False
        return _matches(spec.get("podSelector", {}), peer.labels)


def _port_matches(spec: dict, protocol: str, port: int, owner) -> bool:
    if spec.get("protocol", "TCP") != protocol:
        return False
    wanted = spec.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):  # a named port of the pod the traffic goes to
        wanted = owner.ports.get(wanted) if isinstance(owner, Pod) else None
        if wanted is None:
            return False
    end = spec.get("endPort", wanted)
    return wanted <= port <= end


def _matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
