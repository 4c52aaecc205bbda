"""Signed model artifacts: a model trained by `toolkit train` is signed with its environment's key
and served; a tampered, re-signed-with-another-key or unsigned artifact is refused by `toolkit
predict`, `toolkit verify` and the server, with exit 2 and the reason. The cloud key path runs on
moto's Secrets Manager: `toolkit signing-key` stores the private key in the stack's secret and
writes the public key; staging trusts its own key and dev's (it promotes from dev)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, SERVICES, free_port, train_small_model
from toolkit.context import Context
from toolkit.ml.signing import SIGNATURE, SignatureError, generate_key_pair, sign_artifact, verify_signature
from toolkit.paths import ProjectPaths
from toolkit.signing_keys import create_signing_key, private_key, trusted_keys


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    return train_small_model(tmp_path_factory.mktemp("signed"), seed=5)


def _copy(signed, tmp_path, name: str):
    target = tmp_path / name
    shutil.copytree(signed, target)
    return target


def _tampered(signed, tmp_path):
    """The weights changed and the manifest's checksums recomputed, as an attacker would: only the signature notices."""
    import hashlib

    from toolkit.ml.artifacts import manifest_checksum

    model = _copy(signed, tmp_path, "tampered")
    metrics = model / "metrics.json"
    metrics.write_text(metrics.read_text().replace("{", '{"note": "edited",', 1))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"]["metrics.json"] = {"sha256": hashlib.sha256(metrics.read_bytes()).hexdigest(), "bytes": metrics.stat().st_size}
    manifest["checksum"] = manifest_checksum(manifest)
    (model / "manifest.json").write_text(json.dumps(manifest))
    return model


def _resigned(signed, tmp_path):
    model = _copy(signed, tmp_path, "resigned")
    sign_artifact(model, generate_key_pair()[0])
    return model


def _unsigned(signed, tmp_path):
    model = _copy(signed, tmp_path, "unsigned")
    (model / SIGNATURE).unlink()
    return model


BAD = {"tampered": (_tampered, "files changed after signing: manifest.json, metrics.json)"),
       "resigned": (_resigned, "Key mismatch"),
       "unsigned": (_unsigned, "the artifact is not signed")}


