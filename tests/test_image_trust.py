"""Signed images and their SBOMs: cosign's formats written by `toolkit push`, judged by sigstore-js
(scripts/verify-image-signature.js, which reads the real local registry itself), enforced by
`toolkit deploy` before anything changes (here on the Docker runtime; on the Kubernetes runtime in
tests/test_workloads.py, with signed manifests), and the admission policy the clusters get, validated
against policy-controller's own CRD schema (tests/schemas/policy-controller/SOURCE.md)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import subprocess
from pathlib import Path

import docker
import jsonschema
import pytest
import yaml
from crd_schemas import closed_crd_schema

from conftest import REPO, SIGNING_PUBLIC_KEY, free_port, remove_serving_containers
from toolkit.config import load_all_environments, load_environment
from toolkit.delivery.deploy import deploy_release
from toolkit.delivery.image_trust import image_sbom, require_trusted_image
from toolkit.delivery.publish import build_release_images, push_release
from toolkit.images import cosign
from toolkit.images.distribution import RegistryClient
from toolkit.images.image_signing import ImageNotTrusted, sign_image
from toolkit.images.login import registry_login
from toolkit.images.registry import push_image
from toolkit.images.release import Release
from toolkit.ml.signing import PublicKey, generate_key_pair
from toolkit.workloads.admission import INCLUDE_LABEL, image_policy
from toolkit.workloads.local_runtime import container_name, current_release
from toolkit.workloads.manifests import namespace
from toolkit.workloads.runtime import DockerRuntime
from toolkit.workloads.smoke import smoke_test_url

QUIET = lambda line: None  # noqa: E731
CRD = REPO / "tests" / "schemas" / "policy-controller" / "300-clusterimagepolicy.yaml"
JUDGE = REPO / "scripts" / "verify-image-signature.js"
DIGEST, OTHER = "sha256:" + "a" * 64, "sha256:" + "b" * 64


# ---------------------------------------------------------------- the formats (no services)


def _key(name: str) -> tuple[bytes, PublicKey]:
    private, public = generate_key_pair()
    return private, PublicKey(name, public)


def test_a_signature_verifies_only_for_its_digest_and_with_its_key():
    private, ours = _key("local")
    _, theirs = _key("prod")
    layer = cosign.signature_layer(private, "platform-local/serving", DIGEST)
    signature = layer.annotations[cosign.SIGNATURE_ANNOTATION]
    assert cosign.check_signature(layer.data, signature, DIGEST, [theirs, ours]) == "local"
    with pytest.raises(cosign.NotVerified, match="not by a trusted key"):
        cosign.check_signature(layer.data, signature, DIGEST, [theirs])
    with pytest.raises(cosign.NotVerified, match=f"is for {DIGEST}, not this image"):
        cosign.check_signature(layer.data, signature, OTHER, [ours])
    forged = layer.data.replace(DIGEST.encode(), OTHER.encode())  # the payload edited to name another image
    with pytest.raises(cosign.NotVerified, match="not by a trusted key"):
        cosign.check_signature(forged, signature, OTHER, [ours])


def test_an_attestation_opens_only_for_its_subject_predicate_and_key():
    private, ours = _key("local")
    _, theirs = _key("prod")
    layer = cosign.attestation_layer(private, "platform-local/serving", DIGEST, cosign.CYCLONEDX_PREDICATE, {"components": [1]})
    assert layer.annotations == {"predicateType": cosign.CYCLONEDX_PREDICATE}
    assert cosign.open_attestation(layer.data, DIGEST, cosign.CYCLONEDX_PREDICATE, [ours]) == ("local", {"components": [1]})
    with pytest.raises(cosign.NotVerified, match="about another image"):
        cosign.open_attestation(layer.data, OTHER, cosign.CYCLONEDX_PREDICATE, [ours])
    with pytest.raises(cosign.NotVerified, match="not signed by a trusted key"):
        cosign.open_attestation(layer.data, DIGEST, cosign.CYCLONEDX_PREDICATE, [theirs])
    with pytest.raises(cosign.NotVerified, match="predicate is 'https://cyclonedx.org/bom', not 'https://spdx.dev/Document'"):
        cosign.open_attestation(layer.data, DIGEST, "https://spdx.dev/Document", [ours])


def test_an_sbom_is_keyed_by_the_layers_that_can_hold_packages():
    from types import SimpleNamespace

    from toolkit.images.sbom import MODEL_LABEL, package_layers_key

    def image(layers, labels):
        return SimpleNamespace(attrs={"RootFS": {"Layers": layers}}, labels=labels)

    # A retrain: the serving image's model layer (its last) changes, nothing below it: the same SBOM.
    assert package_layers_key(image(["base", "venv", "model-1"], {MODEL_LABEL: "1"})) == \
        package_layers_key(image(["base", "venv", "model-2"], {MODEL_LABEL: "2"}))
    assert package_layers_key(image(["base", "venv-2", "model-1"], {MODEL_LABEL: "1"})) != \
        package_layers_key(image(["base", "venv", "model-1"], {MODEL_LABEL: "1"}))
    # A training image has no model layer: every layer counts.
    assert package_layers_key(image(["base", "venv", "x"], {})) != package_layers_key(image(["base", "venv", "y"], {}))


# ---------------------------------------------------------------- the admission policy


def _policy_schema() -> dict:
    """v1beta1's schema, closed: a field the CRD does not declare fails (the API server would prune it)."""
    schema = closed_crd_schema(CRD, "v1beta1")
    # The root declares only spec and status: the API server itself knows these three.
    schema["properties"].update({"apiVersion": {"enum": ["policy.sigstore.dev/v1beta1"]}, "kind": {"enum": ["ClusterImagePolicy"]},
                                 "metadata": {"type": "object"}})
    return schema


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_the_admission_policy_passes_policy_controllers_crd(env):
    policy = image_policy(load_environment(env), [("a", "PEM A"), ("b", "PEM B")])
    jsonschema.Draft4Validator(_policy_schema()).validate(policy)
    assert policy["spec"]["mode"] == "enforce" and policy["spec"]["images"] == [{"glob": "**"}]
    assert "namespace" not in policy["metadata"]  # cluster-scoped
    misspelled = copy.deepcopy(policy)
    misspelled["spec"]["authorities"][0]["key"]["hashAlgoritm"] = "sha256"
    with pytest.raises(jsonschema.ValidationError, match="hashAlgoritm"):
        jsonschema.Draft4Validator(_policy_schema()).validate(misspelled)


