"""The server's settings in one place (toolkit/serving.py): the environment file, the process
environment and the variables a container gets say the same thing."""

from __future__ import annotations

import pytest

from toolkit.config import load_all_environments, load_environment
from toolkit.images.release import Release
from toolkit.serving import PUBLIC_KEYS_ENV, ServingSettings
from toolkit.workloads.manifests import serving_manifests


@pytest.mark.parametrize("env", sorted(load_all_environments()))
def test_settings_survive_the_trip_through_the_process_environment(env):
    settings = ServingSettings.from_config(load_environment(env), public_keys="-----BEGIN PUBLIC KEY-----\nx\n")
    assert ServingSettings.from_environ(settings.to_environ()) == settings
    assert settings.loop is not None and settings.loop.bucket == load_environment(env).artifact_store.bucket


def test_the_configmap_is_the_settings_of_the_environment():
    config = load_environment("dev")
    release = Release("111111111111.dkr.ecr.eu-west-1.amazonaws.com/x@sha256:" + "1" * 64, "v1")
    [config_map] = [o for o in serving_manifests(config, {}, release, "PEM") if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "serving"]
    assert ServingSettings.from_environ(config_map["data"]) == ServingSettings.from_config(config, public_keys="PEM")


def test_no_environment_means_defaults_and_no_feedback_loop():
    settings = ServingSettings.from_environ({})
    assert (settings.host, settings.port, settings.max_batch_size, settings.workers) == ("127.0.0.1", 8080, 256, 1)
    assert settings.loop is None and PUBLIC_KEYS_ENV not in settings.to_environ()


def test_a_malformed_variable_is_named():
    with pytest.raises(ValueError, match=r"\$TOOLKIT_PORT"):
        ServingSettings.from_environ({"TOOLKIT_PORT": "eighty"})
    with pytest.raises(ValueError, match=r"\$TOOLKIT_FEEDBACK"):
        ServingSettings.from_environ({"TOOLKIT_FEEDBACK": '{"sample_rate": 7}'})


def test_command_line_values_override_and_unset_ones_do_not():
    settings = ServingSettings(port=9000).replace(port=None, max_batch_size=8)
    assert (settings.port, settings.max_batch_size) == (9000, 8)
