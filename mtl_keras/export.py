"""SavedModel export with a serving signature for raw inputs, and crash-safe writing of run folders."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

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
    its state variables travel in the SavedModel.

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
    weighting = getattr(model, "weighting", None)
    if weighting is not None:
        archive.track(weighting)

        def task_weights():
            # Weights that depend on the current losses (FAMO) are shown at equal losses.
            weights = weighting.task_weights(tf.ones([weighting.num_tasks]), tf.constant(0, tf.int64))
            return {name: weights[i] for i, name in enumerate(weighting.task_names)}

        archive.add_endpoint("task_weights", task_weights, input_signature=[])
    archive.write_out(str(path), verbose=False)
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

    Keep the returned object alive while using `.serve`: its variables belong to it.
    """
    return tf.saved_model.load(str(path))


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = False):
    """Yields a temporary folder beside `final`, moved into place only if the block succeeds.

    A failure (an exception, a diverged run) leaves any existing `final` untouched and removes the partial folder.
    With `overwrite`, an existing `final` is replaced only once the new one is complete. What a killed writer of
    `final` left beside it is cleaned up first (`remove_stale_staging`). The folder gets the permissions of a plain
    `mkdir` under the user's umask (not `tempfile`'s owner-only 0700), so that others can read a run where the umask
    lets them (a serving container, say).
    """
    final = Path(final)
    if final.parent.is_dir():
        remove_stale_staging(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another output folder or pass overwrite=True.")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(final)


def remove_stale_staging(final: str | os.PathLike) -> list[Path]:
    """Removes the staging folders (`.NAME.partial-PID-*`) that writers of `final` killed mid-write left beside it,
    those of processes still running excepted; an earlier `final` that such a writer had moved aside
    (`.NAME.old-PID`, killed between its two renames) is put back if `final` is missing, else removed. Returns what
    was removed."""
    final = Path(final)
    removed = []
    for leftover in sorted(final.parent.iterdir()):
        for marker in (f".{final.name}.partial-", f".{final.name}.old-"):
            if not leftover.name.startswith(marker) or _is_running(leftover.name[len(marker):].split("-")[0]):
                continue
            if marker.endswith(".old-") and not final.exists():
                leftover.rename(final)
                continue
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
    return removed


def _is_running(pid: str) -> bool:
    """Whether the process `pid` (text from a folder name; a name without one is an older writer's) still runs."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o077)  # reading the umask means setting it; put straight back
    os.umask(mask)
    return mask
