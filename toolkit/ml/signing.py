"""Signed model artifacts (OpenSSF model-signing, offline, an ECDSA P-256 key per environment).

At training time the whole artifact directory is signed: model-signing hashes every file (sha256),
puts the hashes in an in-toto statement and signs it in a DSSE envelope, stored as `model.sig` in
the directory. Wherever a model is loaded to serve or predict, the signature is verified against
the public keys the environment trusts (its own and those of the environments it promotes from,
toolkit/signing_keys.py): a changed, added or removed file, a signature by another key, or no signature at all is
refused with the reason. The manifest's own checksums (artifacts.py) still catch corruption; the
signature says who produced the files.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import ArtifactError

if TYPE_CHECKING:
    from toolkit.ml.artifacts import ModelArtifact

SIGNATURE = "model.sig"


class SignatureError(ArtifactError):
    """The artifact is not signed by a trusted key (exit 2, like any artifact that fails its checks)."""


@dataclass(frozen=True)
class PublicKey:
    name: str  # whose key: an environment's name, or a file
    pem: bytes


def generate_key_pair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM) of a new ECDSA P-256 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def public_keys_from_pem(name: str, text: bytes | str) -> list[PublicKey]:
    """Every PEM public key in `text` (a bundle may hold several), or a SignatureError."""
    data = text.encode() if isinstance(text, str) else text
    marker = b"-----BEGIN PUBLIC KEY-----"
    parts = [marker + chunk for chunk in data.split(marker)[1:]]
    if not parts:
        raise SignatureError(f"{name}: no PEM public key (-----BEGIN PUBLIC KEY-----) in it.")
    return [PublicKey(name if len(parts) == 1 else f"{name}#{i + 1}", part.strip() + b"\n") for i, part in enumerate(parts)]


def _config():
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[SIGNATURE])


def _pem_file(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
    return path


def sign_artifact(directory: Path, private_key_pem: bytes) -> Path:
    """Sign every file of `directory` (but the signature); returns the signature's path."""
    directory = Path(directory).resolve()  # a link to the artifact (artifacts/ENV/latest) signs what it points to
    return _sign(directory, directory / SIGNATURE, private_key_pem, _config())


def sign_file(path: Path, private_key_pem: bytes) -> Path:
    """Sign one file (an exported model) the same way, into `<file>.sig`; returns that path.
    Anyone verifies it with model-signing's own CLI: `model_signing verify key --signature F.sig
    --public_key keys/ENV.pub F`."""
    from model_signing import hashing

    return _sign(path, path.with_name(path.name + ".sig"), private_key_pem, hashing.Config())


def _sign(target: Path, signature: Path, private_key_pem: bytes, hashing_config) -> Path:
    from model_signing import signing

    with tempfile.TemporaryDirectory() as tmp:
        key = _pem_file(tmp, "signing.key", private_key_pem)
        try:
            signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(hashing_config).sign(target, signature)
        except ValueError as exc:
            raise SignatureError(f"cannot sign {target}: {exc}") from None
    return signature


def verify_signature(directory: Path, keys: list[PublicKey], shown_as: Path | None = None) -> PublicKey:
    """The trusted key that signed `directory`; SignatureError with the reason when none did
    (`shown_as`: the name errors give the directory)."""
    from model_signing import verifying

    named = Path(shown_as or directory)
    directory = Path(directory).resolve()  # artifacts/ENV/latest is a link: model-signing refuses a linked root, not what it names
    signature = directory / SIGNATURE
    if not signature.is_file():
        raise SignatureError(f"{named}: the artifact is not signed (no {SIGNATURE}); models are signed when they are "
                             "trained (`toolkit train`), and only signed models are served.")
    if not keys:
        raise SignatureError(f"{named}: no public key to verify its signature against.")
    reasons = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, key in enumerate(keys):
            path = _pem_file(tmp, f"{index}.pub", key.pem)
            try:
                verifying.Config().use_elliptic_key_verifier(public_key=path).set_hashing_config(_config()).verify(directory, signature)
                return key
            except ValueError as exc:
                reasons.append(f"{key.name}: {_reason(exc)}")
    raise SignatureError(f"{named}: the signature does not verify against the trusted keys ({'; '.join(reasons)}).")


def load_signed_artifact(directory: str | Path, trusted_keys: list[PublicKey]) -> ModelArtifact:
    """The one way a model is loaded to serve, predict, evaluate, judge or promote. Keys before bytes:
    every file is read once into memory, the signature is verified over exactly those bytes (a
    private copy for model-signing to hash) against `trusted_keys`, which the caller chooses (an
    environment's trusted keys, a --public-key, the serving container's bundle) and never the
    artifact; only then are the manifest's checksums checked and the weights parsed, from the same
    bytes. `signed_by` on the result names the key that signed it."""
    from toolkit.ml.artifacts import load_files, read_artifact_files

    named = Path(directory)
    files = read_artifact_files(named.resolve())  # artifacts/ENV/latest is a link to the version's directory
    with tempfile.TemporaryDirectory(prefix="toolkit-verify-") as tmp:  # 0700: this process's alone
        copy = Path(tmp) / "artifact"
        copy.mkdir()
        for name, data in files.items():
            (copy / name).write_bytes(data)
        signer = verify_signature(copy, trusted_keys, shown_as=named)
    model = load_files(files, named)
    return replace(model, signed_by=signer.name)


def _reason(exc: Exception) -> str:
    """model-signing's message, without the digests it lists."""
    text = str(exc)
    if "Hash mismatch for" in text:
        names = [part.split("'")[1].rstrip("\\") for part in text.split("Hash mismatch for ")[1:] if "'" in part]
        return f"files changed after signing: {', '.join(names)}"
    return text.split(": Expected")[0][:300].strip()
