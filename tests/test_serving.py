"""The SavedModel of each job serves raw inputs: strings (text), a dict of raw columns (census), uint8 images (vision).

For each job a tiny model is built with the job's own data loading and builder, and exported as a run does (no
signature written: it is derived from the model's inputs; no training: the serving path is what is under test). Then: a
process that imports TensorFlow alone serves what `model.predict` gives; `saved_model_cli show --all` lists
`serving_default` with the raw inputs; and wrong inputs fail with errors that name the input and what it expects.
"""

import lzma
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_cli import ENV

from helpers import serve_many_in_fresh_process
from mtl_keras.datasets.census import census_file
from mtl_keras.export import export_saved_model, load_saved_model, serving_signature
from mtl_keras.jobs import JOBS

EXAMPLES = 4


def tiny_census_copy(folder: Path, rows: int = 600) -> Path:
    """The first `rows` records of each bundled census file, as a data folder (reading the whole files takes ~10 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("train", "test"):
        with lzma.open(census_file(part), "rt", encoding="utf-8") as source:
            head = [source.readline() for _ in range(rows + 1)]
        with lzma.open(census_file(part, folder), "wt", encoding="utf-8") as target:
            target.writelines(head)
    return folder


def job_settings(name: str, tmp: Path) -> dict:
    return {
        "text": {"limit": 300, "embedding_dim": 8},
        "census": {"data_path": str(tiny_census_copy(tmp / "census")),
                   "sharing_options": {"num_experts": 2, "expert_units": (8,)}},
        "vision": {"limit": 32, "filters": (4, 8, 8, 8)},
    }[name]


class Exported:
    """A job's tiny model, exported: the job, the model, the SavedModel's path, and a few raw test examples both as
    the model takes them and by serving input name."""

    def __init__(self, name: str, tmp: Path):
        self.job = JOBS[name](**job_settings(name, tmp))
        splits = self.job.load_data()
        self.tasks = splits.tasks
        self.model = self.job.new_model(self.tasks, splits)
        self.signature = serving_signature(self.model)
        self.path = export_saved_model(self.model, tmp / "saved_model")
        self.model_inputs = self.job.model_inputs(splits.test.take(np.arange(EXAMPLES)).inputs)
        self.by_input_name = by_input_name(self.model_inputs, self.signature)


def by_input_name(model_inputs, signature) -> dict[str, np.ndarray]:
    """The model's inputs keyed as `serving_default` names them (one tensor: the spec's name; a dict: its keys)."""
    if isinstance(model_inputs, dict):
        return {name: np.asarray(values) for name, values in model_inputs.items()}
    (spec,) = tf.nest.flatten(signature)
    return {spec.name: np.asarray(model_inputs)}


JOB_NAMES = ("text", "census", "vision")


@pytest.fixture(scope="module")
def every_exported(tmp_path_factory) -> dict[str, Exported]:
    return {name: Exported(name, tmp_path_factory.mktemp(name)) for name in JOB_NAMES}


@pytest.fixture(params=JOB_NAMES)
def exported(request, every_exported) -> Exported:
    return every_exported[request.param]


def test_saved_models_in_a_fresh_process_match_keras_predict(every_exported):
    """Every job's SavedModel served in one new process (TensorFlow only) gives what `predict` gives."""
    jobs = list(every_exported.values())
    every_served = serve_many_in_fresh_process([(job.path, job.by_input_name) for job in jobs])
    for exported, served in zip(jobs, every_served, strict=True):
        expected = exported.model.predict(exported.model_inputs, verbose=0)
        masks = {f"{task.name}_mask": task.name for task in exported.tasks if task.kind == "segmentation"}
        assert sorted(served) == sorted([*expected, *masks]), exported.job.name
        for name, values in expected.items():
            assert served[name].shape == values.shape, name
            np.testing.assert_allclose(served[name], values, atol=1e-5, err_msg=name)
        for mask, task in masks.items():  # the argmax of what it served (untrained classes can nearly tie)
            np.testing.assert_array_equal(served[mask], served[task].argmax(-1))


