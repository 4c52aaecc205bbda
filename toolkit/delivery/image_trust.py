"""Who may put an image in front of users: each pushed image is signed, with its SBOM attested, by
the environment's key (`toolkit push`), and nothing is deployed or run that does not verify with a
key the environment trusts (its own and those it promotes from: signing_keys.trusted_keys)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from toolkit.context import Context
from toolkit.errors import BadInputError
from toolkit.images.distribution import RegistryClient
from toolkit.images.image_signing import ImageNotTrusted, ImageTrust, sign_image, signed_sbom, verify_image
from toolkit.images.login import registry_login
from toolkit.lines import silent

Progress = Callable[[str], None]


def split_reference(host: str, image: str) -> tuple[str, str]:
    """(repository, digest) of `host/repository@sha256:…`; anything else is refused (an image from
    another registry would be pulled from there, whatever our registry says about its digest)."""
    name, _, digest = image.partition("@")
    if not digest.startswith("sha256:"):
        raise BadInputError(f"{image} is not pinned by digest (…@sha256:<hex>): only a digest can be verified.")
    image_host, _, repository = name.partition("/")
    if image_host != host or not repository:
        raise ImageNotTrusted(f"it is not in the environment's registry ({host})")
    return repository, digest


def start_sboms(ctx: Context, refs: list[str]) -> dict[str, Future]:
    """The local images' SBOMs, made in the background while the push uploads them."""
    from toolkit.images.docker import docker_client
    from toolkit.images.sbom import image_sbom

    engine = docker_client(ctx.paths)
    wheelhouses = [ctx.paths.state_subdir("wheelhouse"), ctx.paths.state_subdir("wheelhouse-gpu")]
    pool = ThreadPoolExecutor(max_workers=len(refs) or 1, thread_name_prefix="sbom")
    futures = {ref: pool.submit(image_sbom, engine, ref, wheelhouses, ctx.paths.state_subdir("sbom")) for ref in refs}
    pool.shutdown(wait=False)
    return futures


def image_signer(ctx: Context) -> Callable[[str, dict, Progress], None]:
    """A function signing a pushed image (by digest) with ctx's key and attaching its SBOM
    attestation: the key (a Secrets Manager read for a cloud environment) and the registry login
    are fetched once for all the images of a push."""
    from toolkit.signing_keys import own_public_key, private_key

    login, key, own = registry_login(ctx.config), private_key(ctx), own_public_key(ctx)
    client = RegistryClient(login)

    def sign(image: str, sbom: dict, on_line: Progress = silent) -> None:
        repository, digest = split_reference(login.host, image)
        sign_image(client, repository, digest, key, own, sbom, on_line)

    return sign


def _verified(ctx: Context, image: str) -> tuple[ImageTrust, dict]:
    """(who signed the image and its SBOM attestation, the SBOM) with the keys ctx trusts; else exit
    2 with one line and the command that fixes it."""
    from toolkit.signing_keys import trusted_keys

    login = registry_login(ctx.config)
    client, keys = RegistryClient(login), trusted_keys(ctx)
    try:
        repository, digest = split_reference(login.host, image)
        signer = verify_image(client, repository, digest, keys)
        sbom_signer, bom = signed_sbom(client, repository, digest, keys)
    except ImageNotTrusted as exc:
        raise ImageNotTrusted(f"refusing {image} in {ctx.env}: {exc}. Push it with `toolkit push --env {ctx.env}` "
                              "(or promote it) so it is signed.") from None
    return ImageTrust(signer, sbom_signer), bom


def require_trusted_image(ctx: Context, image: str) -> ImageTrust:
    """The image's signature and SBOM attestation verify with a key ctx trusts (see _verified)."""
    return _verified(ctx, image)[0]


def image_sbom(ctx: Context, image: str) -> tuple[ImageTrust, dict]:
    """The SBOM attested for `image` in ctx's registry, after its signature is verified."""
    return _verified(ctx, image)


def resolve_image(ctx: Context, image: str | None) -> str:
    """`image` by digest; None or "release": the serving image of ctx's last push or promotion."""
    from toolkit.images.release import ReleaseRecords

    if image in (None, "release"):
        return ReleaseRecords(ctx.paths, ctx.env).last_push().image
    return image
