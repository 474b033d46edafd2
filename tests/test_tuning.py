"""Static loss-weight search (`mtl_keras.tuning`, `mtl-keras tune`) on a small subset of the text job."""

import re

import pytest

from mtl_keras.cli import main
from mtl_keras.jobs import TextJob
from mtl_keras.tuning import search_loss_weights

TASKS = ("sentiment", "intensity", "domain")
# A few seconds a trial: each trial's cost is mostly tracing its model's functions, whatever the data; one batch an
# epoch. The command's `tune` (and its reference trial against `train`) is tested in test_cli.py.
SMALL = {"limit": 300, "embedding_dim": 16, "max_length": 16, "lexicon": False, "batch_size": 256}
CANDIDATES = (0.5, 1.0, 2.0)


@pytest.fixture(scope="module")
def bayesian_search():
    return search_loss_weights(TextJob(**SMALL, epochs=2), tuner="bayesian", max_trials=2, candidates=CANDIDATES,
                               verbose=0)


@pytest.fixture(scope="module")
def grid_search():
    return search_loss_weights(TextJob(**SMALL, epochs=1), tuner="grid", verbose=0,
                               candidates={"intensity": (1, 2), "domain": (0.5, 1)})


def test_bayesian_search_starts_with_the_job_weights_and_draws_the_others_from_the_candidates(bayesian_search):
    search = bayesian_search
    assert len(search.trials) == 2
    assert all(trial.status == "COMPLETED" for trial in search.trials)
    assert search.reference.trial_id == min(trial.trial_id for trial in search.trials)  # the first trial
    assert search.reference.loss_weights == dict.fromkeys(TASKS, 1.0)
    assert search.reference.objective == 1.0
    for trial in search.trials:
        assert trial.loss_weights["sentiment"] == 1.0  # the first task keeps its weight: only ratios matter
        assert trial.loss_weights["intensity"] in CANDIDATES and trial.loss_weights["domain"] in CANDIDATES
    assert len({tuple(trial.loss_weights.values()) for trial in search.trials}) == 2  # the draw is not the reference


@pytest.mark.parametrize("search_name, epochs", [("bayesian_search", 2), ("grid_search", 1)])
def test_objective_is_the_mean_unweighted_validation_loss_relative_to_the_reference(search_name, epochs, request):
    search = request.getfixturevalue(search_name)
    reference = search.reference
    for trial in search.trials:
        by_hand = sum(trial.validation[task]["loss"] / reference.validation[task]["loss"] for task in TASKS) / 3
        assert trial.objective == pytest.approx(by_hand, rel=1e-9), trial.trial_id
        assert 1 <= trial.best_epoch <= epochs
    objectives = [trial.objective for trial in search.trials]
    assert objectives == sorted(objectives)  # best first
    assert search.best_weights == search.trials[0].loss_weights
    assert search.train_command() == "mtl-keras train text " + " ".join(
        f"--loss-weight {task}={search.best_weights[task]:g}" for task in TASKS)
    assert set(search.best.validation["intensity"]) == {"loss", "mae", "rmse", "pearson_r"}
    assert set(search.best.validation["domain"]) == {"loss", "accuracy", "precision", "recall", "f1", "auc"}
    assert "(reference)" in search.table()


def test_grid_search_covers_the_whole_grid(grid_search):
    search = grid_search
    assert len(search.trials) == 4
    assert all(trial.status == "COMPLETED" for trial in search.trials)
    assert search.reference.loss_weights == dict.fromkeys(TASKS, 1.0)
    assert sorted((trial.loss_weights["intensity"], trial.loss_weights["domain"]) for trial in search.trials) == [
        (1.0, 0.5), (1.0, 1.0), (2.0, 0.5), (2.0, 1.0)]
    assert {trial.loss_weights["sentiment"] for trial in search.trials} == {1.0}


@pytest.mark.parametrize("candidates, message", [
    ({"topic": (1, 2)}, "candidates name unknown task(s) ['topic']"),
    ({"sentiment": (1, 2), "intensity": (1, 2), "domain": (1, 2)}, "name every task"),
    ((0.5, 2.0), "must include 1.0"),
    ((0.0, 1.0), "finite numbers > 0"),
])
def test_bad_candidates_fail_before_any_training(candidates, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        search_loss_weights(TextJob(**SMALL), candidates=candidates, verbose=0)


def test_cli_tune_names_an_unknown_task(tmp_path, capsys):
    assert main(["tune", "text", "--limit", "300", "--candidates", "topic=1,2", "--output", str(tmp_path)]) == 2
    assert "unknown task(s) ['topic']" in capsys.readouterr().err
