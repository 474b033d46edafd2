"""`PretrainedTrunk`: a pretrained model (keras-hub, `keras.applications`, or a trunk saved by mtl_keras) as the
shared part of a multi-task model, with its preprocessing inside and a fine-tuning schedule.

Raw inputs go in (strings for text, float pixels in [0, 255] for images); out come features: one vector per text
(the backbone's pooled output, or the masked mean of its sequence), or the backbone's last feature map per image.

Fine-tuning (`freeze`):
- `False`: the backbone trains with the heads from the first step;
- `True`: it stays frozen (its batch normalisation in inference mode, as Keras does for frozen layers);
- an int `N`: frozen for the first `N` epochs (the heads settle on fixed features), then trainable, from the
  layer `unfreeze_from` on if given (the backbone's layers before it stay frozen). `MultiTaskModel.compile`
  builds the optimizer for every variable the schedule will train, and the model's `EpochHooks` switch at the
  epoch's start (under `fit` and our loop alike, and when resuming from a backup).
`learning_rate_multiplier=M`: the backbone's weights train at `M` times the optimizer's learning rate, the heads
and sharing layers at the full rate (discriminative fine-tuning: a pretrained trunk wants smaller steps than heads
learned from scratch). The train step scales each backbone variable's update by `M` after the optimizer's
(`mtl_keras.training.step`): every Keras optimizer's update is proportional to its learning rate and none of
their slots depend on it (Adam's moments, SGD's momentum, which then scales with it), so this is exactly the
optimizer at `M` times the rate for those variables, schedules included, with one optimizer and its one step count.
`lora_rank=R`: keras-hub's LoRA (`enable_lora`): low-rank factors on the attention layers' query and value
projections train, every other weight of the backbone stays frozen. keras-hub does not keep LoRA in a backbone's
config, so the trunk keeps the rank and enables it again when a saved model is loaded (before its weights are).

>>> import keras
>>> inputs = keras.Input((8,))
>>> backbone = keras.Model(inputs, keras.layers.Dense(4, name="features")(inputs), name="tiny")
>>> trunk = PretrainedTrunk(backbone, freeze=2)
>>> trunk.set_epoch(0), len(trunk.trainable_weights), trunk.set_epoch(2), len(trunk.trainable_weights)
(False, 0, True, 2)
"""

from __future__ import annotations

import copy

import keras

POOLINGS = ("auto", "pooled", "first", "mean")


def _as_layer(value):
    if value is None or isinstance(value, keras.layers.Layer):
        return value
    if str(value.get("module", "")).startswith("keras_hub"):
        from mtl_keras.backbones.hub import require_keras_hub
        require_keras_hub()  # registers keras-hub's classes, which a saved model on its backbone is made of
    # A copy: keras-hub's `from_config` replaces entries of the config it is given by the objects they describe.
    return keras.saving.deserialize_keras_object(copy.deepcopy(value))


