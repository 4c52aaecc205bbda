"""Sweeps (issue 29): the spec validated like the rest of the environment file, the work items a
pure function of it, `toolkit sweep` locally (leaderboard, plot, resume, the best setting saved as a
signed artifact naming the sweep)."""

from __future__ import annotations

import json

import pytest
import yaml

from toolkit.config import SweepConfig, load_environment
from toolkit.errors import ConfigError
from toolkit.ml import sweep as sweeps

SMALL = {"method": "grid", "space": {"hidden_layers": [[8], [16]], "learning_rate": [0.003, 0.01]}, "folds": 2,
         "metric": "roc_auc"}


def _with_sweep(root, sweep: dict, **training) -> None:
    path = root / "environments" / "local.yaml"
    document = yaml.safe_load(path.read_text())
    document["training"].update({"sweep": sweep, **training})
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.mark.parametrize("sweep, message", [
    ({**SMALL, "space": {"hidden_layers": []}}, "training.sweep.space.hidden_layers: List should have at least 1 item"),
    ({**SMALL, "space": {"learnign_rate": [0.1]}}, "Did you mean 'learning_rate'?"),
    ({**SMALL, "space": {}}, "space must list values for at least one of hidden_layers"),
    ({**SMALL, "method": "random", "trials": 5}, "trials 5 is more than the grid holds (4 combinations of hidden_layers, learning_rate)"),
    ({**SMALL, "trials": 2}, "trials is for method random; a grid tries every combination (4 here)"),
    ({**SMALL, "method": "random"}, "method random needs trials"),
    ({**SMALL, "space": {"activation": ["relu", "swish"]}}, "training.sweep.space.activation[1]: Input should be 'relu', 'tanh' or 'sigmoid'"),
    ({**SMALL, "space": {"learning_rate": [True]}}, "training.sweep.space.learning_rate[0]: Input should be a valid number (got True)"),
])
def test_a_bad_sweep_spec_names_the_file_and_the_key(repo_copy, sweep, message):
    _with_sweep(repo_copy, sweep)
    with pytest.raises(ConfigError) as refused:
        load_environment("local", repo_copy)
    assert "environments/local.yaml" in str(refused.value) and message in str(refused.value), str(refused.value)


def test_work_items_follow_from_the_spec_alone():
    grid = SweepConfig.model_validate(SMALL)
    assert sweeps.settings_list(grid) == [{"hidden_layers": [8], "learning_rate": 0.003}, {"hidden_layers": [8], "learning_rate": 0.01},
                                          {"hidden_layers": [16], "learning_rate": 0.003}, {"hidden_layers": [16], "learning_rate": 0.01}]
    items = sweeps.work_items(grid)
    assert [(i.index, i.trial, i.fold) for i in items] == [(k, k // 2, k % 2) for k in range(8)]
    drawn = SweepConfig.model_validate({**SMALL, "method": "random", "trials": 3, "seed": 4})
    assert sweeps.settings_list(drawn) == sweeps.settings_list(SweepConfig.model_validate({**SMALL, "method": "random", "trials": 3, "seed": 4}))
    assert len({json.dumps(s, sort_keys=True) for s in sweeps.settings_list(drawn)}) == 3  # without replacement
    assert sweeps.settings_list(drawn) != sweeps.settings_list(SweepConfig.model_validate({**SMALL, "method": "random", "trials": 3, "seed": 5}))


def test_sweep_ranks_resumes_and_saves_the_best_setting_as_a_signed_artifact(repo_copy, run_cli):
    _with_sweep(repo_copy, SMALL, epochs=40, patience=5)
    first = run_cli("sweep", "--env", "local", "--parallel", "2", "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    board = summary["leaderboard"]
    assert summary["metric"] == "roc_auc" and summary["settings"] == 4 and [row["rank"] for row in board] == [1, 2, 3, 4]
    assert [row["roc_auc"] for row in board] == sorted((row["roc_auc"] for row in board), reverse=True)
    results = repo_copy / ".local" / "sweeps" / "local" / summary["sweep"]
    assert sorted(p.name for p in results.glob("[0-9]*.json")) == sorted(f"{k}.json" for k in range(8))
    assert json.loads((results / "leaderboard.json").read_text())["leaderboard"] == board
    assert (results / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((repo_copy / "artifacts" / "local" / summary["trained"]["version"] / "manifest.json").read_text())
    recorded = manifest["training"]["sweep"]
    assert recorded["id"] == summary["sweep"] and recorded["setting"] == board[0]["setting"]
    assert manifest["training"]["hidden_layers"] == board[0]["setting"]["hidden_layers"]
    assert manifest["training"]["learning_rate"] == board[0]["setting"]["learning_rate"]
    assert run_cli("verify", "--model", repo_copy / "artifacts" / "local" / summary["trained"]["version"], "--env", "local").exit_code == 0
    # what `toolkit status` and the verified-release record show for the model
    from toolkit.context import Context
    from toolkit.delivery.promotion import model_sweep

    assert model_sweep(Context.load("local", repo_copy), summary["trained"]["version"]) == recorded

    # Interrupted half-way: two results lost. The same sweep runs only those, and ranks the same.
    (results / "3.json").unlink()
    (results / "6.json").unlink()
    again = run_cli("sweep", "--env", "local", "--parallel", "1", "--no-train")
    assert again.exit_code == 0, again.output
    assert f"{summary['sweep']}: 4 settings × 2 folds = 8 fits (6 done before), 1 at a time, ranked by roc_auc" in again.stderr
    rerun = json.loads(run_cli("sweep", "--env", "local", "--no-train", "--json").stdout)
    assert rerun["leaderboard"] == board and "trained" not in rerun


def test_sweep_without_a_spec_says_how_to_add_one(repo_copy, run_cli):
    path = repo_copy / "environments" / "local.yaml"
    document = yaml.safe_load(path.read_text())
    del document["training"]["sweep"]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_cli("sweep", "--env", "local")
    assert result.exit_code == 2 and "environments/local.yaml has no training.sweep" in result.stderr


def test_retrain_takes_the_best_setting_of_a_sweep(repo_copy, run_cli):
    from toolkit.cli.loop import _with_sweep_best
    from toolkit.context import Context

    _with_sweep(repo_copy, SMALL, epochs=20, patience=5)
    summary = json.loads(run_cli("sweep", "--env", "local", "--no-train", "--json").stdout)
    best = summary["leaderboard"][0]
    lines = []
    ctx = _with_sweep_best(Context.load("local", repo_copy), summary["sweep"], False, lines.append)
    assert ctx.config.training.hidden_layers == best["setting"]["hidden_layers"]
    assert ctx.config.training.learning_rate == best["setting"]["learning_rate"]
    assert lines == [f"settings from {summary['sweep']}, trial {best['trial']}: {sweeps.markdown_setting(best['setting'])}"]
    missing = run_cli("retrain", "--env", "local", "--sweep", "sweep-000000000000")
    assert missing.exit_code == 2 and "no sweep sweep-000000000000 for local here" in missing.stderr
    remote = run_cli("retrain", "--env", "local", "--sweep", summary["sweep"], "--remote")
    assert remote.exit_code == 2 and "--sweep with --remote" in remote.stderr
