"""Static loss-weight search (`mtl_keras.tuning`, `mtl-keras tune`) on a small subset of the text job."""

import json
import re

import pytest

from mtl_keras.cli import main
from mtl_keras.jobs import TextJob
from mtl_keras.tuning import search_loss_weights

TASKS = ("sentiment", "intensity", "domain")
SMALL = {"limit": 300, "embedding_dim": 16, "max_length": 16, "lexicon": False}  # a few seconds a trial
SMALL_OPTIONS = ["--limit", "300", "--embedding-dim", "16", "--max-length", "16", "--no-lexicon", "--epochs", "1"]
CANDIDATES = (0.5, 1.0, 2.0)


@pytest.fixture(scope="module")
def bayesian_search():
    return search_loss_weights(TextJob(**SMALL, epochs=2), tuner="bayesian", max_trials=3, candidates=CANDIDATES,
                               verbose=0)


@pytest.fixture(scope="module")
def grid_search():
    return search_loss_weights(TextJob(**SMALL, epochs=1), tuner="grid", verbose=0,
                               candidates={"intensity": (1, 2), "domain": (0.5, 1)})


def test_bayesian_search_starts_with_the_job_weights_and_draws_the_others_from_the_candidates(bayesian_search):
    search = bayesian_search
    assert len(search.trials) == 3
    assert all(trial.status == "COMPLETED" for trial in search.trials)
    assert search.reference.trial_id == min(trial.trial_id for trial in search.trials)  # the first trial
    assert search.reference.loss_weights == dict.fromkeys(TASKS, 1.0)
    assert search.reference.objective == 1.0
    for trial in search.trials:
        assert trial.loss_weights["sentiment"] == 1.0  # the first task keeps its weight: only ratios matter
        assert trial.loss_weights["intensity"] in CANDIDATES and trial.loss_weights["domain"] in CANDIDATES
    assert len({tuple(trial.loss_weights.values()) for trial in search.trials}) == 3
    objectives = [trial.objective for trial in search.trials]
    assert objectives == sorted(objectives)  # best first
    assert search.best_weights == search.trials[0].loss_weights
    assert search.train_command() == "mtl-keras train text " + " ".join(
        f"--loss-weight {task}={search.best_weights[task]:g}" for task in TASKS)


def test_objective_is_the_mean_unweighted_validation_loss_relative_to_the_reference(bayesian_search):
    search = bayesian_search
    reference = search.reference
    for trial in search.trials:
        by_hand = sum(trial.validation[task]["loss"] / reference.validation[task]["loss"] for task in TASKS) / 3
        assert trial.objective == pytest.approx(by_hand, rel=1e-9), trial.trial_id
        assert 1 <= trial.best_epoch <= 2
    assert set(search.best.validation["intensity"]) == {"loss", "mae", "rmse", "pearson_r"}
    assert set(search.best.validation["domain"]) == {"loss", "accuracy", "precision", "recall", "f1", "auc"}
    assert "(reference)" in search.table()


def test_grid_search_covers_the_whole_grid(grid_search):
    search = grid_search
    assert len(search.trials) == 4
    assert search.reference.loss_weights == dict.fromkeys(TASKS, 1.0)
    assert sorted((trial.loss_weights["intensity"], trial.loss_weights["domain"]) for trial in search.trials) == [
        (1.0, 0.5), (1.0, 1.0), (2.0, 0.5), (2.0, 1.0)]
    assert {trial.loss_weights["sentiment"] for trial in search.trials} == {1.0}


def test_the_reference_trial_trains_as_mtl_keras_train_does(grid_search):
    job = TextJob(**SMALL, epochs=1)
    splits = job.load_data()
    _, history = job.train(splits.tasks, splits, verbose=0)
    for task in TASKS:
        assert grid_search.reference.validation[task]["loss"] == pytest.approx(history[f"val_{task}_loss"][0], rel=1e-6)


@pytest.mark.parametrize("candidates, message", [
    ({"topic": (1, 2)}, "candidates name unknown task(s) ['topic']"),
    ({"sentiment": (1, 2), "intensity": (1, 2), "domain": (1, 2)}, "name every task"),
    ((0.5, 2.0), "must include 1.0"),
    ((0.0, 1.0), "finite numbers > 0"),
])
def test_bad_candidates_fail_before_any_training(candidates, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        search_loss_weights(TextJob(**SMALL), candidates=candidates, verbose=0)


def test_cli_tune_prints_the_best_weights_and_writes_tuning_json(tmp_path, capsys):
    output = tmp_path / "tune"
    command = ["tune", "text", *SMALL_OPTIONS, "--max-trials", "2", "--candidates", "0.5,1,2",
               "--output", str(output), "--quiet"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    record = json.loads((output / "tuning.json").read_text())
    assert [path.name for path in output.iterdir()] == ["tuning.json"]  # the temporary file was renamed
    assert len(record["trials"]) == 2 and record["tuner"] == "random" and record["config"]["limit"] == 300
    best = ", ".join(f"{task}={weight:g}" for task, weight in record["best_weights"].items())
    assert f"Best loss weights: {best}" in printed
    assert record["train_command"] in printed
    assert record["train_command"].startswith("mtl-keras train text --loss-weight sentiment=1 --loss-weight")

    assert main(command) == 2  # tuning.json is there: refused before any training
    assert "already exists" in capsys.readouterr().err


def test_cli_tune_names_an_unknown_task(tmp_path, capsys):
    assert main(["tune", "text", *SMALL_OPTIONS, "--candidates", "topic=1,2", "--output", str(tmp_path)]) == 2
    assert "unknown task(s) ['topic']" in capsys.readouterr().err
