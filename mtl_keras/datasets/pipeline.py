"""tf.data pipelines that feed multi-task models: inputs, labels and per-task sample weights (missing = 0)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from mtl_keras.datasets.features import Feature, category_values, column_dict
from mtl_keras.labels import LabelError, check_task_names, prepare_labels
from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.tasks import Task, as_task_dict


class InputError(ValueError):
    """Model inputs that cannot be used, with what was expected."""


def as_text_array(texts, what: str = "texts") -> np.ndarray:
    """Texts as a 1-D object array of str; raises InputError for anything that is not a non-empty list of strings."""
    if isinstance(texts, str):
        raise InputError(f"{what}: expected a list of strings, got one string; wrap it in a list.")
    array = np.asarray(texts, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InputError(f"{what}: expected a 1-D list of strings, got shape {array.shape}.")
    if len(array) == 0:
        raise InputError(f"{what}: the list is empty; the text model needs at least one example.")
    for index, text in enumerate(array):
        if isinstance(text, bytes):
            try:
                array[index] = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"{what}: item {index} is bytes that are not UTF-8 ({error.reason} at byte "
                                 f"{error.start}: {text[error.start:error.start + 4]!r}); decode it to str with its "
                                 f"own encoding first.") from None
        elif not isinstance(text, str):
            raise InputError(f"{what}: the text model takes strings; item {index} is {type(text).__name__} "
                             f"({text!r}).")
    return array


def num_rows(inputs) -> int:
    """Examples in an array, or in a dict of equal-length columns."""
    if isinstance(inputs, Mapping):
        lengths = {name: len(values) for name, values in inputs.items()}
        if len(set(lengths.values())) != 1:
            raise InputError(f"Input columns must have the same length, got {lengths}.")
        return next(iter(lengths.values()))
    return len(inputs)


def as_feature_columns(columns, features: Sequence[Feature], what: str = "inputs") -> dict[str, np.ndarray]:
    """Raw columns checked against the model's features and keyed by the model's input names: every feature present
    (under its column name, or its input name), categorical values as the vocabulary holds them
    (`mtl_keras.datasets.features.category_value`: `10001.0` is the category `10001`, None and NaN the missing
    category), finite float32 numbers for numeric ones. Raises InputError naming the column otherwise."""
    return prepare_columns(columns, [(f.name, f.input_name, f.kind == "categorical") for f in features], what)


def prepare_columns(columns, wanted: Sequence[tuple[str, str, bool]], what: str = "inputs") -> dict[str, np.ndarray]:
    """`as_feature_columns` from `(column name, input name, is categorical)` per input (what a model knows of its
    columns without their vocabularies)."""
    try:
        arrays = column_dict(columns)
    except (TypeError, ValueError) as error:
        raise InputError(f"{what}: {error}") from None
    missing = [column for column, name, _ in wanted if column not in arrays and name not in arrays]
    if missing:
        raise InputError(f"{what}: no column(s) {missing}; the model's columns are {[c for c, _, _ in wanted]}.")
    prepared = {}
    for column, name, categorical in wanted:
        values = arrays[column] if column in arrays else arrays[name]
        if categorical:
            try:
                prepared[name] = category_values(column, values)
            except ValueError as error:
                raise InputError(f"{what}: {error}") from None
            continue
        try:
            numbers = values.astype("float32")
        except (TypeError, ValueError):
            raise InputError(f"{what}: column {column!r} is numeric; got non-numbers such as "
                             f"{values[0]!r}.") from None
        bad = ~np.isfinite(numbers)
        if bad.any():
            raise InputError(f"{what}: column {column!r} has a non-finite value ({values[np.argmax(bad)]!r}) at "
                             f"row {int(np.argmax(bad))}.")
        prepared[name] = numbers
    return prepared


def as_image_array(images, image_shape, what: str = "images") -> np.ndarray:
    """Images as the vision model takes them: uint8 of shape (N, H, W, C) with `(H, W, C) = image_shape`.

    A grayscale batch may come as (N, H, W). Integer or float arrays are accepted when every value is a whole number
    in 0..255 (e.g. uint8 images held as float); anything else raises InputError saying what was expected, so a
    [0, 1]-scaled or wrongly shaped batch fails before any training step.

    >>> as_image_array(np.full((2, 4, 4), 7.0), (4, 4, 1)).dtype
    dtype('uint8')
    """
    height, width, channels = (int(d) for d in image_shape)
    array = np.asarray(images)
    if array.ndim == 3 and channels == 1:
        array = array[..., None]
    if array.ndim != 4 or array.shape[1:] != (height, width, channels):
        grayscale = f" or (N, {height}, {width})" if channels == 1 else ""
        channel_note = (f" ({array.shape[3]} channels where the model takes {channels})"
                        if array.ndim == 4 and array.shape[1:3] == (height, width) else "")
        raise InputError(f"{what}: expected uint8 images of shape (N, {height}, {width}, {channels}){grayscale}, got "
                         f"shape {array.shape}{channel_note}.")
    if len(array) == 0:
        raise InputError(f"{what}: the batch is empty.")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what}: expected uint8 pixel values 0..255, got dtype {array.dtype}.")
    bad = ~np.isfinite(array) | (array < 0) | (array > 255) | (array != np.round(array))
    if bad.any():
        value = float(array[bad].flat[0])
        hint = " (images scaled to [0, 1]? the model rescales uint8 itself: pass 0..255)" if array.max() <= 1 else ""
        raise InputError(f"{what}: the model takes uint8 pixel values, whole numbers in 0..255; got {value:g} "
                         f"(dtype {array.dtype}){hint}.")
    return array.astype(np.uint8)


def check_model_inputs(inputs, model_inputs):
    """Array inputs checked for a model as the dataset helpers check them: a model of one string input takes strings
    (`as_text_array`), one of one uint8 image input takes uint8 pixel values (`as_image_array`: floats only as whole
    numbers in 0..255, so images scaled to [0, 1] fail instead of being rescaled a second time). Anything else (a
    dict of columns, a tf.data.Dataset, a string tensor, a model of other inputs) is returned as it is."""
    if len(model_inputs) != 1 or not isinstance(inputs, np.ndarray | list | tf.Tensor):
        return inputs
    spec = model_inputs[0]
    name = getattr(spec, "name", None) or "input"
    if spec.dtype == "string":
        if isinstance(inputs, tf.Tensor):
            return inputs if inputs.dtype == tf.string else as_text_array(inputs.numpy(), f"model input {name!r}")
        return as_text_array(inputs, f"model input {name!r}")
    if spec.dtype == "uint8" and len(spec.shape) == 4:
        return as_image_array(np.asarray(inputs), spec.shape[1:], f"model input {name!r}")
    return inputs


def make_dataset(
    inputs,
    labels: Mapping[str, object],
    tasks: Sequence[Task],
    masks: Mapping[str, object] | None = None,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = DEFAULT_SEED,
) -> tf.data.Dataset:
    """A batched dataset of `(inputs, labels, sample_weights)`, labels and weights keyed by task name.

    Labels are checked against their tasks first (`mtl_keras.labels.prepare_labels`), so bad labels fail here, before
    any training step. Shuffling is seeded and reshuffles every epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    num_examples = num_rows(inputs)
    labels, weights = prepare_labels(tasks, labels, masks, num_examples=num_examples)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels, weights))
    if shuffle:
        dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_tabular_dataset(columns, labels, tasks, features: Sequence[Feature], masks=None, **kwargs) -> tf.data.Dataset:
    """`make_dataset` for the tabular model: the columns its features name, checked (see `as_feature_columns`)."""
    return make_dataset(as_feature_columns(columns, features), labels, tasks, masks, **kwargs)


