"""Integration: the serving image with the real Docker engine, a real OCI registry and an ECR
login from moto: build, push, remove, pull by digest, run, and compare predictions."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest

from conftest import HEART, REPO, SIGNING_KEY, SIGNING_PUBLIC_KEY, free_port, wait_ready
from toolkit.config import load_environment
from toolkit.context import Context
from toolkit.errors import ArtifactError, BadInputError, ToolkitError
from toolkit.images.build import build_image
from toolkit.images.login import registry_login
from toolkit.images.registry import push_image
from toolkit.ml.artifacts import load_artifact
from toolkit.ml.predict import predict_records
from toolkit.ml.table import read_csv
from toolkit.serving import PUBLIC_KEYS_ENV


def _records(n: int) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "num"} for record in read_csv(HEART).records(range(n))]


def test_ecr_login_from_moto(local):
    login = registry_login(local)
    assert login.username == "AWS"
    assert login.password == f"{local.aws.account_id}-auth-token"  # what moto's ECR hands out
    assert login.host == local.registry.endpoint
    without_override = local.model_copy(update={"registry": local.registry.model_copy(update={"endpoint": None})})
    assert registry_login(without_override).host == f"{local.aws.account_id}.dkr.ecr.{local.aws.region}.amazonaws.com"


def test_push_without_credentials_is_a_clear_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ToolkitError, match="no AWS credentials to get an ECR login for dev"):
        registry_login(load_environment("dev"))


def test_build_refuses_a_corrupt_model(model_dir, tmp_path):
    damaged = tmp_path / "model"
    shutil.copytree(model_dir, damaged)
    (damaged / "metrics.json").write_text("{}")
    with pytest.raises(ArtifactError, match="metrics.json"):
        build_image(Context.load("local", REPO), damaged)


def test_build_push_pull_by_digest_run_and_compare(engine, local, local_ctx, model_dir):
    image = build_image(local_ctx, model_dir, on_line=lambda line: None)
    model = load_artifact(model_dir)
    assert image.tag.startswith(model.version + "-")
    labels = engine.images.get(image.image_id).labels
    assert labels["io.toolkit.model.version"] == model.version
    assert labels["io.toolkit.model.weights-sha256"] == model.manifest["files"]["weights.npz"]["sha256"]
    assert image.size_bytes < 250e6

    digest = push_image(local_ctx, image.reference, on_line=lambda line: None)
    assert digest.startswith("sha256:")
    assert push_image(local_ctx, image.reference, on_line=lambda line: None) == digest  # same content: a no-op
    login = registry_login(local)
    other = f"{local.registry.name}:{image.tag}-other"
    engine.images.get(image.image_id).tag(other)
    assert push_image(local_ctx, other, on_line=lambda line: None) == digest
    engine.images.get(local.serving.base_image).tag(other)  # the same tag, now other content
    with pytest.raises(BadInputError, match="already exists with other content .* tags are immutable"):
        push_image(local_ctx, other, on_line=lambda line: None)
    for ref in (other, f"{login.host}/{other}"):
        engine.images.remove(ref)
    with pytest.raises(BadInputError, match="never 'latest'"):
        push_image(local_ctx, f"{local.registry.name}:latest")

    # Remove every local copy, then pull back by digest with the ECR login.
    remote = f"{login.host}/{local.registry.name}"
    engine.images.remove(image.image_id, force=True)
    pulled = engine.images.pull(f"{remote}@{digest}", auth_config=login.auth_config())
    assert pulled.id == image.image_id  # the same image, byte for byte

    port = free_port()
    # The host's OpenBLAS kernel choice too (e.g. OPENBLAS_CORETYPE): float32 matmuls of different
    # kernels differ in the last bit, and the comparison below is exact.
    blas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    container = engine.containers.run(pulled.id, detach=True, network_mode="host",
                                      environment={"TOOLKIT_HOST": "127.0.0.1", "TOOLKIT_PORT": str(port), **blas,
                                                   PUBLIC_KEYS_ENV: SIGNING_PUBLIC_KEY.read_text()})  # what it verifies the model with
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz")
        records = _records(16)
        request = urllib.request.Request(f"{base}/v1/predict", json.dumps({"records": records}).encode(),
                                         {"content-type": "application/json"})
        served = json.loads(urllib.request.urlopen(request, timeout=10).read())
        columns = {f: [r[f] for r in records] for f in records[0]}
        assert served["model_version"] == model.version
        assert served["predictions"] == predict_records(model, columns, "test")
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert 'toolkit_http_requests_total{route="/v1/predict",status="200"} 1.0' in metrics
        container.reload()
        assert container.attrs["Config"]["User"] == "10001"
    finally:
        container.remove(force=True)
        engine.images.remove(pulled.id, force=True)


def test_training_image_trains_from_s3_and_uploads_the_artifact(engine, local, local_ctx, model_dir, tmp_path):
    """What the GPU Job's container does, run for real: the training image reads the dataset from
    the artifact store (moto S3), trains, and uploads the verified artifact."""
    from toolkit.aws import client
    from toolkit.store.s3 import upload_file

    image = build_image(local_ctx, model_dir, on_line=lambda line: None,
                        target="training")
    assert image.tag.startswith("training-")
    bucket = "training-image-test"
    s3 = client("s3", local)
    s3.create_bucket(Bucket=bucket)
    upload_file(local, HEART, f"s3://{bucket}/datasets/heart-cleveland.csv")
    environments = tmp_path / "environments"
    environments.mkdir()
    (environments / "local.yaml").write_text(
        (REPO / "environments" / "local.yaml").read_text().replace("http://127.0.0.1:4566", local.aws.endpoint_url))
    command = ["train", "--env", "local", "--epochs", "5", "--data", f"s3://{bucket}/datasets/heart-cleveland.csv",
               "--out", "/tmp/artifacts", "--upload", f"s3://{bucket}/models/local/"]
    # The emulated environment's signing key, mounted as a secret would be (readable by the image's user).
    key = tmp_path / "signing" / "local.key"
    key.parent.mkdir()
    key.write_bytes(SIGNING_KEY.read_bytes())
    key.chmod(0o644)
    logs = engine.containers.run(image.image_id, command, network_mode="host", remove=True, read_only=True,
                                 tmpfs={"/tmp": "size=256m"},
                                 environment={"TOOLKIT_ROOT": "/etc/toolkit", "TOOLKIT_SIGNING_KEY_FILE": "/run/signing/local.key"},
                                 volumes={str(environments): {"bind": "/etc/toolkit/environments", "mode": "ro"},
                                          str(key.parent): {"bind": "/run/signing", "mode": "ro"}}).decode()
    assert "uploaded s3://training-image-test/models/local/" in logs, logs
    assert "matplotlib not installed" in logs
    keys = {o["Key"].rsplit("/", 1)[-1] for o in s3.list_objects_v2(Bucket=bucket, Prefix="models/local/")["Contents"]}
    assert keys == {"manifest.json", "metrics.json", "data_report.json", "weights.npz", "model.sig"}  # signed where it was trained
    engine.images.remove(image.image_id, force=True)


def test_a_release_rerun_reuses_a_tag_built_from_the_same_inputs(engine, local, local_ctx, model_dir):
    """Issue 13 item 12: builds are not byte-reproducible, so a second build of the same commit (another
    checkout, a CI re-run after a cache miss) has another digest under the same immutable tag. Push
    reuses the registry's image when its build-inputs label matches, and still refuses other inputs."""
    import io

    from toolkit.images.build import BUILD_INPUTS_LABEL, build_inputs
    from toolkit.images.distribution import RegistryClient

    image = build_image(local_ctx, model_dir, on_line=lambda line: None, target="training")
    inputs = engine.images.get(image.image_id).labels[BUILD_INPUTS_LABEL]
    assert inputs == build_inputs(local_ctx, load_artifact(model_dir), "training") and inputs.startswith("sha256:")
    login = registry_login(local)
    tag = f"{local.registry.name}:{image.tag}-rerun"
    engine.images.get(image.image_id).tag(tag)
    first = push_image(local_ctx, tag, on_line=lambda line: None)
    assert RegistryClient(login).labels(local.registry.name, f"{image.tag}-rerun")[BUILD_INPUTS_LABEL] == inputs

    # The same inputs, other bytes (what a rebuild gives): the existing image is used, nothing is pushed.
    rebuilt, _ = engine.images.build(fileobj=io.BytesIO(f"FROM {image.image_id}\nRUN true\n".encode()), tag=tag, rm=True)
    assert rebuilt.id != image.image_id and rebuilt.labels[BUILD_INPUTS_LABEL] == inputs
    said = []
    assert push_image(local_ctx, tag, on_line=said.append) == first
    assert any("built from the same inputs" in line for line in said), said

    # Other inputs under the tag: refused, naming both.
    other, _ = engine.images.build(fileobj=io.BytesIO(f"FROM {image.image_id}\nLABEL {BUILD_INPUTS_LABEL}=sha256:other\n".encode()),
                                   tag=tag, rm=True)
    with pytest.raises(BadInputError, match=f"built from inputs {inputs}; this image's are sha256:other"):
        push_image(local_ctx, tag, on_line=lambda line: None)
    for child in (other.id, rebuilt.id):  # children before their parent
        engine.images.remove(child, force=True)
    engine.images.remove(image.image_id, force=True)
