"""Shared convolutional trunks for images: a U-Net-style encoder-decoder with skip connections, and a plain CNN.

A trunk takes float images in [0, 1] and gives `VisionFeatures`:

- `pooled`: one vector per image, for classification and regression heads: the global average and maximum of the
  bottleneck and of the per-pixel features (read-only: no gradient flows back into them from these heads), beside
  a small flattened map of the bottleneck (a 1x1 projection), which keeps *where* things are (boxes need that);
- `pixels`: a feature map at input resolution, for segmentation heads (the U-Net decoder; for the plain CNN, the
  bottleneck upsampled bilinearly);
- `stages`: the encoder's feature maps, shallow first; `decoder_stages`: the decoder's, deepest first, ending with
  `pixels` (the plain CNN's is `pixels` alone). Together they are what `TaskAttention(units=())` attends.

Trunks are built from stock Keras layers (Conv2D, BatchNormalization, pooling, upsampling), so models that use
them save, load and export like any functional model.

Example:

>>> import keras
>>> images = keras.Input((32, 32, 1))
>>> features = vision_trunk(images, "unet", filters=(8, 16, 32))
>>> tuple(features.pooled.shape), tuple(features.pixels.shape), [tuple(s.shape)[1:3] for s in features.stages]
((None, 592), (None, 32, 32, 8), [(32, 32), (16, 16), (8, 8)])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from mtl_keras.layers import StopGradient

BACKBONES = ("unet", "cnn")
# None: no normalisation; "batch": per-replica batch statistics; "synchronized": statistics over the global batch
# under tf.distribute (what one device would compute; costs an all-reduce per layer).
NORMALIZATIONS = (None, "batch", "synchronized")


@dataclasses.dataclass
class VisionFeatures:
    """What a trunk gives the heads (symbolic tensors)."""

    pooled: keras.KerasTensor
    pixels: keras.KerasTensor
    stages: list
    decoder_stages: list = dataclasses.field(default_factory=list)


def conv_block(x, filters: int, name: str, convolutions: int = 2, normalization: str | None = "batch"):
    """`convolutions` x (3x3 convolution, batch normalisation, ReLU)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    for number in range(convolutions):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=normalization is None,
                                name=f"{name}_conv{number}")(x)
        if normalization:
            # Momentum 0.9 (PyTorch's default) rather than Keras' 0.99: the moving statistics used at inference
            # then follow the weights within tens of steps. With 0.99 a CNN trained for three short epochs on
            # MultiFashion scored 0.12 at test time against 0.79 (its training accuracy was 0.78 either way).
            x = keras.layers.BatchNormalization(momentum=0.9, synchronized=normalization == "synchronized",
                                                name=f"{name}_bn{number}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{number}")(x)
    return x


def check_image_shape(image_shape: Sequence[int], filters: Sequence[int]) -> tuple[int, int, int]:
    """`(height, width, channels)`, checked against the trunk's depth (each pooling halves the sides)."""
    if len(image_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in image_shape):
        raise ValueError(f"image_shape must be (height, width, channels) of positive ints, got {image_shape!r}.")
    if not filters or not all(int(f) > 0 for f in filters):
        raise ValueError(f"filters must be a non-empty list of positive widths, one per stage, got {filters!r}.")
    factor = 2 ** (len(filters) - 1)
    if image_shape[0] % factor or image_shape[1] % factor:
        raise ValueError(f"image sides {image_shape[:2]} must be multiples of {factor} for {len(filters)} stages "
                         f"(each stage after the first halves them).")
    return tuple(image_shape)  # type: ignore[return-value]


def vision_trunk(images, backbone: str = "unet", filters: Sequence[int] = (16, 32, 64, 128),
                 location_channels: int = 8, normalization: str | None = "batch",
                 pool_pixels: bool = True) -> VisionFeatures:
    """The shared trunk on `images` (float, scaled to [0, 1]).

    Args:
        images: a symbolic image batch `(batch, H, W, C)`.
        backbone: `"unet"` (encoder-decoder with skip connections) or `"cnn"` (the encoder alone).
        filters: widths of the encoder stages; every stage after the first halves the resolution.
        location_channels: width of the 1x1 projection of the bottleneck that is flattened into `pooled` (0 to
            keep only the global average).
        normalization: after each convolution: `"batch"`, `"synchronized"` (batch statistics over all replicas
            under tf.distribute) or `None`.
        pool_pixels: add the pooled per-pixel features to `pooled`. Only worth it when a per-pixel task trains
            them: no gradient reaches them from `pooled`.
    """
    return vision_trunks(images, [""], backbone, filters, location_channels, normalization, pool_pixels)[0]