DT_NAMES = {tf.string: "DT_STRING", tf.uint8: "DT_UINT8", tf.float32: "DT_FLOAT"}


def saved_model_cli(*args: str) -> str:
    command = shutil.which("saved_model_cli")
    prefix = [command] if command else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    result = subprocess.run([*prefix, *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_saved_model_cli_shows_the_raw_inputs_of_serving_default(exported):
    shown = saved_model_cli("show", "--dir", str(exported.path), "--all")
    block = shown.split("signature_def['serving_default']:")[1].split("Method name is")[0]
    for spec in tf.nest.flatten(exported.signature):
        shape = "(" + ", ".join("-1" if d is None else str(d) for d in spec.shape.as_list()) + ")"
        assert re.search(rf"inputs\['{spec.name}'\] tensor_info:\s+dtype: {DT_NAMES[spec.dtype]}\s+shape: "
                         rf"{re.escape(shape)}", block), (spec, block)
    for task in exported.tasks:
        assert re.search(rf"outputs\['{task.name}'\] tensor_info:\s+dtype: DT_FLOAT", block), (task.name, block)


def wrong_inputs(exported: Exported):
    """(call, what the error must say): calls of `serve` (TensorFlow matches them to the input signature) and of
    `serving_default` (as TF Serving calls it: dtypes checked by TensorFlow, shapes by the export's own check)."""
    saved = load_saved_model(exported.path)
    default = saved.signatures["serving_default"]
    name = exported.job.name
    if name == "text":
        return saved, [
            (lambda: saved.serve(tf.constant([1, 2])), TypeError, r"dtype=tf\.string, name='text'"),
            (lambda: default(text=tf.constant([["two"], ["rows"]])), tf.errors.InvalidArgumentError,
             r"serving input text: expected a string tensor of shape \(batch\); got shape\] \[2, 1\]"),
        ]
    if name == "vision":
        floats = tf.random.uniform([2, 64, 64, 1])  # images scaled to [0, 1] instead of uint8 pixels
        return saved, [
            (lambda: saved.serve(floats), TypeError, r"dtype=tf\.uint8, name='image'"),
            (lambda: default(image=tf.zeros([2, 32, 32, 1], tf.uint8)), tf.errors.InvalidArgumentError,
             r"serving input image: expected a uint8 tensor of shape \(batch, 64, 64, 1\); got shape\] "
             r"\[2, 32, 32, 1\]"),
            (lambda: default(image=tf.zeros([2, 64, 64, 3], tf.uint8)), tf.errors.InvalidArgumentError,
             r"expected a uint8 tensor of shape \(batch, 64, 64, 1\); got shape\] \[2, 64, 64, 3\]"),
            (lambda: default(image=tf.zeros([64, 64, 1], tf.uint8)), tf.errors.InvalidArgumentError,
             r"got shape\] \[64, 64, 1\]"),  # no batch axis: without the check the process aborts
        ]
    columns = {key: tf.constant(values) for key, values in exported.by_input_name.items()}
    missing = {key: value for key, value in columns.items() if key != "education"}
    return saved, [
        (lambda: saved.serve(missing), TypeError, r"different keys with the TraceType Dict\[.*'education'"),
        (lambda: default(**missing), TypeError, r"missing a required argument: 'education'"),
        (lambda: saved.serve({**columns, "age": tf.constant(["forty"] * EXAMPLES)}), TypeError,
         r"dtype=tf\.float32, name='age'"),
        (lambda: default(**{**columns, "age": tf.reshape(columns["age"], [-1, 1])}),
         tf.errors.InvalidArgumentError, r"serving input age: expected a float32 tensor of shape \(batch\)"),
    ]


def test_wrong_inputs_fail_naming_the_input_and_what_it_expects(exported):
    saved, cases = wrong_inputs(exported)  # `saved` kept alive: it owns the variables
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
