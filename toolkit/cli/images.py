"""`toolkit build | push`: the serving and training images."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import JSON_OPTION, echo_err, emit_json, load_context, pass_context, quiet
from toolkit.cli.progress import PushProgress


@click.command()
@pass_context
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="Model artifact (default: artifacts/ENV/latest).")
@JSON_OPTION
def build(ctx, model_dir: Path | None, as_json: bool) -> None:
    """Build ENV's serving image with the model baked in, and its training images (docker SDK,
    streamed output).

    The model's checksums are verified first. Tags: <model version>-<git short sha> (serving),
    training-<sha>, and training-gpu-<sha> (CuPy and CUDA 12 libraries) where the environment's
    training Jobs run on a GPU pool (workloads.remote_training.cuda_image). `toolkit push` pushes the
    serving image and the image the Jobs run."""
    from toolkit.delivery.publish import build_release_images
    from toolkit.local.services import ensure_emulated_services

    ensure_emulated_services(ctx, on_line=echo_err)
    image, trainings = build_release_images(ctx, model_dir or ctx.paths.artifacts(ctx.env) / "latest", quiet if as_json else echo_err)
    result = {"image": image.reference, "id": image.image_id, "size_mb": round(image.size_bytes / 1e6, 1),
              "training_image": trainings[-1].reference,
              "training_images": [{"image": t.reference, "size_mb": round(t.size_bytes / 1e6, 1)} for t in trainings]}
    if as_json:
        emit_json(result)
        return
    click.echo(f"built {image.reference} ({result['size_mb']} MB)")
    for built in result["training_images"]:
        jobs = ", what training Jobs run" if built["image"] == result["training_image"] else ""
        click.echo(f"built {built['image']} ({built['size_mb']} MB{jobs})")


@click.command()
@pass_context
@click.option("--image", "image_ref", help="Local image to push (default: the last `toolkit build --env ENV`).")
@JSON_OPTION
def push(ctx, image_ref: str | None, as_json: bool) -> None:
    """Push the serving and training images to ENV's registry with an ECR login (boto3
    get_authorization_token), with a progress bar and retries.

    Refuses 'latest' and a tag the immutable registry holds with other content (pushing the same
    image again is a no-op); prints the digests."""
    from toolkit.delivery.publish import push_release
    from toolkit.images.release import ReleaseRecords
    from toolkit.local.services import ensure_emulated_services

    ensure_emulated_services(ctx, on_line=echo_err)
    records = ReleaseRecords(ctx.paths, ctx.env)
    # The serving image and (from `toolkit build`) the training image the GPU Jobs run.
    refs = [image_ref] if image_ref else [r for r in (records.last_build(), records.last_build("training_image")) if r]
    bars: list[PushProgress] = []

    def progress_for(ref: str):
        bars.append(PushProgress(enabled=not as_json))
        return bars[-1].update

    try:
        release, training = push_release(ctx, refs, on_line=echo_err, on_event=None if as_json else progress_for,
                                         on_pushed=(lambda line: None) if as_json else click.echo)
    finally:
        for bar in bars:
            bar.close()
    if as_json:
        emit_json({"image": refs[0], "pushed": release.image, "digest": release.image.rpartition("@")[2], "training_image": training})


@click.command()
@click.option("--from", "source_env", required=True, metavar="SRC", help="The environment the release was verified in.")
@click.option("--to", "target_env", required=True, metavar="DST", help="The environment to promote it to (its promotion_from must be SRC).")
@click.option("--image", "image", help="SRC's image by digest (default: the release SRC deployed and smoke-tested last).")
@JSON_OPTION
def promote(source_env: str, target_env: str, image: str | None, as_json: bool) -> None:
    """Promote SRC's verified release to DST by digest: the very bytes smoke-tested in SRC.

    Refuses a digest without a successful deploy and smoke test recorded in SRC. Copies the serving
    and training images registry to registry by digest (the digest in DST is checked to equal SRC's),
    and the model artifact store to store with its checksums and signature verified; records the
    promotion in DST's store. `toolkit deploy --env DST` then deploys it (and only promoted digests)."""
    from toolkit.delivery.promotion import promote as promote_release
    from toolkit.local.services import ensure_emulated_services

    source, target = load_context(source_env), load_context(target_env)
    for ctx in (source, target):
        ensure_emulated_services(ctx, on_line=echo_err)
    record = promote_release(source, target, image, on_line=quiet if as_json else echo_err)
    if as_json:
        emit_json(record)
        return
    click.echo(f"promoted {record['source_image']} ({source_env}) to {record['image']} ({target_env})")
    click.echo(f"model {record['model_version']} in {record['model_url']}; record {record['record']}")
    click.echo(f"next: toolkit deploy --env {target_env}")


@click.command()
@pass_context
@click.option("--image", metavar="REF", help="An image in ENV's registry by digest (default: the serving image of ENV's last push or promotion).")
@JSON_OPTION
def sbom(ctx, image: str | None, as_json: bool) -> None:
    """Print an image's SBOM from ENV's registry: the CycloneDX document syft made of it at push
    time (Debian packages from its dpkg database, Python packages with the versions installed and
    the sha256 of the wheel each came from), after its signature and the attestation's are verified.

    --json prints the CycloneDX JSON itself (for scanners such as grype or Dependency-Track)."""
    from toolkit.delivery.image_trust import image_sbom, resolve_image
    from toolkit.images.sbom import components
    from toolkit.local.services import ensure_emulated_services

    ensure_emulated_services(ctx, on_line=echo_err)
    image = resolve_image(ctx, image)
    trust, bom = image_sbom(ctx, image)
    if as_json:
        emit_json(bom)
        return
    rows = components(bom)
    click.echo(f"{image}: {len(rows)} components (CycloneDX {bom.get('specVersion')}, by "
               f"{', '.join(t.get('name', '') + ' ' + t.get('version', '') for t in bom.get('metadata', {}).get('tools', {}).get('components', []))}), "
               f"attested by the key of {trust.sbom_signed_by}")
    width = max((len(row["name"]) for row in rows), default=4)
    for row in rows:
        click.echo(f"{row['type']:<5} {row['name']:<{width}}  {row['version']:<24} {('sha256:' + row['sha256'][:16]) if row['sha256'] else ''}".rstrip())


COMMANDS = [build, push, promote, sbom]
