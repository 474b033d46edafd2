"""`mtl-keras train vision`: one shared CNN that segments, classifies and regresses, on generated scenes (default)
or on MultiFashion (`--dataset multifashion`).

Scenes (`mtl_keras.datasets.scenes`): 64x64 images of one to three Fashion-MNIST items on clutter; tasks
`segmentation` (11 classes), `presence` (10 labels), `count` and `box`. MultiFashion
(`mtl_keras.datasets.multifashion`): 28x28 images of two overlapping items; tasks `left` and `right`.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from mtl_keras.backbones.hub import check_backbone
from mtl_keras.builders import build_vision_model
from mtl_keras.datasets.multifashion import load_multifashion
from mtl_keras.datasets.pipeline import as_image_array, make_image_dataset
from mtl_keras.datasets.scenes import load_scenes
from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.encoders.vision import BACKBONES
from mtl_keras.jobs.base import BackboneConfig, Job, JobConfig
from mtl_keras.sharing.vision import check_vision_sharing
from mtl_keras.tasks import Task


@dataclasses.dataclass(frozen=True)
class VisionPreset:
    """A data set's default model and sizes."""

    image_shape: tuple[int, int, int]
    backbone: str
    filters: tuple[int, ...]
    num_train: int
    num_validation: int
    num_test: int
    loss_weights: dict | None = None


PRESETS = {
    # Box coordinates are fractions of the side: their squared errors are ~100x smaller than the other losses.
    "scenes": VisionPreset((64, 64, 1), "unet", (16, 32, 64, 128), 20_000, 2_000, 2_000, {"box": 10.0}),
    "multifashion": VisionPreset((28, 28, 1), "cnn", (32, 64, 128), 30_000, 3_000, 10_000),
}


@dataclasses.dataclass
class VisionJobConfig(BackboneConfig, JobConfig):
    """The vision job's settings; `None` takes the data set's preset (`PRESETS`). `backbone`: `"unet"`, `"cnn"`, a
    keras-hub image preset name or folder, or `"applications:<Name>"` (ImageNet weights)."""

    epochs: int = 16
    batch_size: int = 64
    learning_rate: float = 2e-3
    patience: int = 3
    dataset: str = "scenes"
    backbone: str | None = None
    filters: tuple[int, ...] | None = None
    num_train: int | None = None
    head_hidden_units: tuple[int, ...] = (64,)
    dropout: float = 0.1
    source: str = "bundled"  # Fashion-MNIST: "bundled" subset, or "debian" for the full set
    data_path: str | None = None
    sharing: str = "hard"  # how the tasks share the trunk (mtl_keras.sharing.vision)
    sharing_options: dict | None = None

    check_sharing = staticmethod(check_vision_sharing)  # (check_job_config: the trunk's sharings, not dense ones)


class VisionJob(Job):
    name = "vision"
    config_class = VisionJobConfig

    def __init__(self, config: VisionJobConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.dataset not in PRESETS:
            raise ValueError(f"--dataset must be one of {sorted(PRESETS)}, got {self.config.dataset!r}.")
        self.preset = PRESETS[self.config.dataset]
        if self.config.backbone not in (None, *BACKBONES):
            check_backbone(self.config.backbone, "image")  # before scenes are generated
        pretrained = self.config.backbone not in (None, *BACKBONES)
        self.config.check_fine_tuning("vision", pretrained=pretrained)
        if pretrained and self.config.sharing != "hard":
            raise ValueError(f"--sharing {self.config.sharing} needs one of the built-in trunks {BACKBONES}; a "
                             f"pretrained --backbone shares hard.")
        if self.config.loss_weights is None and self.preset.loss_weights:
            self.config.loss_weights = dict(self.preset.loss_weights)
        self.num_train_examples = self.config.num_train or self.preset.num_train

    def load_data(self) -> Splits:
        preset, config = self.preset, self.config
        sizes = [config.num_train or preset.num_train, preset.num_validation, preset.num_test]
        if config.limit:
            sizes = [min(sizes[0], config.limit)] + [min(size, max(config.limit // 5, 32)) for size in sizes[1:]]
        loader = load_scenes if config.dataset == "scenes" else load_multifashion
        splits = loader(*sizes, seed=config.seed, source=config.source, path=config.data_path)
        self.num_train_examples = len(splits.train)
        return splits

    def optimizer(self) -> keras.optimizers.Optimizer:
        # Cosine decay of the learning rate over the planned epochs: on a fixed budget of epochs training ends with
        # small steps instead of stopping mid-stride.
        steps = self.config.epochs * -(-self.num_train_examples // self.config.batch_size)
        return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(self.config.learning_rate, steps))

    def build_model(self, tasks: list[Task], splits: Splits) -> keras.Model:
        config, preset = self.config, self.preset
        return build_vision_model(
            tasks, image_shape=preset.image_shape, backbone=config.backbone or preset.backbone,
            filters=config.filters or preset.filters, head_hidden_units=config.head_hidden_units,
            dropout=config.dropout, **config.fine_tuning(),
            # A single-task baseline keeps the plain trunk, whatever the multi-task sharing.
            sharing=config.sharing if len(tasks) > 1 else "hard",
            sharing_options=config.sharing_options if len(tasks) > 1 else None,
            name=f"{config.dataset}_multitask" if len(tasks) > 1 else f"{config.dataset}_{tasks[0].name}",
        )

    def dataset(self, split: Split, tasks: list[Task], training: bool) -> tf.data.Dataset:
        split = split.for_tasks(task.name for task in tasks)
        return make_image_dataset(split.inputs, split.labels, tasks, self.preset.image_shape, split.masks,
                                  batch_size=self.config.batch_size if training else 256, shuffle=training,
                                  seed=self.config.seed)

    def model_inputs(self, inputs):
        return as_image_array(inputs, self.preset.image_shape)
