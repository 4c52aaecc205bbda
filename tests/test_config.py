from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from toolkit.config import EnvironmentConfig, known_environments, load_all_environments, load_environment
from toolkit.errors import ConfigError


def _edit(root, env, mutate):
    path = root / "environments" / f"{env}.yaml"
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_shipped_environment_validates():
    configs = load_all_environments()
    assert set(configs) == {"local", "dev", "staging", "prod"}
    for name, config in configs.items():
        assert isinstance(config, EnvironmentConfig)
        assert config.name == name
        assert config.training.dataset == "data/heart-cleveland.csv"
        gpu = config.gpu_pools()
        assert gpu and all(p.min_size == 0 for p in gpu)


def test_prod_is_private_and_protected():
    prod = load_environment("prod")
    assert prod.prevent_destroy is True
    assert prod.cluster.endpoint_public_access is False
    assert load_environment("dev").prevent_destroy is False


def test_unknown_key_names_file_path_value_and_allowed_keys(repo_copy):
    path = _edit(repo_copy, "local", lambda d: d["training"].update(learnign_rate=0.01))
    with pytest.raises(ConfigError) as err:
        load_environment("local")
    message = str(err.value)
    assert str(path) in message
    assert "training.learnign_rate: unknown key (value 0.01)" in message
    assert "learning_rate" in message and "Did you mean 'learning_rate'?" in message


def test_bad_value_names_key_path_value_and_choices(repo_copy):
    _edit(repo_copy, "local", lambda d: d["node_pools"][1].update(ami_type="WINDOWS"))
    with pytest.raises(ConfigError) as err:
        load_environment("local")
    message = str(err.value)
    assert "node_pools[1].ami_type" in message
    assert "'WINDOWS'" in message and "AL2_x86_64_GPU" in message


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["node_pools"][1].update(taints=[]), "nvidia.com/gpu=true:NoSchedule"),
        (lambda d: d["node_pools"][1].update(instance_types=["m5.large"]), "GPU instance types"),
        (lambda d: d["node_pools"][0].update(min_size=3, max_size=2), "min_size <= desired_size <= max_size"),
        (lambda d: d["training"].update(target="age > 50"), "must test the label column 'num'"),
        (lambda d: d["aws"].update(account_id="12"), "aws.account_id"),
        (lambda d: d.pop("serving"), "serving: required key is missing"),
        (lambda d: d["cluster"].update(endpoint_public_access=False, endpoint_private_access=False), "at least one"),
        (lambda d: d.update(name="other"), "must match the file name"),
    ],
)
def test_semantic_errors(repo_copy, mutate, expected):
    _edit(repo_copy, "local", mutate)
    with pytest.raises(ConfigError, match="local.yaml") as err:
        load_environment("local")
    assert expected in str(err.value)


def test_yaml_syntax_error_has_line(repo_copy):
    (repo_copy / "environments" / "local.yaml").write_text("name: local\naws: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_environment("local")


def test_unknown_environment_lists_known_ones(repo_copy):
    with pytest.raises(ConfigError) as err:
        load_environment("qa")
    assert "unknown environment 'qa'" in str(err.value)
    assert "dev, local, prod, staging" in str(err.value)
    assert known_environments() == ["dev", "local", "prod", "staging"]


def test_config_is_immutable():
    config = load_environment("local")
    with pytest.raises(ValidationError, match="frozen"):
        config.training.seed = 3  # type: ignore[misc]


def test_cli_bad_config_exits_2_with_one_message(repo_copy, run_cli):
    _edit(repo_copy, "local", lambda d: d["training"].update(epocs=3))
    result = run_cli("train", "--env", "local")
    assert result.exit_code == 2
    assert "training.epocs: unknown key" in result.stderr
    assert "Traceback" not in result.output
    result = run_cli("config", "validate", "qa")
    assert result.exit_code == 2 and "Known environments" in result.stderr


def test_a_yaml_alias_bomb_is_refused_before_it_expands(repo_copy, run_cli):
    """Issue 13 item 8: nine levels of nine aliases stand for 387 million values; it used to take 70 s
    and 3 GB before the exit-2 message. It is refused from the composed document's size."""
    levels = ["a: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    (repo_copy / "environments" / "local.yaml").write_text("\n".join(levels) + "\nname: local\n")
    result = run_cli("config", "validate", "local")
    assert result.exit_code == 2
    assert "expands to more than 100,000 values (through YAML aliases)" in result.stderr


def test_a_recursive_or_deeply_nested_yaml_is_refused(repo_copy, run_cli):
    path = repo_copy / "environments" / "local.yaml"
    path.write_text("name: local\naws: " + "[" * 5000 + "]" * 5000 + "\n")
    result = run_cli("config", "validate", "local")
    assert result.exit_code == 2 and "nested too deeply" in result.stderr
    path.write_text("name: local\naws: &x {k: *x}\n")
    result = run_cli("config", "validate", "local")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
