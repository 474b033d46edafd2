"""Small NumPy image operations the data generators share (no TensorFlow, so generation stays cheap and exact)."""

from __future__ import annotations

import numpy as np


def resize_bilinear(image: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Bilinear resize of a 2-D array with half-pixel centres (what `tf.image.resize(..., "bilinear")` does without
    antialiasing), as float32.

    >>> resize_bilinear(np.array([[0.0, 2.0], [4.0, 6.0]]), 4).round(2).tolist()[0]
    [0.0, 0.5, 1.5, 2.0]
    """
    width = height if width is None else width
    image = np.asarray(image, dtype="float32")
    source_height, source_width = image.shape

    def grid(target: int, source: int):
        position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, source - 1)
        return low, high, (position - low).astype("float32")

    y0, y1, wy = grid(height, source_height)
    x0, x1, wx = grid(width, source_width)
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]
