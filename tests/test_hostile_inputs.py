"""Property tests: whatever bytes a user or an attacker hands the toolkit, it ends in exit 0 or in
exit 2 with one `error:` line, never a traceback; the server never answers 5xx.

Each test runs the real CLI in-process with exceptions propagating (`catch_exceptions=False`), so
an unexpected exception fails the property with its traceback."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from toolkit.cli import cli
from toolkit.ml.artifacts import manifest_checksum

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Cells that reach the parser's corners: numbers, missing tokens, huge and odd numbers, quotes, texts.
CELLS = st.one_of(st.sampled_from(["", "?", "NA", "nan", "inf", "-inf", "1e999", "9" * 400, "0x10", "1_0", '"a,b"', '"',
                                   "1", "0", "2.5", "-3", "red", "  7 ", "\x00", "é", "1e-400"]),
                  st.floats(allow_nan=True).map(str), st.text(max_size=8))
CSV_TEXT = st.builds(
    lambda header, rows, delimiter: "\n".join(delimiter.join(r) for r in [header, *rows]),
    st.lists(st.sampled_from(["y", "a", "b", "c", ""]), min_size=1, max_size=4),
    st.lists(st.lists(CELLS, min_size=0, max_size=5), max_size=25),
    st.sampled_from([",", ";", "\t", "|"]),
)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=20)


def _exits_cleanly(result) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output[-2000:])
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def model(model_dir):
    return str(model_dir)


@PROPERTY
@given(data=st.one_of(st.binary(max_size=600), CSV_TEXT.map(str.encode)))
def test_any_bytes_as_a_training_csv(runner, tmp_path, data):
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    result = runner.invoke(cli, ["train", "--env", "local", "--data", str(path), "--label", "y", "--epochs", "1",
                                 "--out", str(tmp_path / "out"), "--json"], catch_exceptions=False)
    _exits_cleanly(result)


@PROPERTY
@given(data=st.one_of(st.binary(max_size=600), CSV_TEXT.map(str.encode), JSON.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_as_predict_input(runner, model, data):
    result = runner.invoke(cli, ["predict", "--model", model, "--json"], input=data, catch_exceptions=False)
    _exits_cleanly(result)


@pytest.fixture(scope="module")
def environments(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-env")
    shutil.copytree(REPO / "environments", root / "environments")
    return root


YAML_TEXT = st.one_of(
    st.binary(max_size=400),
    JSON.map(lambda v: json.dumps({"name": "local", "aws": v}).encode()),
    st.lists(st.sampled_from(["name: local\n", "aws: &a [1, 2]\n", "x: [*a, *a]\n", "training: {epochs: -1}\n", "- 1\n",
                              "serving: !!python/object:os.system x\n", "a: *b\n", "{", "k: 'unterminated\n", "\t\n"]),
             max_size=6).map(lambda parts: "".join(parts).encode()),
)


@PROPERTY
@given(data=YAML_TEXT)
def test_any_bytes_as_an_environment_file(runner, environments, monkeypatch, data):
    monkeypatch.setenv("TOOLKIT_ROOT", str(environments))
    (environments / "environments" / "local.yaml").write_bytes(data)
    result = runner.invoke(cli, ["config", "validate", "local"], catch_exceptions=False)
    _exits_cleanly(result)


@pytest.fixture(scope="module")
def manifest(model_dir):
    return json.loads((model_dir / "manifest.json").read_text())


def _mutations(manifest: dict):
    """The real manifest with one value replaced by arbitrary JSON, at the top level or one level down."""
    paths = [(key,) for key in manifest] + [(key, sub) for key, value in manifest.items() if isinstance(value, dict) for sub in value]
    return st.tuples(st.sampled_from(paths), JSON)


@PROPERTY
@given(data=st.data())
def test_any_manifest_is_refused_cleanly(runner, model_dir, manifest, tmp_path, data):
    directory = tmp_path / "model"
    if not directory.exists():
        shutil.copytree(model_dir, directory)
    if data.draw(st.booleans()):
        (directory / "manifest.json").write_bytes(data.draw(st.binary(max_size=300)))
    else:
        path, value = data.draw(_mutations(manifest))
        crafted = json.loads(json.dumps(manifest))
        target = crafted
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        crafted["checksum"] = manifest_checksum(crafted)  # as an attacker would
        (directory / "manifest.json").write_text(json.dumps(crafted))
    result = runner.invoke(cli, ["predict", "--model", str(directory)], input='[{"age": 50}]', catch_exceptions=False)
    _exits_cleanly(result)


@pytest.fixture(scope="module")
def client(model_dir):
    from toolkit.serve.app import create_app

    return TestClient(create_app(model_dir, max_batch_size=8, max_body_bytes=8192), raise_server_exceptions=False)


@PROPERTY
@given(body=st.one_of(JSON, st.dictionaries(st.sampled_from(["records", "instances"]), JSON, max_size=2),
                      st.fixed_dictionaries({"records": st.lists(st.dictionaries(st.sampled_from(["age", "sex", "cp", "x"]), JSON),
                                                                 max_size=3)})))
def test_any_json_body_to_predict_is_never_a_5xx(client, body):
    response = client.post("/v1/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code < 500, (body, response.text[:300])
