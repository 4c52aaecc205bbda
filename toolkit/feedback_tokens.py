"""Where an environment's feedback credentials (feedback_auth.py) live, and `toolkit feedback-token`.

  - an emulated environment: `.local/feedback/<env>.json` (the id key and token hashes) and, for
    each labeller made here, its token in `.local/feedback/<env>-<name>.token` (0600), generated on
    first use, so `toolkit local up`, `make demo` and the loop drill need no hand step;
  - any other: the Secrets Manager secret `<cluster>-feedback-credentials`, which the stack creates
    empty; `toolkit feedback-token --env ENV --name N` fills it and prints the token once. The
    serving pods read it with their IRSA role at start and refuse to start without it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from toolkit.context import Context
from toolkit.errors import BadInputError, ToolkitError
from toolkit.feedback_auth import CredentialsError, FeedbackCredentials, new_token

LOCAL_LABELLER = "local"  # the labeller an emulated environment makes for itself (the loop drill labels as it)


def _directory(ctx: Context) -> Path:
    directory = ctx.paths.state_subdir("feedback")
    directory.chmod(0o700)
    return directory


def _write_private(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)
    partial.replace(path)


def local_token_file(ctx: Context, name: str = LOCAL_LABELLER) -> Path:
    return _directory(ctx) / f"{ctx.env}-{name}.token"


def ensure_local_credentials(ctx: Context) -> FeedbackCredentials:
    """An emulated environment's credentials, with its `local` labeller; made on first use (under a
    lock: two commands starting at once must agree on one key)."""
    directory = _directory(ctx)
    path = directory / f"{ctx.env}.json"
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        credentials = _read_local(path)
        token_file = local_token_file(ctx)
        if credentials is None or LOCAL_LABELLER not in credentials.labellers or not token_file.exists():
            token = new_token()
            credentials = (credentials or FeedbackCredentials.new()).with_labeller(LOCAL_LABELLER, token)
            _write_private(token_file, token + "\n")
            _write_private(path, credentials.dumps())
    return credentials


def _read_local(path: Path) -> FeedbackCredentials | None:
    try:
        return FeedbackCredentials.parse(path.read_text(), str(path))
    except FileNotFoundError:
        return None
    except CredentialsError as exc:
        raise BadInputError(f"{exc}: delete it to have it made again.") from None


def local_token(ctx: Context, name: str = LOCAL_LABELLER) -> str:
    ensure_local_credentials(ctx)
    return local_token_file(ctx, name).read_text().strip()


def create_token(ctx: Context, name: str, rotate: bool = False) -> tuple[str, list[str]]:
    """`toolkit feedback-token`: a token for labeller `name` (refused when it has one, unless `rotate`);
    returns the token (shown once) and what was written."""
    if ctx.emulated:
        directory = _directory(ctx)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = directory / f"{ctx.env}.json"
            credentials = _read_local(path) or FeedbackCredentials.new()
            _refuse_existing(ctx, credentials, name, rotate, str(path))
            token = new_token()
            _write_private(path, credentials.with_labeller(name, token).dumps())
            _write_private(local_token_file(ctx, name), token + "\n")
        return token, [f"labeller {name} of {ctx.env}: token hash in {path}, token in {local_token_file(ctx, name)}"]
    secret = ctx.config.feedback_secret_name
    credentials = read_cloud_credentials(ctx, missing_ok=True) or FeedbackCredentials.new()
    _refuse_existing(ctx, credentials, name, rotate, f"the secret {secret}")
    token = new_token()
    _put_secret(ctx, credentials.with_labeller(name, token).dumps())
    return token, [f"labeller {name} of {ctx.env}: token hash stored in the secret {secret}; serving pods read it when they start "
                   f"(`toolkit rollback`/`deploy` restarts them)"]


def _refuse_existing(ctx: Context, credentials: FeedbackCredentials, name: str, rotate: bool, where: str) -> None:
    if name in credentials.labellers and not rotate:
        raise BadInputError(f"labeller {name} of {ctx.env} already has a token ({where}); --rotate replaces it "
                            "(the old one stops working when the servers next start).")


def read_cloud_credentials(ctx: Context, missing_ok: bool = False) -> FeedbackCredentials | None:
    from botocore.exceptions import BotoCoreError, ClientError

    from toolkit.aws import client

    name = ctx.config.feedback_secret_name
    try:
        value = client("secretsmanager", ctx.config).get_secret_value(SecretId=name).get("SecretString")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException" and missing_ok:
            return None
        if code == "ResourceNotFoundException":
            raise ToolkitError(f"the feedback credentials of {ctx.env} are not set (secret {name}): run "
                               f"`toolkit feedback-token --env {ctx.env} --name NAME`.") from None
        raise ToolkitError(f"reading the feedback credentials of {ctx.env} (secret {name}) failed: {exc}") from None
    except BotoCoreError as exc:
        raise ToolkitError(f"reading the feedback credentials of {ctx.env} (secret {name}) failed: {exc}") from None
    try:
        return FeedbackCredentials.parse(value or "", f"secret {name}")
    except CredentialsError as exc:
        raise ToolkitError(str(exc)) from None


def _put_secret(ctx: Context, text: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from toolkit.aws import client

    name = ctx.config.feedback_secret_name
    try:
        client("secretsmanager", ctx.config).put_secret_value(SecretId=name, SecretString=text)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") == "ResourceNotFoundException":
            raise ToolkitError(f"the secret {name} is not there: deploy the stack first (`cdktf deploy platform-{ctx.env}`); "
                               "it creates the secret.") from None
        raise ToolkitError(f"storing the feedback credentials in {name} failed: {exc}") from None
    except BotoCoreError as exc:
        raise ToolkitError(f"storing the feedback credentials in {name} failed: {exc}") from None