def test_render_prod_shows_the_policy_with_every_key_prod_trusts_and_labels_the_namespace(run_cli):
    image = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/platform-prod/serving@sha256:" + "1" * 64
    shown = [o for o in yaml.safe_load_all(run_cli("render", "--env", "prod", "--image", image, "--model-version", "v").stdout) if o]
    policy = shown[-1]
    assert policy["kind"] == "ClusterImagePolicy" and policy["metadata"]["labels"]["toolkit.dev/apply-set"] == "admission"
    # prod promotes from staging, staging from dev: a promoted image keeps the signature of where it was built.
    keys = {a["name"]: a["key"]["data"] for a in policy["spec"]["authorities"]}
    assert keys == {f"{env}-key": (REPO / "keys" / f"{env}.pub").read_text() for env in ("prod", "staging", "dev")}
    assert all(a["attestations"] == [{"name": "sbom", "predicateType": cosign.CYCLONEDX_PREDICATE}] for a in policy["spec"]["authorities"])
    ns = next(o for o in shown if o["kind"] == "Namespace")
    assert ns["metadata"]["labels"][INCLUDE_LABEL] == "true"
    only = [o for o in yaml.safe_load_all(run_cli("render", "--env", "prod", "--admission-only").stdout) if o]
    assert only == [policy]
    off = load_environment("prod")
    off = off.model_copy(update={"workloads": off.workloads.model_copy(update={"image_admission": False})})
    assert INCLUDE_LABEL not in namespace(off)["metadata"]["labels"]