@keras.saving.register_keras_serializable(package="mtl_keras")
class PretrainedTrunk(keras.layers.Layer):
    """A backbone (and the preprocessing it needs) as one shared layer; see the module docstring.

    Args:
        backbone: the pretrained model (a `keras_hub.models.Backbone`, a `keras.applications` model without its
            top, or a trunk from `load_trunk`).
        preprocessor: what maps raw inputs to the backbone's inputs (a keras-hub text preprocessor with its
            tokenizer, a keras-hub `ImageConverter`, an `ImagePreprocessing`), or None.
        pooling: for text backbones: `"auto"` (the backbone's `pooled_output` where it has one, else `"mean"`),
            `"pooled"`, `"first"` (the first token, e.g. `[CLS]`) or `"mean"` (over the non-padding tokens).
        freeze: `False`, `True`, or the number of epochs to keep the backbone frozen.
        unfreeze_from: the name of the backbone's first layer to train once unfrozen.
        lora_rank: enable keras-hub's LoRA of this rank on the backbone (see the module docstring).
        learning_rate_multiplier: the backbone's learning rate as a multiple of the optimizer's, in (0, 1] (1:
            the same as the heads; see the module docstring).
    """

    def __init__(self, backbone, preprocessor=None, pooling: str = "auto", freeze: bool | int = False,
                 unfreeze_from: str | None = None, lora_rank: int | None = None,
                 learning_rate_multiplier: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if (isinstance(learning_rate_multiplier, bool) or not isinstance(learning_rate_multiplier, int | float)
                or not 0.0 < learning_rate_multiplier <= 1.0):
            raise ValueError(f"PretrainedTrunk: learning_rate_multiplier must be a number in (0, 1] (the backbone's "
                             f"learning rate over the heads'; freeze it with freeze=True instead of 0), got "
                             f"{learning_rate_multiplier!r}.")
        self.learning_rate_multiplier = float(learning_rate_multiplier)
        if pooling not in POOLINGS:
            raise ValueError(f"PretrainedTrunk: pooling must be one of {POOLINGS}, got {pooling!r}.")
        if not isinstance(freeze, bool) and (not isinstance(freeze, int) or freeze < 1):
            raise ValueError(f"PretrainedTrunk: freeze must be True, False or a number of epochs >= 1, got "
                             f"{freeze!r}.")
        self.backbone = _as_layer(backbone)
        self.preprocessor = _as_layer(preprocessor)
        self.pooling, self.freeze, self.unfreeze_from = pooling, freeze, unfreeze_from
        if unfreeze_from is not None:
            if isinstance(freeze, bool):
                raise ValueError(f"PretrainedTrunk: unfreeze_from={unfreeze_from!r} needs freeze=N (the epochs "
                                 f"before unfreezing), got freeze={freeze!r}.")
            names = [layer.name for layer in self.backbone.layers]
            if unfreeze_from not in names:
                raise ValueError(f"PretrainedTrunk: unfreeze_from={unfreeze_from!r} is not a layer of backbone "
                                 f"{self.backbone.name!r}; its layers: {', '.join(names)}.")
        if lora_rank is not None:
            if freeze is not False or unfreeze_from is not None:
                raise ValueError("PretrainedTrunk: lora_rank already freezes the backbone's own weights (only the "
                                 "LoRA factors train): leave freeze and unfreeze_from unset with it.")
            if not any("lora_kernel" in variable.path for variable in self.backbone.weights):
                enable_lora(self.backbone, lora_rank)
        self.lora_rank = lora_rank
        self._unfrozen = None
        self.set_epoch(0)

    # --- fine-tuning ----------------------------------------------------------------------------------------------
    @property
    def scheduled(self) -> bool:
        """Whether the backbone is frozen now and unfrozen at a later epoch."""
        return not isinstance(self.freeze, bool)

    def set_epoch(self, epoch: int) -> bool:
        """Sets the backbone's trainability for `epoch` (counted from 0); returns whether it changed (the train
        function must then be traced again: `model.make_train_function(force=True)`)."""
        if self.freeze is False:
            return False  # trainable as given (LoRA, or the user's own choice of frozen layers, stays)
        unfrozen = self.scheduled and epoch >= self.freeze
        if unfrozen == self._unfrozen:
            return False
        self._unfrozen = unfrozen
        if not unfrozen:
            self.backbone.trainable = False
            return True
        self.backbone.trainable = True
        if self.unfreeze_from is not None:
            for layer in self.backbone.layers:
                if layer.name == self.unfreeze_from:
                    break
                layer.trainable = False
        return True

    def scheduled_variables(self) -> list:
        """The variables that the schedule trains at some epoch (the optimizer is built for them all)."""
        if not self.scheduled:
            return list(self.trainable_variables)
        was = self._unfrozen
        self.set_epoch(self.freeze)
        variables = list(self.trainable_variables)
        if not was:
            self.set_epoch(0)
        return variables

    # --- the layer ------------------------------------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True  # the backbone was built when it was made (a functional model)

    def call(self, inputs, training=None):
        features = inputs if self.preprocessor is None else self.preprocessor(inputs)
        return self._pool(self.backbone(features, training=training), features)

    def _pool(self, outputs, features):
        if not isinstance(outputs, dict):
            if len(outputs.shape) != 3 or self.preprocessor is None or not isinstance(features, dict):
                return outputs  # an image feature map, or a trunk that pools already
            outputs = {"sequence_output": outputs}
        if self.pooling in ("auto", "pooled") and "pooled_output" in outputs:
            return outputs["pooled_output"]
        if self.pooling == "pooled":
            raise ValueError(f"Backbone {self.backbone.name!r} has no pooled_output; use pooling='first' or 'mean'.")
        sequence = outputs["sequence_output"]
        if self.pooling == "first":
            return sequence[:, 0, :]
        mask = keras.ops.cast(keras.ops.expand_dims(features["padding_mask"], -1), sequence.dtype)
        return keras.ops.sum(sequence * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_spec(self, inputs, training=None):
        if self.preprocessor is None or inputs.dtype != "string":
            return super().compute_output_spec(inputs)
        # A keras-hub tokenizer gets its vocabulary only after the layer is rebuilt from a saved config
        # (keras-team/keras-hub#1522): the shapes come from the backbone's own symbolic outputs instead.
        outputs = self.backbone.output
        if not isinstance(outputs, dict):
            outputs = {"sequence_output": outputs}
        if self.pooling in ("auto", "pooled") and "pooled_output" in outputs:
            width = outputs["pooled_output"].shape[-1]
        else:
            width = outputs["sequence_output"].shape[-1]
        return keras.KerasTensor((inputs.shape[0], width), dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "backbone": _serialized(self.backbone),
                "preprocessor": None if self.preprocessor is None else _serialized(self.preprocessor),
                "pooling": self.pooling, "freeze": self.freeze, "unfreeze_from": self.unfreeze_from,
                "lora_rank": self.lora_rank, "learning_rate_multiplier": self.learning_rate_multiplier}


def _serialized(layer) -> dict:
    """`serialize_keras_object`, down into the layers a config holds as objects (a keras-hub preprocessor's
    tokenizer), so that the config is plain data and compares equal after a round trip."""
    def plain(value):
        if isinstance(value, keras.layers.Layer):
            return plain(keras.saving.serialize_keras_object(value))
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value
    return plain(keras.saving.serialize_keras_object(layer))


def enable_lora(backbone: keras.Model, rank: int) -> None:
    """keras-hub's LoRA on `backbone` (its attention layers' query and value projections; every other weight
    frozen); a ValueError where the backbone has no layer LoRA applies to."""
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"lora_rank must be a positive int, got {rank!r}.")
    if not hasattr(backbone, "enable_lora") or not hasattr(backbone, "default_lora_layer_names"):
        raise ValueError(f"LoRA needs a keras-hub backbone (its enable_lora); {backbone.name!r} is a "
                         f"{type(backbone).__name__}.")
    backbone.enable_lora(rank)
    if not backbone.trainable_weights:
        raise ValueError(f"Backbone {backbone.name!r} has none of the layers keras-hub applies LoRA to "
                         f"({', '.join(backbone.default_lora_layer_names())}): LoRA would train nothing. Fine-tune "
                         f"it whole, or from a layer (unfreeze_from=), instead.")


def learning_rate_multipliers(model: keras.Model) -> dict[int, float]:
    """`{id(variable): multiplier}` for the variables of the model's backbones that train at a multiple of the
    optimizer's learning rate other than 1 (`PretrainedTrunk(learning_rate_multiplier=...)`)."""
    return {id(variable): trunk.learning_rate_multiplier for trunk in pretrained_trunks(model)
            if trunk.learning_rate_multiplier != 1.0 for variable in trunk.backbone.variables}


def pretrained_trunks(model: keras.Model) -> list[PretrainedTrunk]:
    """The `PretrainedTrunk` layers of a model (its top level, where the builders put them)."""
    return [layer for layer in model.layers if isinstance(layer, PretrainedTrunk)]
