"""Pretrained trunks: keras-hub presets, `keras.applications` models and mtl_keras' own saved trunks as the shared
part of a multi-task model (`build_text_model(..., backbone=...)`, `build_vision_model(..., backbone=...)`).

- `hub`: loading backbones (keras-hub stays optional: `pip install -e ".[hub]"`);
- `trunk`: `PretrainedTrunk`, the layer that holds a backbone, its preprocessing and its fine-tuning schedule;
- `image_preprocessing`: `keras.applications` input scalings as a layer;
- `transfer`: `save_trunk` / `load_trunk`, a trained model's shared part as a reusable preset folder.
"""

from __future__ import annotations

from mtl_keras.backbones.hub import load_image_backbone, load_text_backbone, require_keras_hub
from mtl_keras.backbones.image_preprocessing import ImagePreprocessing
from mtl_keras.backbones.transfer import load_trunk, save_trunk, trunk_model
from mtl_keras.backbones.trunk import PretrainedTrunk, enable_lora, learning_rate_multipliers, pretrained_trunks

__all__ = ["ImagePreprocessing", "PretrainedTrunk", "check_no_fine_tuning", "enable_lora", "learning_rate_multipliers",
           "load_image_backbone",
           "load_text_backbone", "load_trunk", "make_trunk", "pretrained_trunks", "require_keras_hub", "save_trunk",
           "trunk_model"]


_NO_FINE_TUNING = {"preprocessor": None, "pooling": "auto", "freeze_backbone": False, "unfreeze_from": None,
                   "lora_rank": None, "backbone_learning_rate_multiplier": 1.0}


def check_no_fine_tuning(builder: str, **given) -> None:
    """Fails on pretrained-backbone arguments given without a pretrained backbone (they would do nothing)."""
    chosen = [name for name, value in given.items() if value is not None and value != _NO_FINE_TUNING[name]]
    if chosen:
        raise ValueError(f"{builder}: {', '.join(chosen)} apply to a pretrained backbone (backbone=...), and none is "
                         f"given: they would change nothing.")


def make_trunk(kind: str, backbone, preprocessor=None, *, sequence_length: int | None = None, image_shape=None,
               weights: str | None = "imagenet", pooling: str = "auto", freeze: bool | int = False,
               unfreeze_from: str | None = None, lora_rank: int | None = None,
               learning_rate_multiplier: float = 1.0) -> PretrainedTrunk:
    """The `PretrainedTrunk` (named `"backbone"`) of a text (`kind="text"`) or image (`"image"`) model. A backbone
    given as an object that takes token ids needs its `preprocessor` (the tokenizer); one that is not a trunk of
    ours must not see raw strings or unscaled pixels.

    `backbone` and `preprocessor` as `load_text_backbone` and `load_image_backbone` take them (a preprocessor given
    here replaces the loaded one); the rest as `PretrainedTrunk` takes them."""
    if kind == "text":
        loaded, model = load_text_backbone(backbone, sequence_length)
    elif kind == "image":
        loaded, model = load_image_backbone(backbone, image_shape, weights, preprocessor)
    else:
        raise ValueError(f"kind must be 'text' or 'image', got {kind!r}.")
    preprocessor = preprocessor if preprocessor is not None else loaded
    if preprocessor is None and isinstance(model.input, dict):
        raise ValueError(f"Backbone {model.name!r} takes {sorted(model.input)}, not raw text: give its keras-hub "
                         f"preprocessor too (preprocessor=keras_hub.models.TextClassifierPreprocessor.from_preset"
                         f"(...)), or the backbone as a preset name or folder.")
    return PretrainedTrunk(model, preprocessor, pooling=pooling,
                           freeze=freeze, unfreeze_from=unfreeze_from, lora_rank=lora_rank,
                           learning_rate_multiplier=learning_rate_multiplier, name="backbone")
