"""What signing and the SBOM add to a release (issue 30: at most 5 s on `make release ENV=local`).

In one run, on the local environment's real registry and Docker engine, interleaved, fresh images
each repeat (the served image plus a label: a new image ID and digest whose layers the registry
already holds, so the upload itself is near zero and the overhead is exposed, not hidden behind
it): the push as it was (push_image per image) against the push as `toolkit push` does it now
(SBOMs by syft in the background while pushing, then the signature and the attestation written).
Two cases: a retrain (a new serving image whose layers below the model are unchanged, and the
training image unchanged: both SBOMs come from the cache) and a code change (both images with a new
layer: two syft scans, side by side).

    .venv/bin/toolkit local up && python bench/release_signing.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from toolkit.context import Context  # noqa: E402
from toolkit.delivery.image_trust import image_signer, start_sboms  # noqa: E402
from toolkit.images.docker import docker_client  # noqa: E402
from toolkit.images.login import registry_login  # noqa: E402
from toolkit.images.registry import push_image  # noqa: E402
from toolkit.images.release import ReleaseRecords  # noqa: E402

QUIET = lambda line: None  # noqa: E731


def fresh_image(engine, base: str, repository: str, label: str, new_layer: bool = False) -> str:
    """`base` plus a label: a new image ID (and digest) with the same layers; with `new_layer`, a
    layer more (what a code change does: its packages must be scanned again)."""
    tag = f"{repository}:bench-{label}"
    layer = f"RUN echo {label} > /tmp/bench-layer\n" if new_layer else ""
    engine.images.build(fileobj=io.BytesIO(f"FROM {base}\n{layer}LABEL bench={label}\n".encode()), tag=tag, rm=True)
    return tag


def push_plain(ctx, refs: list[str]) -> None:
    for ref in refs:
        push_image(ctx, ref, on_line=QUIET)


def push_signed(ctx, refs: list[str]) -> None:
    host = registry_login(ctx.config).host
    sboms, sign = start_sboms(ctx, refs), image_signer(ctx)
    for ref in refs:
        digest = push_image(ctx, ref, on_line=QUIET)
        sign(f"{host}/{ctx.config.registry.name}@{digest}", sboms[ref].result(), QUIET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    local = Context.load("local")
    ctx = local.with_config(local.config.model_copy(update={
        "registry": local.config.registry.model_copy(update={"name": "bench-signing/serving"})}))
    engine = docker_client(ctx.paths)
    records = ReleaseRecords(local.paths, "local")
    serving, training = records.last_build(), records.last_build("training_image")
    if not (serving and training):
        sys.exit("no local build: run `make demo` (or `toolkit build --env local`) first")
    training_fixed = fresh_image(engine, training, "bench-signing/serving", f"training-{time.time_ns()}")
    push_signed(ctx, [training_fixed])  # its SBOM cached, as an unchanged training image's is in a release
    results: dict[str, dict[str, list[float]]] = {case: {"plain": [], "signed": []} for case in ("retrain", "code change")}
    for repeat in range(args.repeats):
        for case in results:
            for how in ("plain", "signed") if repeat % 2 == 0 else ("signed", "plain"):
                stamp = f"{repeat}-{how}-{time.time_ns()}"
                code = case == "code change"
                refs = [fresh_image(engine, serving, "bench-signing/serving", f"serving-{stamp}", new_layer=code),
                        fresh_image(engine, training, "bench-signing/serving", f"training-{stamp}", new_layer=True) if code else training_fixed]
                start = time.perf_counter()
                (push_signed if how == "signed" else push_plain)(ctx, refs)
                results[case][how].append(time.perf_counter() - start)
    summary = {}
    for case, timings in results.items():
        plain, signed = statistics.median(timings["plain"]), statistics.median(timings["signed"])
        summary[case] = {"plain_s": round(plain, 2), "signed_s": round(signed, 2), "added_s": round(signed - plain, 2),
                         "repeats": {k: [round(v, 2) for v in vs] for k, vs in timings.items()}}
        print(f"{case:<12} push {plain:5.2f} s → push + SBOM + signature {signed:5.2f} s: +{signed - plain:.2f} s "
              f"(target ≤ 5 s: {'met' if signed - plain <= 5 else 'NOT met'}; medians of {args.repeats})")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
