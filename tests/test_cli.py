"""End to end through the `mtl-keras` command (its `main`, in this process: the command's own start in a fresh
process is tested in test_keras_surface.py), on a small stratified subset of the bundled corpus."""

import json

import pytest

from helpers import train_in_process
from mtl_keras.cli import main

TASKS = ("sentiment", "intensity", "domain")
# Small enough for a few seconds a training (mostly tracing, whatever the data); `train` and `tune` take the same, so
# that the search's reference trial can be compared with the run's training.
SMALL = ["--limit", "400", "--epochs", "1", "--embedding-dim", "16", "--max-length", "16", "--no-lexicon",
         "--batch-size", "256"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "tiny"
    return folder, train_in_process("text", *SMALL, "--baselines", "--output", str(folder), "--quiet")


def test_train_writes_a_complete_run_folder(trained_run):
    folder, stdout = trained_run
    for name in ("model.keras", "saved_model", "metrics.json", "history.json", "config.json"):
        assert (folder / name).exists(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["test"]) == {"sentiment", "intensity", "domain"}
    assert set(metrics["test"]["sentiment"]) >= {"accuracy", "precision", "recall", "f1", "auc", "labelled"}
    assert set(metrics["test"]["intensity"]) >= {"mae", "rmse", "pearson_r"}
    assert set(metrics["single_task_test"]) == {"sentiment", "intensity", "domain"}
    assert isinstance(metrics["delta_m_percent"], float)
    history = json.loads((folder / "history.json").read_text())
    assert set(history) == {"multitask", "sentiment", "intensity", "domain"}
    assert "val_sentiment_loss" in history["multitask"]
    assert "Δm" in stdout and "sentiment" in stdout
    assert f"Run folder: {folder}" in stdout


def test_evaluate_recomputes_the_recorded_metrics(trained_run, capsys):
    folder, _ = trained_run
    assert main(["evaluate", str(folder)]) == 0
    out = capsys.readouterr().out
    recorded = json.loads((folder / "metrics.json").read_text())["test"]
    assert f"{recorded['domain']['accuracy']:.4f}   (recorded: {recorded['domain']['accuracy']:.4f})" in out
    assert main(["evaluate", str(folder), "--saved-model"]) == 0
    assert f"(recorded: {recorded['intensity']['mae']:.4f})" in capsys.readouterr().out


def test_predict_prints_every_task(trained_run, capsys):
    folder, _ = trained_run
    assert main(["predict", str(folder), "I love this", "stocks fell"]) == 0
    out = capsys.readouterr().out
    assert out.count("sentiment") == 2 and out.count("intensity") == 2 and out.count("domain") == 2
    assert "p(positive class)=" in out


# Refusals must come before any training, which the empty stdout (no progress bar) and the untouched folders show.
def test_existing_run_folder_is_not_overwritten(trained_run, capsys):
    folder, _ = trained_run
    before = (folder / "metrics.json").read_text()
    assert main(["train", "text", "--limit", "200", "--epochs", "1", "--output", str(folder)]) == 2
    printed = capsys.readouterr()
    assert "already exists" in printed.err
    assert "Epoch" not in printed.out and "loss" not in printed.out  # refused before training
    assert (folder / "metrics.json").read_text() == before


def test_unknown_task_in_loss_weights_fails_before_training(tmp_path, capsys):
    assert main(["train", "text", "--limit", "200", "--loss-weight", "topic=2", "--output", str(tmp_path / "x")]) == 2
    printed = capsys.readouterr()
    assert "loss_weights name unknown task(s) ['topic']" in printed.err
    assert "loss" not in printed.out
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", [["--help"], ["train", "text", "--help"], ["evaluate", "--help"],
                                     ["predict", "--help"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command)
    assert exit_info.value.code == 0
    assert "usage: mtl-keras" in capsys.readouterr().out


@pytest.mark.parametrize("job, option, registry", [
    ("text", "--encoder", "mtl_keras.encoders.text:TEXT_ENCODERS"),
    ("text", "--sharing", "mtl_keras.sharing:SHARING_NAMES"),
    ("census", "--weighting", "mtl_keras.training.weighting:WEIGHTINGS"),
    ("census", "--gradient", "mtl_keras.training.gradients:GRADIENT_METHODS"),
    ("vision", "--dataset", "mtl_keras.jobs.vision:PRESETS"),
    ("vision", "--sharing", "mtl_keras.sharing.vision:VISION_SHARING"),
])
def test_an_unknown_choice_is_refused_naming_every_registered_one(job, option, registry, capsys):
    import importlib

    module, name = registry.split(":")
    registered = getattr(importlib.import_module(module), name)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", job, option, "nope"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    offered = error.split("choose from ")[1].strip().rstrip(")").replace("'", "").split(", ")
    assert sorted(offered) == sorted(registered), error