def vision_trunks(images, prefixes: Sequence[str], backbone: str = "unet",
                  filters: Sequence[int] = (16, 32, 64, 128), location_channels: int = 8,
                  normalization: str | None = "batch", pool_pixels: bool = True, mix=None) -> list[VisionFeatures]:
    """A trunk per layer-name prefix (arguments as in `vision_trunk`), built stage by stage side by side;
    `mix(stage name, [one feature map per trunk])` returns the maps the trunks go on with after each stage (e.g.
    cross-stitch units; None: the trunks stay independent)."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}.")
    filters = [int(f) for f in filters]
    mix = mix or (lambda stage, maps: maps)
    towers = range(len(prefixes))
    stages = [[] for _ in towers]
    decoder = [[] for _ in towers]
    xs = [images for _ in towers]
    for depth, width in enumerate(filters):
        names = [f"{prefix}encoder{depth}" for prefix in prefixes]
        if depth:
            xs = [keras.layers.MaxPooling2D(name=f"{names[t]}_pool")(xs[t]) for t in towers]
        xs = mix(f"encoder{depth}", [conv_block(xs[t], width, names[t], normalization=normalization) for t in towers])
        for tower in towers:
            stages[tower].append(xs[tower])
    bottlenecks = xs
    if backbone == "unet":
        for depth in range(len(filters) - 2, -1, -1):
            names = [f"{prefix}decoder{depth}" for prefix in prefixes]
            ups = [keras.layers.UpSampling2D(interpolation="bilinear", name=f"{names[t]}_up")(xs[t]) for t in towers]
            skips = [keras.layers.Concatenate(name=f"{names[t]}_skip")([ups[t], stages[t][depth]]) for t in towers]
            xs = mix(f"decoder{depth}", [conv_block(skips[t], filters[depth], names[t], normalization=normalization)
                                         for t in towers])
            for tower in towers:
                decoder[tower].append(xs[tower])
    else:
        factor = 2 ** (len(filters) - 1)
        names = [f"{prefix}pixels" for prefix in prefixes]
        if factor > 1:
            xs = [keras.layers.UpSampling2D(factor, interpolation="bilinear", name=f"{names[t]}_up")(xs[t])
                  for t in towers]
        xs = mix("pixels", [conv_block(xs[t], filters[0], names[t], 1, normalization) for t in towers])
        for tower in towers:
            decoder[tower].append(xs[tower])
    return [VisionFeatures(pooled=pooled_summary(bottlenecks[t], location_channels, prefixes[t],
                                                 pixels=xs[t] if pool_pixels else None),
                           pixels=xs[t], stages=stages[t], decoder_stages=decoder[t]) for t in towers]


def pooled_summary(bottleneck, location_channels: int = 8, prefix: str = "", pixels=None):
    """One vector per image from a bottleneck feature map (and, read-only, from per-pixel features)."""
    # The average says how much of each feature there is (counts); the maximum, whether it occurs anywhere
    # (presence of a small item in a large scene). Pooling the per-pixel features as well hands the image-level
    # heads what the segmentation heads see (a class present anywhere shows as a high maximum of its features),
    # read-only: with gradients flowing back, the count and box losses swamped the few per-pixel channels and
    # segmentation learned several times slower (training mean IoU 0.06 against 0.35 after two epochs).
    summaries = [keras.layers.GlobalAveragePooling2D(name=f"{prefix}bottleneck_average")(bottleneck),
                 keras.layers.GlobalMaxPooling2D(name=f"{prefix}bottleneck_maximum")(bottleneck)]
    if pixels is not None:
        read_only_pixels = StopGradient(name=f"{prefix}pixels_read_only")(pixels)
        summaries += [keras.layers.GlobalAveragePooling2D(name=f"{prefix}pixels_average")(read_only_pixels),
                      keras.layers.GlobalMaxPooling2D(name=f"{prefix}pixels_maximum")(read_only_pixels)]
    pooled = keras.layers.Concatenate(name=f"{prefix}bottleneck_pooled")(summaries)
    if location_channels:
        where = keras.layers.Conv2D(location_channels, 1, activation="relu",
                                    name=f"{prefix}bottleneck_location")(bottleneck)
        where = keras.layers.Flatten(name=f"{prefix}bottleneck_location_flat")(where)
        pooled = keras.layers.Concatenate(name=f"{prefix}pooled")([pooled, where])
    return pooled
