"""Which keys sign and verify an environment's models.

Private key (signs, at training time):
  - an emulated environment (aws.endpoint_url set): the checkout's key `.local/signing/local.key`,
    generated on first use (every emulated environment of a checkout shares it);
  - any other: the Secrets Manager secret `<cluster>-model-signing-key`, which the stack creates
    empty and `toolkit signing-key --env ENV` fills; read with the caller's AWS identity (the
    training role in a Job, the CI deploy role in a workflow). Nothing else can read it (its resource
    policy, modules/secret.py).

Public keys (verify): the environment's own (`signing.public_key`, a PEM file committed to the
repository; emulated: `.local/signing/local.pub`) and those of the environments it promotes from
(`promotion_from`, transitively): a served image promoted by digest carries the model signed
where it was trained. The server gets them as one PEM bundle in TOOLKIT_MODEL_PUBLIC_KEYS.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from toolkit.context import Context
from toolkit.errors import BadInputError, ToolkitError
from toolkit.ml.signing import PublicKey, generate_key_pair, public_keys_from_pem
from toolkit.paths import ProjectPaths
from toolkit.serving import PUBLIC_KEYS_ENV

LOCAL_KEY = "local"


def local_key_files(paths: ProjectPaths, generate: bool = True) -> tuple[Path, Path]:
    """(private, public) key files of the checkout's emulated environments; generated when missing."""
    directory = paths.state_subdir("signing")
    private, public = directory / f"{LOCAL_KEY}.key", directory / f"{LOCAL_KEY}.pub"
    if generate and not (private.exists() and public.exists()):
        # Under a lock: two commands (or test workers) starting at once must end up with one key pair.
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (private.exists() and public.exists()):
                key, pub = generate_key_pair()
                with open(os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
                    handle.write(key)
                public.write_bytes(pub)
    return private, public


PRIVATE_KEY_FILE_ENV = "TOOLKIT_SIGNING_KEY_FILE"  # a mounted private key: how a container of an emulated environment signs


def private_key(ctx: Context) -> bytes:
    """The key that signs `ctx`'s models: emulated, $TOOLKIT_SIGNING_KEY_FILE or the checkout's local
    key; cloud, the environment's Secrets Manager secret."""
    if ctx.emulated:
        mounted = os.environ.get(PRIVATE_KEY_FILE_ENV)
        if mounted:
            try:
                return Path(mounted).read_bytes()
            except OSError as exc:
                raise BadInputError(f"cannot read the signing key {mounted} (${PRIVATE_KEY_FILE_ENV}): {exc.strerror or exc}") from None
        return local_key_files(ctx.paths)[0].read_bytes()
    from botocore.exceptions import BotoCoreError, ClientError

    from toolkit.aws import client

    name = ctx.config.signing_secret_name
    try:
        value = client("secretsmanager", ctx.config).get_secret_value(SecretId=name).get("SecretString")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") == "ResourceNotFoundException":  # no secret, or no value yet
            raise ToolkitError(f"the model-signing key of {ctx.env} is not set (secret {name}): run "
                               f"`toolkit signing-key --env {ctx.env}` once, then commit the public key it writes.") from None
        raise ToolkitError(f"reading the model-signing key of {ctx.env} (secret {name}) failed: {exc}") from None
    except BotoCoreError as exc:
        raise ToolkitError(f"reading the model-signing key of {ctx.env} (secret {name}) failed: {exc}") from None
    return value.encode()


def own_public_key(ctx: Context) -> PublicKey:
    if ctx.emulated:
        return public_keys_from_pem(ctx.env, local_key_files(ctx.paths)[1].read_bytes())[0]
    if ctx.config.signing.public_key is None:
        raise BadInputError(f"environments/{ctx.env}.yaml: signing.public_key is not set; `toolkit signing-key --env {ctx.env}` "
                            "creates the key pair and writes the public key.")
    path = ctx.root / ctx.config.signing.public_key
    try:
        return public_keys_from_pem(ctx.env, path.read_bytes())[0]
    except FileNotFoundError:
        raise BadInputError(f"{path} (signing.public_key of {ctx.env}) does not exist: run `toolkit signing-key --env {ctx.env}` "
                            "and commit the file it writes.") from None


def trusted_keys(ctx: Context) -> list[PublicKey]:
    """The environment's key and those of every environment it promotes from. Emulated environments
    share one local key pair, so the chain of one adds nothing and is not followed."""
    from toolkit.config import load_environment

    keys, seen, current = [], set(), ctx
    while current is not None and current.env not in seen:
        seen.add(current.env)
        keys.append(own_public_key(current))
        source = None if current.emulated else current.config.promotion_from
        current = Context(load_environment(source, ctx.root), ctx.paths) if source else None
    return keys


def bundle(keys: list[PublicKey]) -> str:
    return "".join(k.pem.decode() for k in keys)


def chosen_keys(public_key_file: Path | None = None, env: str | None = None, root: Path | None = None) -> list[PublicKey]:
    """The keys a command verifies a model against, as its caller chose them, never from the model
    itself: --public-key FILE (only it); else --env ENV's trusted keys; else $TOOLKIT_MODEL_PUBLIC_KEYS
    (what the serving container is given)."""
    if public_key_file is not None:
        try:
            return public_keys_from_pem(str(public_key_file), Path(public_key_file).read_bytes())
        except OSError as exc:
            raise BadInputError(f"cannot read the public key {public_key_file}: {exc.strerror or exc}") from None
    if env is not None:
        return trusted_keys(Context.load(env, root))
    if os.environ.get(PUBLIC_KEYS_ENV):
        return public_keys_from_pem(PUBLIC_KEYS_ENV, os.environ[PUBLIC_KEYS_ENV])
    raise BadInputError("no public key to verify the model's signature against: pass --env ENV (the keys that environment "
                        f"trusts) or --public-key FILE, or set {PUBLIC_KEYS_ENV}.")


def create_signing_key(ctx: Context, rotate: bool = False) -> list[str]:
    """`toolkit signing-key`: a new key pair for ctx's environment; what was written, as lines."""
    if ctx.emulated:
        private, public = local_key_files(ctx.paths, generate=False)
        if private.exists() and not rotate:
            return [f"{ctx.env} signs with {private} (public key {public}); --rotate replaces it"]
        private.unlink(missing_ok=True)
        private, public = local_key_files(ctx.paths)
        return [f"generated {private} and {public}"]
    if ctx.config.signing.public_key is None:
        raise BadInputError(f"environments/{ctx.env}.yaml: set signing.public_key (e.g. keys/{ctx.env}.pub) first: "
                            "the public key is written there.")
    from botocore.exceptions import BotoCoreError, ClientError

    from toolkit.aws import client

    secrets, name = client("secretsmanager", ctx.config), ctx.config.signing_secret_name
    try:
        has_value = bool(secrets.list_secret_version_ids(SecretId=name).get("Versions"))
    except ClientError as exc:
        raise ToolkitError(f"the secret {name} is not there ({exc.response.get('Error', {}).get('Code')}): deploy the stack first "
                           f"(`cdktf deploy platform-{ctx.env}`); it creates the secret.") from None
    if has_value and not rotate:
        raise BadInputError(f"{name} already holds {ctx.env}'s signing key; --rotate replaces it (every model signed with the "
                            "old key must then be re-signed or retrained before it is served).")
    private, public = generate_key_pair()
    try:
        secrets.put_secret_value(SecretId=name, SecretString=private.decode())
    except (BotoCoreError, ClientError) as exc:
        raise ToolkitError(f"storing the signing key in {name} failed: {exc}") from None
    path = ctx.root / ctx.config.signing.public_key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(public)
    return [f"stored the private key in the secret {name}", f"wrote the public key to {path}: commit it"]
