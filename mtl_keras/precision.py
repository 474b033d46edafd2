"""Mixed precision: the Keras dtype policy a model is built under, and the optimizer it then needs.

`mixed_precision()` sets Keras' global dtype policy for the block that builds a model and restores the previous one
after, so later models in the same process are not affected. The policy follows the device:

- on a GPU, `mixed_float16`: float16 computations (tensor cores), float32 variables; float16 gradients can
  underflow, so the optimizer is wrapped in `keras.optimizers.LossScaleOptimizer` (`loss_scaled`), which scales
  the loss up, unscales the gradients and skips a step whose gradients are not finite;
- on CPUs, `mixed_bfloat16`: bfloat16 has float32's exponent range, so no loss scaling is needed (float16 on a CPU
  is emulated and slow).

Each layer records its policy in its config, so a `.keras` file reloads with the same precision whatever the global
policy then. Task heads compute their last layer and activation in float32, so outputs, losses, metrics and the
SavedModel's outputs stay float32.

Example:

>>> import keras
>>> from mtl_keras import Task, build_vision_model
>>> with mixed_precision() as policy:
...     model = build_vision_model([Task("kind", "multiclass", num_classes=3)], image_shape=(8, 8, 1), filters=(4,))
>>> policy.name == mixed_precision_policy_name(), keras.config.dtype_policy().name
(True, 'float32')
>>> model.get_layer("encoder0_conv0").compute_dtype == policy.compute_dtype, model.output["kind"].dtype
(True, 'float32')
>>> type(loss_scaled(keras.optimizers.Adam(), "mixed_float16")).__name__
'LossScaleOptimizer'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


def mixed_precision_policy_name() -> str:
    """`"mixed_float16"` when TensorFlow sees a GPU, else `"mixed_bfloat16"`."""
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def mixed_precision(enabled: bool = True, policy: str | None = None) -> Iterator[keras.DTypePolicy]:
    """Builds inside the block use a mixed dtype policy (`policy`, default by device); the previous global policy
    is restored on leaving, even after an error. With `enabled=False` the block runs under the current policy.
    Yields the policy in force inside the block."""
    if policy is not None and policy not in MIXED_POLICIES:
        raise ValueError(f"policy must be one of {MIXED_POLICIES} (or None: by device), got {policy!r}.")
    previous = keras.config.dtype_policy()
    if enabled:
        keras.config.set_dtype_policy(policy or mixed_precision_policy_name())
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)


def loss_scaled(optimizer: keras.optimizers.Optimizer, policy) -> keras.optimizers.Optimizer:
    """`optimizer` wrapped in a `LossScaleOptimizer` when `policy` (a policy, its name, or a model) computes in
    float16; unchanged otherwise, or if it is already wrapped."""
    policy = getattr(policy, "dtype_policy", policy)
    compute_dtype = keras.DTypePolicy(policy).compute_dtype if isinstance(policy, str) else policy.compute_dtype
    if compute_dtype != "float16" or isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
