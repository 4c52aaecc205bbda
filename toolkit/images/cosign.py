"""Cosign's registry formats for image signatures and attestations (no I/O here).

Why cosign's "legacy" tag formats and not a Sigstore bundle attached as an OCI referrer: the
admission controller we render for (Sigstore's policy-controller) verifies bundles only for keyless
authorities (its validator refuses `signatureFormat: bundle` with a key), and our environments sign
with a key. The tag formats are what `cosign verify --key`, `cosign verify-attestation --key` and
policy-controller's key authorities read, and they need no referrers API (the local registry has
none; ECR's immutable tags take them because each is written once per digest).

- Signature: tag `sha256-<hex>.sig`, an OCI manifest with one layer: the simple-signing payload
  (which names the image digest), its ECDSA P-256 signature (base64 DER) in the layer annotation
  `dev.cosignproject.cosign/signature`.
- Attestation (the SBOM): tag `sha256-<hex>.att`, one layer: a DSSE envelope of an in-toto
  statement whose subject is the image digest, predicate type in the layer annotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_ANNOTATION = "predicateType"
SIGNATURE_TYPE = "cosign container image signature"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def attestation_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".att"


def simple_signing_payload(repository: str, digest: str) -> bytes:
    """What cosign signs for an image: the digest is the claim; the repository is informative only
    (a promoted image keeps its signature in another registry)."""
    return json.dumps({"critical": {"identity": {"docker-reference": repository}, "image": {"docker-manifest-digest": digest},
                                    "type": SIGNATURE_TYPE}, "optional": None}, separators=(",", ":")).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_bytes(private_key_pem: bytes, data: bytes) -> bytes:
    """ECDSA P-256 with SHA-256, DER-encoded (what cosign writes and verifies)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the signing key is not an elliptic-curve key")
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verifies(public_key_pem: bytes, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(public_key_pem)
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def in_toto_statement(repository: str, digest: str, predicate_type: str, predicate: dict) -> bytes:
    algorithm, _, hexdigest = digest.partition(":")
    return json.dumps({"_type": STATEMENT_V01, "predicateType": predicate_type,
                       "subject": [{"name": repository, "digest": {algorithm: hexdigest}}], "predicate": predicate},
                      separators=(",", ":")).encode()


def dsse_envelope(private_key_pem: bytes, statement: bytes) -> bytes:
    signature = sign_bytes(private_key_pem, pae(IN_TOTO, statement))
    return json.dumps({"payloadType": IN_TOTO, "payload": base64.b64encode(statement).decode(),
                       "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}]}).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    annotations: dict

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "size": len(self.data), "digest": self.digest,
                **({"annotations": self.annotations} if self.annotations else {})}


def config_blob(layers: list[Blob]) -> Blob:
    """The image config cosign writes for its signature images: no OS, one diff id per layer."""
    return Blob(OCI_CONFIG, json.dumps({"architecture": "", "os": "", "config": {},
                                        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]}}).encode(), {})


def manifest(layers: list[Blob]) -> tuple[Blob, bytes]:
    """(config blob, manifest bytes) of a signature or attestation image holding `layers`."""
    config = config_blob(layers)
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
                      "layers": [layer.descriptor() for layer in layers]}).encode()
    return config, raw


def signature_layer(private_key_pem: bytes, repository: str, digest: str) -> Blob:
    payload = simple_signing_payload(repository, digest)
    signature = base64.b64encode(sign_bytes(private_key_pem, payload)).decode()
    return Blob(SIMPLE_SIGNING, payload, {SIGNATURE_ANNOTATION: signature})


def attestation_layer(private_key_pem: bytes, repository: str, digest: str, predicate_type: str, predicate: dict) -> Blob:
    statement = in_toto_statement(repository, digest, predicate_type, predicate)
    return Blob(DSSE_ENVELOPE, dsse_envelope(private_key_pem, statement), {PREDICATE_ANNOTATION: predicate_type})


class NotVerified(Exception):
    """Why a signature or attestation layer does not verify (one line)."""


def check_signature(payload: bytes, signature_b64: str, digest: str, keys: list) -> str:
    """The name of the key (of `keys`, PublicKey-like: .name, .pem) whose signature this is over a
    payload naming `digest`; NotVerified otherwise."""
    try:
        critical = json.loads(payload)["critical"]
        named, kind = critical["image"]["docker-manifest-digest"], critical["type"]
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, KeyError, TypeError):
        raise NotVerified("the signature payload is not a cosign simple-signing payload") from None
    if kind != SIGNATURE_TYPE:
        raise NotVerified(f"the signature payload's type is {kind!r}, not {SIGNATURE_TYPE!r}")
    if named != digest:
        raise NotVerified(f"the signature is for {named}, not this image")
    for key in keys:
        if verifies(key.pem, signature, payload):
            return key.name
    raise NotVerified("the signature is not by a trusted key")


def open_attestation(envelope: bytes, digest: str, predicate_type: str, keys: list) -> tuple[str, dict]:
    """(signer, predicate) of a DSSE envelope whose statement is about `digest`; NotVerified otherwise."""
    try:
        data = json.loads(envelope)
        statement_bytes = base64.b64decode(data["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in data["signatures"]]
        statement = json.loads(statement_bytes)
        payload_type = data["payloadType"]
    except (ValueError, KeyError, TypeError):
        raise NotVerified("the attestation is not a DSSE envelope of an in-toto statement") from None
    signer = next((key.name for key in keys for sig in signatures if verifies(key.pem, sig, pae(payload_type, statement_bytes))), None)
    if signer is None:
        raise NotVerified("the attestation is not signed by a trusted key")
    algorithm, _, hexdigest = digest.partition(":")
    if not any(subject.get("digest", {}).get(algorithm) == hexdigest for subject in statement.get("subject", [])):
        raise NotVerified("the attestation is about another image")
    if statement.get("predicateType") != predicate_type:
        raise NotVerified(f"the attestation's predicate is {statement.get('predicateType')!r}, not {predicate_type!r}")
    return signer, statement.get("predicate") or {}
