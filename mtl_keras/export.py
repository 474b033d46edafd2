"""SavedModel export with a serving signature for raw inputs."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from mtl_keras.atomic_write import atomic_directory
from mtl_keras.tasks import as_task_dict

TEXT_SIGNATURE = [tf.TensorSpec([None], tf.string, name="text")]


def serving_signature(model: keras.Model) -> list:
    """The input signature a model's own inputs imply: one `tf.TensorSpec` per input (its name, dtype and shape,
    any batch size), structured as the model takes them (one tensor, a list, or a dict). A tabular model's dict is
    keyed by the user's column names (`model.input_columns`), each spec named by its input name: `serve` then takes
    the columns as the user has them, and `serving_default` (whose arguments must be names TensorFlow accepts) the
    input names.

    >>> from mtl_keras import Task, build_vision_model
    >>> serving_signature(build_vision_model([Task("kind", "binary")], image_shape=(8, 8, 1), filters=(4,)))
    [TensorSpec(shape=(None, 8, 8, 1), dtype=tf.uint8, name='image')]
    """
    columns = getattr(model, "input_columns", None) or {}

    def spec(tensor):
        return tf.TensorSpec(tensor.shape, tf.as_dtype(tensor.dtype), name=tensor.name)

    structure = model.input
    if isinstance(structure, dict):
        return [{columns.get(name, name): spec(tensor) for name, tensor in structure.items()}]
    return [tf.nest.map_structure(spec, structure)]


def export_saved_model(model: keras.Model, path: str | os.PathLike, input_signature=None, tasks=None) -> Path:
    """Writes a SavedModel whose `serve` and `serving_default` endpoints take raw inputs and return every task.

    `input_signature` defaults to the one the model's inputs imply (`serving_signature`: strings for text models,
    uint8 images, a dict of raw columns under the user's column names), for every builder and for a functional model
    of one's own. Each task that the model carries (`MultiTaskModel.tasks`, or `tasks` here) adds the outputs its
    kind exports (`KINDS[kind].export_extras`): a segmentation task returns its argmax mask as `<task>_mask` (int32,
    `(batch, H, W)`), beside its per-class probabilities. A model compiled with a loss weighting also gets a
    `task_weights` endpoint (no inputs; each task's current weight, e.g. uncertainty weighting's 0.5 exp(-s_t)), and
    its state variables travel in the SavedModel. The folder is written whole or not at all (`atomic_directory`):
    an export interrupted midway leaves `path` as it was.

    Inputs are checked inside the graph: an input of another shape than its spec (any batch size; e.g. a 32x32 image
    for a 64x64 model) fails with an error naming the input and the shape expected (`serving_default`, as TF Serving
    calls it, checks dtypes but not shapes). Outputs of a mixed-precision model are float32.

    Example:

    >>> import numpy as np
    >>> from mtl_keras import Task, build_vision_model
    >>> model = build_vision_model([Task("kind", "multiclass", num_classes=3)], image_shape=(8, 8, 1), filters=(4,))
    >>> path = export_saved_model(model, getfixture("tmp_path") / "saved")
    >>> served = load_saved_model(path).signatures["serving_default"](image=tf.zeros([2, 8, 8, 1], tf.uint8))
    >>> served["kind"].dtype.name, tuple(served["kind"].shape)
    ('float32', (2, 3))

    In a shell, `saved_model_cli show --dir RUN/saved_model --all` lists the signature.
    """
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not (path / "saved_model.pb").is_file():
        raise FileExistsError(f"{path} is a folder with other files in it, not a SavedModel: an export replaces its "
                              f"folder whole, so it does not write into this one; choose a new path.")
    signature = input_signature or serving_signature(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    tasks = tasks if tasks is not None else getattr(model, "tasks", None)
    extras = [(task.name, suffix, extra) for task in as_task_dict(tasks).values()
              for suffix, extra in task.spec.export_extras.items()] if tasks else []
    column_inputs = {column: name for name, column in (getattr(model, "input_columns", None) or {}).items()}

    def serve(*inputs):
        inputs = checked_inputs(inputs, signature)
        if len(inputs) == 1 and isinstance(inputs[0], dict) and column_inputs:
            inputs = ({column_inputs.get(key, key): value for key, value in inputs[0].items()},)
        outputs = tf.nest.map_structure(_as_float32, model(*inputs, training=False))
        if not extras:
            return outputs
        outputs = dict(outputs)
        for name, suffix, extra in extras:
            outputs[f"{name}_{suffix}"] = extra(outputs[name])
        return outputs

    archive.add_endpoint("serve", serve, input_signature=signature)
    if getattr(model, "gradient_state", None) is not None:
        archive.track(model.gradient_state)  # a gradient method's state (GradVac's targets, reused coefficients)
    weighting = getattr(model, "weighting", None)
    if weighting is not None:
        archive.track(weighting)

        def task_weights():
            # Weights that depend on the current losses (FAMO) are shown at equal losses.
            weights = weighting.task_weights(tf.ones([weighting.num_tasks]), tf.constant(0, tf.int64))
            return {name: weights[i] for i, name in enumerate(weighting.task_names)}

        archive.add_endpoint("task_weights", task_weights, input_signature=[])
    # Written beside `path` and moved into place once whole: a kill mid-write leaves any earlier export as it was.
    with atomic_directory(path, overwrite=True) as staging:
        archive.write_out(str(staging), verbose=False)
    return path


def checked_inputs(inputs, signature):
    """`inputs` (structured as `signature`), each passed on only after an in-graph check of its shape against its
    spec, which fails naming the input and the shape it expects, e.g. `serving input image: expected a uint8 tensor
    of shape (batch, 64, 64, 1); got shape [2, 32, 32, 1]`."""
    checked = []
    for index, (value, spec) in enumerate(zip(tf.nest.flatten(inputs), tf.nest.flatten(signature), strict=True)):
        if spec.shape.rank is None:  # a spec of any shape: nothing to check
            checked.append(value)
            continue
        name = spec.name or f"#{index}"
        dims = spec.shape.as_list()
        expected = "(" + ", ".join("batch" if d is None else str(d) for d in dims) + ")"
        # Matched as text against a pattern, so that a wrong rank fails this check too (not an op on mismatched
        # shapes). The shape is read when the graph runs: the signature can be called with any shape.
        received = tf.strings.reduce_join(tf.strings.as_string(tf.shape(value)), separator=", ")
        pattern = ", ".join(r"\d+" if d is None else str(d) for d in dims)
        message = f"serving input {name}: expected a {spec.dtype.name} tensor of shape {expected}; got shape"
        check = tf.debugging.Assert(tf.strings.regex_full_match(received, pattern), [message, received])
        with tf.control_dependencies([check]):
            checked.append(tf.identity(value))
    return tf.nest.pack_sequence_as(inputs, checked)


def _as_float32(value):
    # Mixed-precision heads already end in float32; this keeps the promise for any model exported.
    return tf.cast(value, tf.float32) if value.dtype in (tf.float16, tf.bfloat16) else value


def load_saved_model(path: str | os.PathLike):
    """The exported SavedModel; call `.serve(inputs)` for a dict of task outputs. Needs no mtl_keras code.

    Keep the returned object alive while using `.serve`: its variables belong to it. A model on a keras-hub text
    backbone runs tensorflow-text ops (its tokenizer): they are registered here when tensorflow-text is installed;
    elsewhere (TF Serving, your own process) `import tensorflow_text` before loading.
    """
    try:
        return tf.saved_model.load(str(path))
    except (tf.errors.NotFoundError, ValueError) as error:
        if "not registered" not in str(error):
            raise
        try:  # only then: importing tensorflow-text costs seconds that other SavedModels need not pay
            import tensorflow_text  # noqa: F401  (registers the tokenizers' ops)
        except ImportError:
            raise error from None
    return tf.saved_model.load(str(path))