@pytest.mark.parametrize("case", sorted(BAD))
def test_predict_and_verify_refuse_a_bad_artifact_with_exit_2_and_the_reason(signed, tmp_path, run_cli, case):
    make, reason = BAD[case]
    model = make(signed, tmp_path)
    for args in (["predict", "--model", model, "--input", REPO / "data" / "heart-cleveland.csv"], ["verify", "--model", model]):
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert reason in result.stderr and "Traceback" not in result.stderr
    good = run_cli("verify", "--model", signed, "--json")
    assert good.exit_code == 0 and json.loads(good.stdout)["signed_by"] == "TOOLKIT_MODEL_PUBLIC_KEYS"


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_server_refuses_to_start_on_a_bad_artifact(signed, tmp_path, case):
    model = BAD[case][0](signed, tmp_path)
    result = subprocess.run([str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(model), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert BAD[case][1] in result.stderr and "Traceback" not in result.stderr


def test_the_server_verifies_against_the_keys_it_is_given(signed):
    from toolkit.ml.signing import public_keys_from_pem
    from toolkit.serve.app import create_app

    other = public_keys_from_pem("prod", generate_key_pair()[1])
    with pytest.raises(SignatureError, match="prod: Key mismatch"):
        create_app(signed, trusted_keys=other)
    assert create_app(signed).state.signed_by == "TOOLKIT_MODEL_PUBLIC_KEYS"


def test_toolkit_train_signs_with_the_local_environment_key(repo_copy, run_cli):
    summary = json.loads(run_cli("train", "--env", "local", "--epochs", "3", "--json").stdout)
    model = summary["artifact"]
    assert (repo_copy / ".local" / "signing" / "local.key").stat().st_mode & 0o077 == 0  # the private key is the owner's only
    result = run_cli("verify", "--model", model, "--public-key", repo_copy / ".local" / "signing" / "local.pub")
    assert result.exit_code == 0 and "signed by the key of" in result.stdout


@SERVICES
def test_cloud_keys_live_in_the_stack_secret_and_staging_trusts_dev(tmp_path, monkeypatch):
    """dev and staging on moto's Secrets Manager (the SDK's AWS_ENDPOINT_URL, as a real account would be reached)."""
    from toolkit.aws import client
    from toolkit.config import load_environment
    from toolkit.local.moto import start_moto, stop_moto

    paths = ProjectPaths(tmp_path / "project")
    shutil.copytree(REPO / "environments", paths.root / "environments")
    url = f"http://127.0.0.1:{free_port()}"
    start_moto(paths, url)
    try:
        for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
            monkeypatch.setenv(key, value)
        contexts = {}
        for env in ("dev", "staging"):
            config = load_environment(env, paths.root)
            ctx = contexts[env] = Context(config, paths)
            with pytest.raises(Exception, match="deploy the stack first"):
                create_signing_key(ctx)
            client("secretsmanager", config).create_secret(Name=config.signing_secret_name)  # what the stack creates
            with pytest.raises(Exception, match="is not set"):
                private_key(ctx)
            lines = create_signing_key(ctx)
            assert (paths.root / config.signing.public_key).exists() and "commit it" in lines[-1]
            with pytest.raises(Exception, match="already holds"):
                create_signing_key(ctx)
        model = train_small_model(tmp_path / "model", seed=2)
        (model / SIGNATURE).unlink()
        sign_artifact(model, private_key(contexts["dev"]))
        assert verify_signature(model, trusted_keys(contexts["dev"])).name == "dev"
        assert [k.name for k in trusted_keys(contexts["staging"])] == ["staging", "dev"]
        assert verify_signature(model, trusted_keys(contexts["staging"])).name == "dev"  # promoted from dev
        create_signing_key(contexts["dev"], rotate=True)
        with pytest.raises(SignatureError, match="dev: Key mismatch"):
            verify_signature(model, trusted_keys(contexts["staging"]))
    finally:
        stop_moto(paths)


def test_a_link_to_the_artifact_verifies_as_the_artifact(tmp_path):
    """artifacts/ENV/latest is a symlink: `toolkit predict --model artifacts/local/latest` must serve it."""
    from conftest import SIGNING_PUBLIC_KEY, train_small_model
    from toolkit.ml.signing import public_keys_from_pem, verify_signature

    artifact = train_small_model(tmp_path / "models", seed=3)
    latest = tmp_path / "latest"
    latest.symlink_to(artifact)
    keys = public_keys_from_pem("local", SIGNING_PUBLIC_KEY.read_bytes())
    assert verify_signature(latest, keys).name == "local"


def test_the_keys_are_the_callers_choice_never_the_artifacts(repo_copy, run_cli, monkeypatch):
    """A model trained in another checkout names `local` in its manifest; that checkout's key signed it.
    Verified here with no --env, only the keys the caller was given count: the manifest picks none."""
    summary = json.loads(run_cli("train", "--env", "local", "--epochs", "3", "--json").stdout)
    model = summary["artifact"]
    assert json.loads((Path(model) / "manifest.json").read_text())["env"] == "local"
    refused = run_cli("verify", "--model", model)  # $TOOLKIT_MODEL_PUBLIC_KEYS: the main checkout's key, not this one's
    assert refused.exit_code == 2 and "Key mismatch" in refused.stderr
    assert run_cli("verify", "--model", model, "--env", "local").exit_code == 0  # this checkout's local key, chosen

    monkeypatch.delenv("TOOLKIT_MODEL_PUBLIC_KEYS")
    unchosen = run_cli("verify", "--model", model)
    assert unchosen.exit_code == 2 and "--env ENV" in unchosen.stderr and "--public-key FILE" in unchosen.stderr


def test_load_signed_artifact_checks_the_signature_first_and_names_the_signer(signed, tmp_path):
    """Keys before bytes: a corrupt file is refused by the signature over the bytes as read, before
    the manifest's checksums or the weights are looked at."""
    from conftest import SIGNING_PUBLIC_KEY
    from toolkit.ml.signing import load_signed_artifact, public_keys_from_pem

    keys = public_keys_from_pem("local", SIGNING_PUBLIC_KEY.read_bytes())
    assert load_signed_artifact(signed, keys).signed_by == "local"
    corrupt = _copy(signed, tmp_path, "corrupt")
    (corrupt / "weights.npz").write_bytes(b"not weights")
    with pytest.raises(SignatureError, match="files changed after signing: weights.npz"):
        load_signed_artifact(corrupt, keys)
    with pytest.raises(SignatureError, match="Key mismatch"):
        load_signed_artifact(signed, public_keys_from_pem("prod", generate_key_pair()[1]))
