"""The cluster's admission policy for images: Sigstore's policy-controller admits a pod in the
workloads namespace only when every image it runs carries a cosign signature, and a signed CycloneDX
SBOM attestation, by a key the environment trusts (its own and those it promotes from).

Why policy-controller and not Kyverno: its ClusterImagePolicy verifies exactly the formats
`toolkit push` writes (cosign's signature and attestation tags) with inline public keys and no
transparency log, it is Sigstore's own verifier, and it enforces per namespace by a label, so
nothing else in the cluster is affected. Kyverno would verify them too, but brings a general policy
engine this platform has no other use for.

The policy is cluster-scoped and the CI deploy role may change only what is inside the namespace,
so it is an add-on a cluster admin installs (README "Signed images, SBOMs and admission"), not part of
what `toolkit deploy` applies. The namespace carries the opt-in label either way.
"""

from __future__ import annotations

from toolkit.config import EnvironmentConfig
from toolkit.workloads.objects import object_meta

POLICY_API = "policy.sigstore.dev/v1beta1"
INCLUDE_LABEL = "policy.sigstore.dev/include"  # the namespaces policy-controller enforces in
CYCLONEDX = "https://cyclonedx.org/bom"  # the attestation's predicate type (images/cosign.py)


def namespace_labels(config: EnvironmentConfig) -> dict:
    return {INCLUDE_LABEL: "true"} if config.workloads.image_admission else {}


def image_policy(config: EnvironmentConfig, keys: list[tuple[str, str]]) -> dict:
    """The ClusterImagePolicy: one authority per trusted key (name, PEM); any one admits. `**`:
    every image in the namespace, so an image from elsewhere is refused too."""
    authorities = [{"name": f"{name}-key", "key": {"data": pem, "hashAlgorithm": "sha256"},
                    "attestations": [{"name": "sbom", "predicateType": CYCLONEDX}]} for name, pem in keys]
    return {"apiVersion": POLICY_API, "kind": "ClusterImagePolicy",
            "metadata": object_meta(config, f"{config.workloads.namespace}-signed-images", "admission"),
            "spec": {"images": [{"glob": "**"}], "mode": "enforce", "authorities": authorities}}