def make_text_dataset(texts, labels, tasks, masks=None, **kwargs) -> tf.data.Dataset:
    """`make_dataset` for the text model, checking that the inputs are strings."""
    texts = as_text_array(texts)
    return make_dataset(tf.constant(texts.tolist(), dtype=tf.string), labels, tasks, masks, **kwargs)


def make_image_dataset(images, labels, tasks, image_shape, masks=None, **kwargs) -> tf.data.Dataset:
    """`make_dataset` for the vision model, checking the images first (see `as_image_array`) and that every
    per-pixel label map (segmentation) has the images' height and width."""
    images = as_image_array(images, image_shape)
    check_label_map_sizes(images, labels, tasks)
    return make_dataset(images, labels, tasks, masks, **kwargs)


def check_label_map_sizes(images: np.ndarray, labels, tasks: Sequence[Task]) -> None:
    """Raises LabelError unless every per-pixel label map (segmentation) has its image's height and width."""
    for task in tasks:
        given = labels.get(task.name) if isinstance(labels, Mapping) else None
        if task.spec.pixel_labels and given is not None and np.ndim(given) >= 3:
            size = tuple(np.shape(given)[1:3])
            if size != tuple(images.shape[1:3]):
                raise LabelError(f"Task {task.name!r} ({task.kind}): the label maps are {size[0]}x{size[1]} "
                                 f"(height x width) where the images are {images.shape[1]}x{images.shape[2]}; each "
                                 f"map must have its image's size.")