def test_every_environment_accepts_the_admission_switch():
    assert all(config.workloads.image_admission for config in load_all_environments().values())


def test_verify_needs_a_model_or_an_image(run_cli):
    result = run_cli("verify")
    assert result.exit_code == 2 and "give --model DIR or --image REF" in result.output
    result = run_cli("verify", "--image", DIGEST)
    assert result.exit_code == 2 and "--image needs --env ENV" in result.output


# ---------------------------------------------------------------- the real registry and engine


def judge(ctx, image: str, public_key: Path) -> tuple[int, dict]:
    """sigstore-js's verdict on `image` (host/repository@digest) against `public_key`."""
    login = registry_login(ctx.config)
    name, _, digest = image.partition("@")
    host, _, repository = name.partition("/")
    result = subprocess.run(["node", str(JUDGE), host, repository, digest, str(public_key), f"{login.username}:{login.password}"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def trust_env(engine, local_ctx):
    config = local_ctx.config  # the registry's repository is local's: the other image tests' pushes are reused
    ctx = local_ctx.with_config(config.model_copy(update={
        "name": "trust-test", "serving": config.serving.model_copy(update={"port": free_port()}),
        "workloads": config.workloads.model_copy(update={"rollout_timeout_seconds": 60})}))
    from toolkit.aws import client

    client("s3", ctx.config).create_bucket(Bucket=ctx.config.artifact_store.bucket)
    yield ctx
    for kind in ("releases", "last-push", "last-build"):
        ctx.paths.record(f"{kind}-{ctx.env}").unlink(missing_ok=True)
    remove_serving_containers(engine, ctx.env)


@pytest.fixture(scope="module")
def signed(trust_env, model_dir):
    image, trainings = build_release_images(trust_env, model_dir, on_line=QUIET)
    release, training = push_release(trust_env, [image.reference, trainings[-1].reference], on_line=QUIET)
    return release, training, image.reference


@pytest.fixture(scope="module")
def unsigned(engine, trust_env, signed) -> str:
    """Another image (the served one plus a label), pushed without `toolkit push`: no signature."""
    config = trust_env.config
    built, _ = engine.images.build(fileobj=io.BytesIO(f"FROM {signed[2]}\nLABEL unsigned=yes\n".encode()),
                                   tag=f"{config.registry.name}:unsigned-{free_port()}", rm=True)
    digest = push_image(trust_env, built.tags[0], on_line=QUIET)
    return f"{registry_login(config).host}/{config.registry.name}@{digest}"


def _installed(engine, image: str, names: list[str]) -> dict[str, str]:
    script = f"import importlib.metadata as m; print(' '.join(m.version(n) for n in {names!r}))"
    out = engine.containers.run(image, ["-c", script], entrypoint="python", remove=True).decode().split()
    return dict(zip(names, out, strict=True))


def test_a_pushed_image_and_its_sbom_verify_with_sigstore_js_and_the_toolkit(engine, trust_env, signed):
    release, training, local_ref = signed
    for image in (release.image, training):
        code, verdict = judge(trust_env, image, SIGNING_PUBLIC_KEY)
        assert (code, verdict["manifest"], verdict["signature"], verdict["sbom"], verdict["reasons"]) == (0, True, True, True, [])
        assert require_trusted_image(trust_env, image).signed_by == "trust-test"  # the environment whose key signed it
    # The SBOM names what is installed in the image, at the versions installed there.
    installed = _installed(engine, local_ref, ["numpy", "fastapi", "uvicorn", "toolkit"])
    code, verdict = judge(trust_env, release.image, SIGNING_PUBLIC_KEY)
    assert {f"{name}@{version}" for name, version in installed.items()} <= set(verdict["components"])
    trust, bom = image_sbom(trust_env, release.image)
    assert trust.sbom_signed_by == "trust-test" and bom["bomFormat"] == "CycloneDX"
    by_name = {c["name"]: c for c in bom["components"]}
    wheel = next((trust_env.paths.state_subdir("wheelhouse")).glob(f"numpy-{installed['numpy']}-*.whl"))
    assert by_name["numpy"]["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
    assert sum((c.get("purl") or "").startswith("pkg:deb/") for c in bom["components"]) > 50  # the base image's dpkg packages
    assert "libc6" in by_name


def test_unsigned_foreign_and_copied_signatures_fail_both_verifiers(trust_env, signed, unsigned):
    release = signed[0]
    code, verdict = judge(trust_env, unsigned, SIGNING_PUBLIC_KEY)
    assert code == 1 and not verdict["signature"] and "no signature" in verdict["reasons"]
    with pytest.raises(ImageNotTrusted, match="has no signature"):
        require_trusted_image(trust_env, unsigned)
    elsewhere = "registry.example/x@" + unsigned.partition("@")[2]  # would be pulled from there, whatever ours holds
    with pytest.raises(ImageNotTrusted, match=r"it is not in the environment's registry \(127\.0\.0\.1:\d+\)"):
        require_trusted_image(trust_env, elsewhere)

    client, repository = RegistryClient(registry_login(trust_env.config)), trust_env.config.registry.name
    digest = unsigned.partition("@")[2]
    # Signed (and its SBOM attested) with another environment's key.
    prod_private, prod_public = _key("prod")
    sign_image(client, repository, digest, prod_private, prod_public, {"components": []})
    code, verdict = judge(trust_env, unsigned, SIGNING_PUBLIC_KEY)
    assert code == 1 and "signature: signature verification failed" in verdict["reasons"]
    with pytest.raises(ImageNotTrusted, match="not signed by a key it may run with .*not by a trusted key"):
        require_trusted_image(trust_env, unsigned)

    # The signed image's signature and attestation copied onto the unsigned digest.
    source = release.image.partition("@")[2]
    for tag in (cosign.signature_tag, cosign.attestation_tag):
        media_type, raw = client.manifest(repository, tag(source))[1:]
        client.put_manifest(repository, tag(digest), media_type, raw)
    code, verdict = judge(trust_env, unsigned, SIGNING_PUBLIC_KEY)
    assert code == 1 and not verdict["signature"] and not verdict["sbom"]
    assert any(f"names {source}, not {digest}" in reason for reason in verdict["reasons"])
    with pytest.raises(ImageNotTrusted, match=f"the signature is for {source}, not this image"):
        require_trusted_image(trust_env, unsigned)


def test_pushing_the_same_digest_again_keeps_its_one_signature(trust_env, signed):
    release, _, local_ref = signed
    client, repository = RegistryClient(registry_login(trust_env.config)), trust_env.config.registry.name
    tags = (cosign.signature_tag(release.image.partition("@")[2]), cosign.attestation_tag(release.image.partition("@")[2]))
    before = [client.manifest(repository, tag) for tag in tags]
    again, _ = push_release(trust_env, [local_ref], on_line=QUIET)
    assert again.image == release.image
    after = [client.manifest(repository, tag) for tag in tags]
    assert after == before and all(len(json.loads(raw)["layers"]) == 1 for _, _, raw in after)


def test_an_unsigned_digest_is_refused_before_anything_changes_and_the_old_release_keeps_serving(engine, trust_env, signed, unsigned):
    release = signed[0]
    deployed = deploy_release(trust_env, DockerRuntime(trust_env), release, 60, on_line=QUIET)
    assert deployed["smoke"]
    container = engine.containers.get(container_name(trust_env.env))
    with pytest.raises(ImageNotTrusted) as refused:
        deploy_release(trust_env, DockerRuntime(trust_env), Release(unsigned, "unsigned"), 60, on_line=QUIET)
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"refusing {unsigned} in trust-test:")
    assert current_release(trust_env).image == release.image
    assert engine.containers.get(container_name(trust_env.env)).id == container.id
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(container_name(trust_env.env) + "-candidate")
    assert smoke_test_url(f"http://127.0.0.1:{trust_env.config.serving.port}", trust_env)["model_version"] == release.model_version
