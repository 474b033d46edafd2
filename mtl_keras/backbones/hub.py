"""Loading pretrained backbones: keras-hub presets (names or local folders), `keras.applications` models, and
trunks saved by `mtl_keras.backbones.transfer.save_trunk`.

keras-hub is an optional dependency (`pip install -e ".[hub]"`, which brings tensorflow-text for its tokenizers):
nothing here imports it until a keras-hub backbone is asked for, and then `require_keras_hub` says which extra to
install. A preset name (`"bert_tiny_en_uncased"`) downloads from Kaggle or Hugging Face the first time; a local
folder (what `Backbone.save_to_preset` writes) loads offline through the same `from_preset` path.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from mtl_keras.backbones.image_preprocessing import ImagePreprocessing, applications_mode
from mtl_keras.backbones.transfer import is_trunk_folder, load_trunk

HUB_EXTRA = 'pip install -e ".[hub]"  (or: pip install keras-hub tensorflow-text)'


class MissingExtraError(ImportError):
    """An optional dependency that a requested feature needs is not installed; the message names the extra."""


def require_keras_hub():
    """The `keras_hub` module, or an ImportError that says which extra to install."""
    try:
        import keras_hub
    except ImportError as error:
        raise MissingExtraError(f"This backbone needs keras-hub, which is not installed: {HUB_EXTRA}.") from error
    return keras_hub


def _preset(spec, what: str) -> str:
    """`spec` as a keras-hub preset: a local folder, a handle (`kaggle://`, `hf://`, ...) or a built-in name; a
    ValueError naming what was asked for otherwise (keras-hub's own error lists only the forms)."""
    keras_hub = require_keras_hub()
    spec = str(spec)
    if Path(spec).is_dir() or "://" in spec or spec in keras_hub.models.Backbone.presets:
        return spec
    raise ValueError(f"backbone {spec!r} is not {what}, a local preset folder, a preset handle (kaggle://, hf://) "
                     f"or one of keras-hub's preset names (keras_hub.models.Backbone.presets lists them).")


def check_backbone(spec, kind: str) -> None:
    """Fails now, before any data is loaded, on a backbone string that cannot load: neither an mtl_keras trunk
    folder, nor `"applications:<Name>"` (images), nor a keras-hub preset (which needs keras-hub installed)."""
    if not isinstance(spec, str | os.PathLike) or is_trunk_folder(spec):
        return
    if kind == "image" and str(spec).startswith("applications:"):
        name = str(spec).split(":", 1)[1]
        if not callable(getattr(keras.applications, name, None)):
            raise ValueError(f"keras.applications has no model {name!r} (e.g. ResNet50V2, EfficientNetB0, "
                             f"MobileNetV3Small).")
        return
    ours = "'unet', 'cnn', 'applications:<Name>', a folder written by save_trunk" if kind == "image" else (
        "a folder written by save_trunk")
    _preset(spec, ours)


def _policy() -> dict:
    """keras-hub presets record the dtype they were saved in; the global policy (mixed precision) goes first."""
    policy = keras.config.dtype_policy().name
    return {} if policy == "float32" else {"dtype": policy}


def load_text_backbone(spec, sequence_length: int | None = None):
    """`(preprocessor, backbone)` for a text trunk.

    `spec` is a keras-hub preset name or folder (its `TextClassifierPreprocessor`, with the tokenizer, and its
    `Backbone`), a `keras_hub.models.Backbone` (the preprocessor then comes from `preprocessor=`, see
    `build_text_model`), or an mtl_keras trunk folder (`save_trunk`: strings in already, so no preprocessor).
    """
    if is_trunk_folder(spec):
        return None, load_trunk(spec)
    if isinstance(spec, str | os.PathLike):
        check_backbone(spec, "text")
        keras_hub = require_keras_hub()
        options = {} if sequence_length is None else {"sequence_length": sequence_length}
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(str(spec), **options)
        return preprocessor, keras_hub.models.Backbone.from_preset(str(spec), **_policy())
    if isinstance(spec, keras.Model):
        return None, spec
    raise TypeError(f"backbone must be a keras-hub preset name or folder, a mtl_keras trunk folder or a Keras "
                    f"model, got {type(spec).__name__}.")


def load_image_backbone(spec, image_shape=None, weights: str | None = "imagenet", preprocessor=None):
    """`(preprocessor, backbone)` for an image trunk; the preprocessor maps float pixels in [0, 255] to what the
    backbone was trained on.

    `spec`: a keras-hub preset name or folder (its `ImageConverter` and `Backbone`), `"applications:<Name>"` (e.g.
    `"applications:ResNet50V2"`: `keras.applications.<Name>` without its top, `weights` as given; `None` for random
    weights), a `keras.applications` model built with `include_top=False`, or an mtl_keras trunk folder. A model
    object's scaling is read from its name unless `preprocessor` (the caller's own) is given; a keras-hub backbone
    object needs it.
    """
    if is_trunk_folder(spec):
        return None, load_trunk(spec)
    if isinstance(spec, str) and spec.startswith("applications:"):
        check_backbone(spec, "image")
        constructor = getattr(keras.applications, spec.split(":", 1)[1])
        channels = (*tuple(image_shape[:2]), 3) if image_shape is not None else None
        model = constructor(include_top=False, weights=weights, input_shape=channels)
        return ImagePreprocessing(applications_mode(model), name="backbone_preprocessing"), model
    if isinstance(spec, str | os.PathLike):
        check_backbone(spec, "image")
        keras_hub = require_keras_hub()
        converter = keras_hub.layers.ImageConverter.from_preset(str(spec))
        # keras-hub converters scale [0, 255] pixels themselves (scale and offset in the preset's config).
        return converter, keras_hub.models.Backbone.from_preset(str(spec), **_policy())
    if isinstance(spec, keras.Model):
        if _is_keras_hub_backbone(spec):
            if preprocessor is None:
                raise ValueError(f"keras-hub backbone {spec.name!r} given as an object: give its image converter "
                                 f"too (preprocessor=keras_hub.layers.ImageConverter.from_preset(...)), so that "
                                 f"pixels reach it scaled as it was trained; or give the backbone as a preset.")
            return None, spec
        if preprocessor is not None:
            return None, spec
        return ImagePreprocessing(applications_mode(spec), name="backbone_preprocessing"), spec
    raise TypeError(f"backbone must be a keras-hub preset name or folder, 'applications:<Name>', a Keras model "
                    f"or a mtl_keras trunk folder, got {type(spec).__name__}.")


def _is_keras_hub_backbone(model) -> bool:
    return any(cls.__module__.startswith("keras_hub.") for cls in type(model).__mro__)
