"""Task attention over shared features at several depths, after MTAN (Liu, Johns & Davison, CVPR 2019).

One network is shared; each task owns small attention modules that pick, at each depth j, which shared features it
uses: a mask `m_t^j = sigmoid(g_t^j(...))` in (0, 1) multiplies the shared features f^j element-wise. Deeper masks
also see the task's attended features of the level above, so each task refines its selection as it goes down:

    a_t^1 = g_t^1(f^1) * f^1,   a_t^j = g_t^j([f^j, carry(a_t^{j-1})]) * f^j

`TaskAttention` takes either
- one tensor `(batch, features)`: the layer's own shared dense stack (`units`) gives f^1..f^L (tabular, text);
- a list of shared feature maps `(batch, H_j, W_j, C_j)` from a convolutional trunk, in the order the network
  computes them (an encoder's stages, then a decoder's), each size a whole multiple or a whole fraction of the one
  before: the masks are 1x1 convolutions, and carry is a 3x3 convolution then average pooling or bilinear
  upsampling to the next size (the encoder-decoder of the paper).
It returns each task's attended features of its last level: the deepest, or, with `depths={task: n}`, level n for
that task (an image-level task reads the encoder's bottleneck while a per-pixel task goes on through the decoder).

Example:

>>> import numpy as np
>>> layer = TaskAttention(["a", "b"], units=(8, 4))
>>> {k: tuple(v.shape) for k, v in layer(np.ones((2, 5), "float32")).items()}
{'a': (2, 4), 'b': (2, 4)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
from keras import ops

from mtl_keras.sharing.base import DenseStack, SharingLayer, check_units


def _projection(rank: int, width: int, activation: str | None, name: str, kernel_size: int = 1, dtype=None):
    if rank == 4:
        return keras.layers.Conv2D(width, kernel_size, padding="same", activation=activation, name=name, dtype=dtype)
    return keras.layers.Dense(width, activation=activation, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="mtl_keras")
class TaskAttention(SharingLayer):
    """Per-task soft attention masks over the shared features of every depth.

    Args:
        task_names: the tasks, in order.
        units: widths of the layer's own shared dense stack, used when it is called on one tensor. Give `()` to
            call it on a list of feature maps from a trunk instead.
        activation: activation of the shared stack.
        dropout: dropout after each shared layer.
        depths: `{task: n}`: that task attends the first n levels only and returns the n-th (default: every level
            for every task).
    """

    def __init__(self, task_names: Sequence[str], units: Sequence[int] = (64, 32), activation: str = "relu",
                 dropout: float = 0.0, depths: Mapping[str, int] | None = None, **kwargs):
        super().__init__(task_names, **kwargs)
        self.units = check_units(units, "TaskAttention")
        self.activation = activation
        self.dropout = float(dropout)
        depths = dict(depths or {})
        unknown = sorted(set(depths) - set(self.task_names))
        if unknown or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in depths.values()):
            raise ValueError(f"TaskAttention: depths maps task names {self.task_names} to a number of levels >= 1; "
                             f"got {depths}.")
        self.depths = depths
        self.shared_layers = [DenseStack((width,), activation, dropout, name=f"shared_{depth}", dtype=self.dtype_policy)
                              for depth, width in enumerate(self.units)]

    def _feature_shapes(self, input_shape) -> list[tuple]:
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            if self.units:
                raise ValueError("TaskAttention: called on a list of feature maps, so it uses the trunk's features; "
                                 "create it with units=() (its own stack is for a single input tensor).")
            shapes = [tuple(shape) for shape in input_shape]
            ranks = {len(shape) for shape in shapes}
            if ranks - {2, 4} or len(ranks) != 1:
                raise ValueError(f"TaskAttention: feature maps must all be (batch, H, W, C) or all (batch, C); "
                                 f"got {shapes}.")
            return shapes
        if not self.units:
            raise ValueError("TaskAttention: with units=() it must be called on a list of shared feature tensors.")
        shape = tuple(input_shape)
        return [shape[:-1] + (width,) for width in self.units]

    def build(self, input_shape):
        shapes = self._feature_shapes(input_shape)
        if self.units:
            shape = tuple(input_shape)
            for layer in self.shared_layers:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        too_deep = {name: n for name, n in self.depths.items() if n > len(shapes)}
        if too_deep:
            raise ValueError(f"TaskAttention: depths {too_deep} exceed the {len(shapes)} levels it is called on.")
        rank = len(shapes[0])
        self.resizes = []  # how carry brings level j-1 to level j's size: None, ("pool", factors) or ("up", size)
        for depth in range(1, len(shapes)):
            above, below = (shapes[depth - 1][1:3], shapes[depth][1:3]) if rank == 4 else ((1, 1), (1, 1))
            if None in above + below:
                raise ValueError(f"TaskAttention: feature maps need known sizes; got {above} then {below}.")
            if above == below:
                self.resizes.append(None)
            elif all(a % b == 0 for a, b in zip(above, below, strict=True)):
                self.resizes.append(("pool", (above[0] // below[0], above[1] // below[1])))
            elif all(b % a == 0 for a, b in zip(above, below, strict=True)):
                self.resizes.append(("up", tuple(below)))
            else:
                raise ValueError(f"TaskAttention: each feature map's size must be a whole multiple or a whole "
                                 f"fraction of the one before it; got {above} then {below}.")
        self.masks = {}
        self.carries = {}
        for name in self.task_names:
            for depth, shape in enumerate(shapes[:self.depths.get(name, len(shapes))]):
                channels = shape[-1]
                hidden = _projection(rank, channels, "relu", f"{name}_mask_{depth}_hidden", dtype=self.dtype_policy)
                gate = _projection(rank, channels, "sigmoid", f"{name}_mask_{depth}", dtype=self.dtype_policy)
                mask_input = shape if depth == 0 else shape[:-1] + (channels + channels,)
                hidden.build(mask_input)
                gate.build(shape)
                self.masks[f"{name}_{depth}"] = [hidden, gate]
                if depth > 0:
                    carry = _projection(rank, channels, "relu", f"{name}_carry_{depth}", kernel_size=3,
                                        dtype=self.dtype_policy)
                    carry.build(shapes[depth - 1])
                    self.carries[f"{name}_{depth}"] = carry

    def _shared_features(self, inputs, training):
        if not self.units:
            return list(inputs)
        features, x = [], inputs
        for layer in self.shared_layers:
            x = layer(x, training=training)
            features.append(x)
        return features

    def _carry(self, name, depth, attended):
        x = self.carries[f"{name}_{depth}"](attended)
        resize = self.resizes[depth - 1]
        if resize is not None and resize[0] == "pool":
            x = ops.average_pool(x, resize[1], strides=resize[1], padding="valid")
        elif resize is not None:
            x = ops.image.resize(x, resize[1], interpolation="bilinear")
        return x

    def attention_masks(self, inputs, training=None) -> dict:
        """Each task's masks, `{f"{task}_{depth}": mask in (0, 1)}`, shaped like the shared features."""
        return self._forward(inputs, training)[1]

    def _forward(self, inputs, training):
        features = self._shared_features(inputs, training)
        attended, masks = {}, {}
        for name in self.task_names:
            previous = None
            for depth, shared in enumerate(features[:self.depths.get(name, len(features))]):
                hidden, gate = self.masks[f"{name}_{depth}"]
                mask_input = shared if depth == 0 else ops.concatenate(
                    [shared, ops.cast(self._carry(name, depth, previous), shared.dtype)], axis=-1)
                mask = gate(hidden(mask_input))
                masks[f"{name}_{depth}"] = mask
                previous = mask * shared
            attended[name] = previous
        return attended, masks

    def call(self, inputs, training=None):
        return self._forward(inputs, training)[0]

    def compute_output_shape(self, input_shape):
        shapes = self._feature_shapes(input_shape)
        return {name: shapes[self.depths.get(name, len(shapes)) - 1] for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "activation": self.activation,
                "dropout": self.dropout, "depths": dict(self.depths)}