@pytest.mark.parametrize("job, backbone, message", [
    ("vision", "resnet", "backbone 'resnet' is not 'unet', 'cnn', 'applications:<Name>'"),
    ("vision", "applications:ResNet9", "keras.applications has no model 'ResNet9'"),
    ("text", "no_such_preset", "backbone 'no_such_preset' is not a folder written by save_trunk"),
])
def test_an_unknown_backbone_is_refused_before_any_data_is_loaded(job, backbone, message, capsys, monkeypatch):
    from mtl_keras.jobs import base

    def no_loading(*args, **kwargs):
        raise AssertionError("data loaded before the backbone was checked")

    monkeypatch.setattr(base.Job, "run", no_loading)
    assert main(["train", job, "--backbone", backbone]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--sharing", "mtan", "--sharing-option", "self_weight=1"],
     "sharing='mtan': bad sharing option(s) ['self_weight']; it takes []"),
    (["--sharing", "cross_stitch", "--backbone", "applications:MobileNetV2"],
     "--sharing cross_stitch needs one of the built-in trunks ('unet', 'cnn')"),
])
def test_a_bad_vision_sharing_is_refused_before_any_data_is_loaded(arguments, message, capsys, monkeypatch):
    from mtl_keras.jobs import base

    monkeypatch.setattr(base.Job, "run", lambda *args, **kwargs: pytest.fail("data loaded before the check"))
    assert main(["train", "vision", *arguments]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("job", ["text", "vision"])
def test_fine_tuning_options_without_a_backbone_are_refused_before_any_data_is_loaded(job, capsys, monkeypatch):
    from mtl_keras.jobs import base

    monkeypatch.setattr(base.Job, "run", lambda *args, **kwargs: pytest.fail("data loaded before the check"))
    assert main(["train", job, "--freeze-backbone-epochs", "2", "--lora-rank", "4"]) == 2
    assert f"mtl-keras train {job}: freeze_backbone, lora_rank apply to a pretrained" in capsys.readouterr().err


@pytest.mark.parametrize("job", ["text", "vision"])
def test_the_backbone_learning_rate_multiplier_reaches_the_builder_and_needs_a_backbone(job, capsys, monkeypatch):
    from mtl_keras.cli import _job_from_args, _parser
    from mtl_keras.jobs import base

    preset = {"text": "bert_tiny_en_uncased", "vision": "resnet_18_imagenet"}[job]  # named, not downloaded here
    args = _parser().parse_args(["train", job, "--backbone", preset, "--backbone-lr-multiplier", "0.1"])
    assert _job_from_args(args).config.fine_tuning()["backbone_learning_rate_multiplier"] == 0.1
    monkeypatch.setattr(base.Job, "run", lambda *args, **kwargs: pytest.fail("data loaded before the check"))
    assert main(["train", job, "--backbone-lr-multiplier", "0.1"]) == 2
    assert "backbone_learning_rate_multiplier apply to a pretrained backbone" in capsys.readouterr().err


def test_evaluate_rejects_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_text_job_takes_a_sharing_and_checks_its_options(capsys):
    assert main(["train", "text", "--limit", "300", "--epochs", "1", "--sharing", "cascade"]) == 2
    assert "needs sharing_options={'order'" in capsys.readouterr().err


def test_tune_prints_the_best_weights_writes_tuning_json_and_its_reference_trains_as_train_does(
        trained_run, tmp_path, capsys):
    output = tmp_path / "tune"
    command = ["tune", "text", *SMALL, "--max-trials", "2", "--candidates", "0.5,1,2", "--output", str(output),
               "--quiet"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    record = json.loads((output / "tuning.json").read_text())
    assert [path.name for path in output.iterdir()] == ["tuning.json"]  # the temporary file was renamed
    assert len(record["trials"]) == 2 and record["tuner"] == "random" and record["config"]["limit"] == 400
    best = ", ".join(f"{task}={weight:g}" for task, weight in record["best_weights"].items())
    assert f"Best loss weights: {best}" in printed
    assert record["train_command"] in printed
    assert record["train_command"].startswith("mtl-keras train text --loss-weight sentiment=1 --loss-weight")
    # The reference trial (the job's own weights) trains as `mtl-keras train` did with the same options.
    reference = next(trial for trial in record["trials"] if trial["trial_id"] == record["reference_trial"])
    assert reference["loss_weights"] == dict.fromkeys(TASKS, 1.0)
    history = json.loads((trained_run[0] / "history.json").read_text())["multitask"]
    for task in TASKS:
        assert reference["validation"][task]["loss"] == pytest.approx(history[f"val_{task}_loss"][0], rel=1e-6)

    assert main(command) == 2  # tuning.json is there: refused before any training
    assert "already exists" in capsys.readouterr().err


def test_text_defaults_balance_classes_and_the_tfidf_branch_and_options_turn_them_off():
    from mtl_keras.cli import _job_from_args, _parser

    default = _job_from_args(_parser().parse_args(["train", "text"])).config
    assert (default.balance_classes, default.tfidf_units, default.epochs) == (True, 64, 40)
    changed = _job_from_args(_parser().parse_args(["train", "text", "--no-balance-classes", "--tfidf-units", "0"]))
    assert (changed.config.balance_classes, changed.config.tfidf_units) == (False, 0)
    census = _job_from_args(_parser().parse_args(["train", "census", "--balance-classes"])).config
    assert census.balance_classes and census.numeric_encoding == "periodic"
