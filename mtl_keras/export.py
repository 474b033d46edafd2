"""SavedModel export with a serving signature for raw inputs, and crash-safe writing of run folders."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

TEXT_SIGNATURE = [tf.TensorSpec([None], tf.string, name="text")]


def export_saved_model(model: keras.Model, path: str | os.PathLike, input_signature=None, tasks=None) -> Path:
    """Writes a SavedModel whose `serve` and `serving_default` endpoints take raw inputs and return every task.

    `input_signature` defaults to a batch of strings (`tf.string[None]`, named `text`) for text models. Given the
    `tasks`, each segmentation task also returns its argmax mask as `<task>_mask` (int32, `(batch, H, W)`), beside
    its per-class probabilities. A model compiled with a loss weighting also gets a `task_weights` endpoint (no
    inputs; each task's current weight, e.g. uncertainty weighting's 0.5 exp(-s_t)), and its state variables travel
    in the SavedModel.

    Example (in a shell): `saved_model_cli show --dir RUN/saved_model --all` lists the signature.
    """
    path = Path(path)
    signature = input_signature or TEXT_SIGNATURE
    archive = keras.export.ExportArchive()
    archive.track(model)
    masks = [task.name for task in (tasks or ()) if task.kind == "segmentation"]

    def serve(*inputs):
        outputs = model(*inputs, training=False)
        if not masks:
            return outputs
        outputs = dict(outputs)
        for name in masks:
            outputs[f"{name}_mask"] = tf.argmax(outputs[name], axis=-1, output_type=tf.int32)
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


def load_saved_model(path: str | os.PathLike):
    """The exported SavedModel; call `.serve(inputs)` for a dict of task outputs. Needs no mtl_keras code.

    Keep the returned object alive while using `.serve`: its variables belong to it.
    """
    return tf.saved_model.load(str(path))


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = False):
    """Yields a temporary folder beside `final`, moved into place only if the block succeeds.

    A failure (an exception, a diverged run) leaves any existing `final` untouched and removes the partial folder.
    With `overwrite`, an existing `final` is replaced only once the new one is complete.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another output folder or pass overwrite=True.")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
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
