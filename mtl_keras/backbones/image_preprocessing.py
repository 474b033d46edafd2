"""`ImagePreprocessing`: a `keras.applications` model's own input scaling, as a layer inside the model.

`keras.applications` ships each family's scaling as a function (`keras.applications.<family>.preprocess_input`)
that users call on their data; inside a model that serves raw uint8 images it has to be a layer, serializable
and without `Lambda`. The modes are those of `keras.applications.imagenet_utils.preprocess_input`, plus `"raw"`
for the families that scale inside the model already (EfficientNet, EfficientNetV2, ConvNeXt, RegNet,
MobileNetV3 with `include_preprocessing=True`).

>>> import numpy as np
>>> layer = ImagePreprocessing("tf")
>>> [round(float(v), 3) for v in np.asarray(layer(np.array([[0.0, 127.5, 255.0]])))[0]]
[-1.0, 0.0, 1.0]
"""

from __future__ import annotations

import keras

MODES = ("raw", "tf", "torch", "caffe")

# The model name keras.applications gives each family (its prefix) -> the scaling it was trained with.
APPLICATION_MODES = (
    ("resnet50v2", "tf"), ("resnet101v2", "tf"), ("resnet152v2", "tf"),
    ("resnet", "caffe"), ("vgg", "caffe"),
    ("mobilenetv3", "raw"), ("mobilenet", "tf"),
    ("efficientnet", "raw"), ("convnext", "raw"), ("regnet", "raw"),
    ("densenet", "torch"), ("xception", "tf"), ("inception", "tf"), ("nasnet", "tf"),
)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def applications_mode(model: keras.Model) -> str:
    """The scaling a `keras.applications` model expects, read from its name; a ValueError for other models."""
    name = model.name.lower()
    for prefix, mode in APPLICATION_MODES:
        if name.startswith(prefix):
            return mode
    raise ValueError(f"Cannot tell which input scaling model {model.name!r} expects: give the backbone as "
                     f"'applications:<Name>', or wrap it yourself with ImagePreprocessing(mode) for mode in "
                     f"{MODES} inside your own trunk.")


@keras.saving.register_keras_serializable(package="mtl_keras")
class ImagePreprocessing(keras.layers.Layer):
    """Maps float pixels in [0, 255] (RGB, channels last) to a `keras.applications` family's input scale.

    Args:
        mode: `"raw"` (unchanged), `"tf"` (to [-1, 1]), `"torch"` ([0, 1], then ImageNet mean and standard
            deviation per channel) or `"caffe"` (RGB to BGR, then the ImageNet mean subtracted, no scaling).
    """

    def __init__(self, mode: str = "raw", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"ImagePreprocessing: mode must be one of {MODES}, got {mode!r}.")
        self.mode = mode

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor(_IMAGENET_MEAN, self.compute_dtype)
            std = keras.ops.convert_to_tensor(_IMAGENET_STD, self.compute_dtype)
            return (images / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
            return keras.ops.flip(images, axis=-1) - mean
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
