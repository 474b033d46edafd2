"""What `mtl-keras predict` reads and writes: raw inputs decoded as a SavedModel takes them, and its answers in words
and as mask PNGs.

Example (a text model takes the given strings as they are; a tabular model one JSON object of columns per example):

>>> import tensorflow as tf
>>> serving_inputs(["a fine film"], {"text": tf.TensorSpec([None], tf.string, name="text")})
<tf.Tensor: shape=(1,), dtype=string, numpy=array([b'a fine film'], dtype=object)>
>>> columns = serving_inputs(['{"age": 40, "job": "clerk"}'], {"age": tf.TensorSpec([None], tf.float32, name="age"),
...                                                            "job": tf.TensorSpec([None], tf.string, name="job")})
>>> {name: value.numpy().tolist() for name, value in columns.items()}
{'age': [40.0], 'job': [b'clerk']}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def serving_inputs(given: list[str], specs: dict):
    """Command-line inputs as the SavedModel takes them: texts for a model of one string input, else one JSON object
    of raw column values per example (e.g. '{"age": 40, "education": "Masters degree(MA MS MEng MEd MSW MBA)"}'),
    each column under its own name (`specs`' keys) or its input name (the spec's name: `serving_default`'s)."""
    import tensorflow as tf

    from mtl_keras.datasets.features import category_value
    from mtl_keras.datasets.pipeline import InputError

    if len(specs) == 1 and next(iter(specs.values())).dtype == tf.string:
        return tf.constant(given, dtype=tf.string)
    if len(specs) == 1 and next(iter(specs.values())).shape.rank == 4:
        return read_images(given, next(iter(specs.values())))
    rows = []
    for index, text in enumerate(given, start=1):
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"input {index}: expected a JSON object of column values ({error}).") from None
        if not isinstance(row, dict):
            raise InputError(f"input {index}: expected a JSON object of column values, got {text!r}.")
        row = {name: row[name] if name in row else row[spec.name] for name, spec in specs.items()
               if name in row or spec.name in row}
        missing = sorted(set(specs) - set(row))
        if missing:
            raise InputError(f"input {index}: no value for column(s) {missing}; the model takes {len(specs)} columns "
                             f"(`saved_model_cli show --dir RUN/saved_model --all` lists them).")
        rows.append(row)
    columns = {}
    for name, spec in specs.items():
        values = [row[name] for row in rows]
        try:
            # Categories as training saw them: 10001.0 is the category "10001", null the missing category.
            columns[name] = tf.constant([category_value(v) for v in values] if spec.dtype == tf.string else values,
                                        dtype=spec.dtype)
        except (TypeError, ValueError):
            raise InputError(f"column {name!r} takes {spec.dtype.name} values, got {values!r}.") from None
    return columns


def read_images(paths: list[str], spec):
    """Image files as one uint8 batch of the SavedModel's shape; InputError for a file that is missing, not an
    image, or of another size."""
    import tensorflow as tf

    from mtl_keras.datasets.pipeline import InputError

    height, width, channels = spec.shape[1:]
    images = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such image file.")
        try:
            image = tf.io.decode_image(Path(path).read_bytes(), channels=channels, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError):
            raise InputError(f"{path}: not an image TensorFlow can decode (PNG, JPEG, GIF, BMP).") from None
        if tuple(image.shape[:2]) != (height, width):
            raise InputError(f"{path}: the image is {image.shape[0]}x{image.shape[1]} (height x width); the model "
                             f"takes {height}x{width}.")
        images.append(image)
    return tf.stack(images)


# Colours of the mask PNG, by class id (0 = background, black); cycles if there are more classes.
MASK_PALETTE = np.array([
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
], dtype=np.uint8)


def write_mask_png(mask, image_path: str, task_name: str, folder: Path | None = None) -> Path:
    """Writes a class-id mask as a colour PNG (`MASK_PALETTE`) named `IMAGE.TASK.png`; returns its path."""
    import tensorflow as tf

    source = Path(image_path)
    target = (folder or source.parent) / f"{source.stem}.{task_name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    colours = MASK_PALETTE[np.asarray(mask) % len(MASK_PALETTE)]
    target.write_bytes(tf.io.encode_png(colours).numpy())
    return target


def describe_outputs(tasks, outputs: dict[str, np.ndarray], given: list[str], mask_folder: Path | None = None
                     ) -> list[dict[str, str]]:
    """Each example's answers in words (`KINDS[kind].describe`), task by task. A task with a label per pixel also
    gets its mask (the SavedModel's `<task>_mask`) written as a colour PNG beside its input image (or in
    `mask_folder`), named in its description."""
    described = []
    for index, path in enumerate(given):
        answers = {}
        for task in tasks:
            words = task.spec.describe(task, np.asarray(outputs[task.name][index]))
            if task.spec.pixel_labels:
                written = write_mask_png(outputs[f"{task.name}_mask"][index], path, task.name, mask_folder)
                words = f"mask -> {written} ({words})"
            answers[task.name] = words
        described.append(answers)
    return described