def _is_array_data(data) -> bool:
    """Whether `data` is what `prepare_arrays` checks: arrays, lists, tensors, dicts of them or a DataFrame (not a
    tf.data.Dataset, a generator or a `keras.utils.PyDataset`, which carry their own labels)."""
    return isinstance(data, np.ndarray | list | tuple | tf.Tensor | Mapping) or hasattr(data, "columns")


def prepare_arrays(model, x, y, masks=None, sample_weight=None):
    """`(x, y, sample_weight)` as a multi-task model's `fit` and `evaluate` take arrays: the inputs checked as the
    dataset helpers check them (raw columns for a tabular model, strings for a text model, uint8 pixels for an image
    model), and the labels checked against the model's tasks (`mtl_keras.labels.prepare_labels`: 1-D labels, the
    `-1` sentinel and `masks` for missing labels, a class index out of range, a NaN target, an unknown or absent
    task), so bad data fails naming the task before any step. The labels may be a dict keyed by task name, a list
    in output order, or one array for a one-task model. `sample_weight` (one array, or a dict by task name)
    multiplies each task's labelled-example weights (0 for a missing label).

    Anything but arrays (a tf.data.Dataset, a generator) comes back as it is: the dataset helpers checked it.
    """
    tasks = model.tasks
    if tasks is None or y is None or not _is_array_data(x):
        return x, y, sample_weight
    if getattr(model, "input_columns", None) and (isinstance(x, Mapping) or hasattr(x, "columns")):
        x = model.prepare_columns(x)
    x = check_model_inputs(x, model.inputs)
    names = [task.name for task in tasks]
    if not isinstance(y, Mapping):
        if isinstance(y, list | tuple) and len(y) == len(tasks) and len(tasks) > 1:
            y = dict(zip(names, y, strict=True))
        elif len(tasks) == 1:
            y = {names[0]: y}
    images = next((value for value in tf.nest.flatten(x) if np.ndim(value) == 4), None)
    if images is not None:
        check_label_map_sizes(np.asarray(images), y, tasks)
    labels, weights = prepare_labels(tasks, y, masks, num_examples=num_rows(x))
    if sample_weight is not None:
        given = sample_weight if isinstance(sample_weight, Mapping) else {name: sample_weight for name in names}
        check_task_names(as_task_dict(tasks), given, "sample_weight")
        for name, values in given.items():
            values = np.asarray(values, dtype="float32")
            if values.shape not in ((len(weights[name]),), (len(weights[name]), 1)):
                raise LabelError(f"sample_weight for task {name!r}: expected one weight per example "
                                 f"({len(weights[name])},), got shape {values.shape}.")
            weights[name] = weights[name] * values.reshape(-1)
    return x, labels, weights
