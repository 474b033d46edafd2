"""How tasks share a convolutional trunk (`build_vision_model(sharing=...)`): the features each task's head reads.

================  ================================================================================================
`"hard"`          one trunk for every task (the default): per-pixel tasks read its decoder's output, the others its
                  pooled summary
`"mtan"`          one trunk, and per-task attention masks over every encoder and decoder stage (`TaskAttention`,
                  Liu et al. 2019): a per-pixel task attends the encoder then the decoder down to the input
                  resolution, an image-level task the encoder down to the bottleneck, pooled for its head
`"cross_stitch"`  a trunk per task, mixed after every stage by learned cross-stitch units (Misra et al. 2016);
                  option `self_weight` (initial diagonal, default 0.9). T times the trunk's weights and compute.
================  ================================================================================================

The dense sharing layers (MMoE, PLE, ...) mix vectors; on a CNN they belong after a pooled trunk, which the
image-level heads already are, so they are not offered here.

Example:

>>> import keras
>>> from mtl_keras import Task
>>> tasks = [Task("mask", "segmentation", num_classes=3), Task("kind", "multiclass", num_classes=2)]
>>> features = vision_task_features(keras.Input((16, 16, 1)), tasks, "mtan", filters=(4, 8))
>>> {name: tuple(value.shape) for name, value in features.items()}
{'mask': (None, 16, 16, 4), 'kind': (None, 528)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from mtl_keras.encoders.vision import VisionFeatures, pooled_summary, vision_trunk, vision_trunks
from mtl_keras.sharing.cross_stitch import CrossStitchUnit
from mtl_keras.sharing.mtan import TaskAttention

VISION_SHARING = {"hard": (), "mtan": (), "cross_stitch": ("self_weight",)}  # name: the options it takes


def check_vision_sharing(sharing, options: Mapping | None = None) -> None:
    """Raises, naming the sharing or the options, unless `sharing` is one of `VISION_SHARING` with its options.

    >>> check_vision_sharing("cross_stitch", {"self_weight": 1.0})
    >>> check_vision_sharing("mmoe")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: sharing='mmoe' is not a sharing of a convolutional trunk; choose one of ['hard', 'mtan', ...
    """
    if not isinstance(sharing, str) or sharing not in VISION_SHARING:
        raise ValueError(f"sharing={sharing!r} is not a sharing of a convolutional trunk; choose one of "
                         f"{list(VISION_SHARING)} (by name: build_vision_model builds the layers around its trunk).")
    unknown = sorted(set(options or {}) - set(VISION_SHARING[sharing]))
    if unknown:
        raise ValueError(f"sharing={sharing!r}: bad sharing option(s) {unknown}; it takes "
                         f"{list(VISION_SHARING[sharing])}.")


def vision_task_features(images, tasks: Sequence, sharing: str = "hard", sharing_options: Mapping | None = None,
                         backbone: str = "unet", filters: Sequence[int] = (16, 32, 64, 128),
                         location_channels: int = 8, normalization: str | None = "batch",
                         dropout: float = 0.0) -> dict:
    """`{task name: features}` on `images` (float in [0, 1]): a feature map at input resolution for a task with a
    label per pixel, a vector (after `dropout`) for every other task. Trunk arguments as in `vision_trunk`."""
    check_vision_sharing(sharing, sharing_options)
    options = dict(sharing_options or {})
    per_pixel = {task.name: bool(task.spec.pixel_labels) for task in tasks}
    # Image-level heads also read the per-pixel features when a task with a label per pixel trains them.
    pool_pixels = any(per_pixel.values())
    if sharing == "cross_stitch":
        trunks = cross_stitched_vision_trunks(images, list(per_pixel), backbone, filters, location_channels,
                                              normalization, pool_pixels, **options)
        return {name: trunks[name].pixels if pixels else
                keras.layers.Dropout(dropout, name=f"{name}_pooled_dropout")(trunks[name].pooled)
                for name, pixels in per_pixel.items()}
    if sharing == "hard":
        features = vision_trunk(images, backbone, filters, location_channels, normalization, pool_pixels)
        pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(features.pooled)
        return {name: features.pixels if pixels else pooled for name, pixels in per_pixel.items()}
    features = vision_trunk(images, backbone, filters, location_channels, normalization, pool_pixels=False)
    levels = features.stages + features.decoder_stages
    attended = TaskAttention(list(per_pixel), units=(), name="mtan_sharing",
                             depths={name: len(features.stages) for name, pixels in per_pixel.items()
                                     if not pixels})(levels)
    return {name: attended[name] if pixels else keras.layers.Dropout(dropout, name=f"{name}_pooled_dropout")(
                pooled_summary(attended[name], location_channels, prefix=f"{name}_"))
            for name, pixels in per_pixel.items()}


def cross_stitched_vision_trunks(images, task_names: Sequence[str], backbone: str = "unet",
                                 filters: Sequence[int] = (16, 32, 64, 128), location_channels: int = 8,
                                 normalization: str | None = "batch", pool_pixels: bool = True,
                                 self_weight: float = 0.9) -> dict[str, VisionFeatures]:
    """One trunk per task, mixed after every stage (encoder and decoder) by a `CrossStitchUnit`: `{task:
    VisionFeatures}`. Arguments as in `vision_trunk`; `self_weight` starts each unit's diagonal (1.0: independent
    trunks at the start). Layers are named `{task}_encoder0_conv0`, ...; the units `stitch_encoder0`, ...

    >>> import keras
    >>> trunks = cross_stitched_vision_trunks(keras.Input((16, 16, 1)), ["a", "b"], filters=(4, 8))
    >>> tuple(trunks["b"].pixels.shape)
    (None, 16, 16, 4)
    """
    names = list(task_names)

    def stitch(stage, maps):
        return CrossStitchUnit(len(names), self_weight, name=f"stitch_{stage}")(maps)

    trunks = vision_trunks(images, [f"{name}_" for name in names], backbone, filters, location_channels,
                           normalization, pool_pixels, mix=stitch if len(names) > 1 else None)
    return dict(zip(names, trunks, strict=True))
