"""MultiFashion: two overlapping Fashion-MNIST items per image, the classic two-task benchmark of the MTL literature.

The MultiMNIST recipe of Sener & Koltun (2018), used with Fashion-MNIST by Lin et al. (2019, Pareto MTL): one item
at the top-left `[0:28, 0:28]` and another at `[6:34, 6:34]` of a 36x36 canvas, overlap taken by the pixel-wise
maximum, and the canvas resized to 28x28 (bilinear). Tasks: `left`, the class of the top-left item, and `right`,
the class of the bottom-right one (10 classes each).

Example `i` of a set depends only on `(seed, i)` and the item pool; both items come from the same pool (training
images for the training and validation sets, test images for the test set), so no item crosses splits.

>>> from mtl_keras.datasets.fashion_mnist import load_fashion_mnist
>>> (x_train, y_train), _ = load_fashion_mnist()
>>> images, left, right = make_multifashion(x_train, y_train, num_examples=3, seed=0)
>>> images.shape, images.dtype, left.shape
((3, 28, 28, 1), dtype('uint8'), (3,))
"""

from __future__ import annotations

import numpy as np

from mtl_keras.datasets.fashion_mnist import CLASS_NAMES, item_pools
from mtl_keras.datasets.image_ops import resize_bilinear
from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.tasks import Task

CANVAS, ITEM, OFFSET = 36, 28, 6


def multifashion_tasks() -> list[Task]:
    """`left` and `right`: the class of each item (10 classes)."""
    return [Task(side, "multiclass", num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
            for side in ("left", "right")]


def compose_pair(top_left: np.ndarray, bottom_right: np.ndarray) -> np.ndarray:
    """The two 28x28 items on the 36x36 canvas (maximum where they overlap), resized to 28x28, as uint8."""
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    canvas[:ITEM, :ITEM] = top_left
    corner = canvas[OFFSET:OFFSET + ITEM, OFFSET:OFFSET + ITEM]
    np.maximum(corner, bottom_right, out=corner)
    return np.clip(np.rint(resize_bilinear(canvas, ITEM)), 0, 255).astype(np.uint8)


def make_multifashion(items: np.ndarray, labels: np.ndarray, num_examples: int,
                      seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(images uint8 (N, 28, 28, 1), left labels (N,), right labels (N,))`, two items drawn per example."""
    items, labels = np.asarray(items), np.asarray(labels)
    if items.shape[1:] != (ITEM, ITEM) or len(items) != len(labels) or len(items) < 2:
        raise ValueError(f"make_multifashion: items must be (N >= 2, 28, 28) with one label each, got {items.shape} "
                         f"and {labels.shape}.")
    images = np.zeros((num_examples, ITEM, ITEM, 1), np.uint8)
    pairs = np.zeros((num_examples, 2), np.int64)
    for index in range(num_examples):
        rng = np.random.default_rng([seed, index])
        pairs[index] = rng.choice(len(items), size=2, replace=False)
        images[index, ..., 0] = compose_pair(items[pairs[index, 0]], items[pairs[index, 1]])
    return images, labels[pairs[:, 0]].astype(np.int64), labels[pairs[:, 1]].astype(np.int64)


def load_multifashion(num_train: int = 60_000, num_validation: int = 6_000, num_test: int = 10_000,
                      seed: int = DEFAULT_SEED, source: str = "bundled", path=None) -> Splits:
    """Train, validation and test MultiFashion sets with the tasks of `multifashion_tasks()`.

    Training and validation items come from a stratified 90/10 split (by `seed`) of the Fashion-MNIST training
    images, test items from its test images.
    """
    counts = {"train": num_train, "validation": num_validation, "test": num_test}
    splits = {}
    for number, (part, (items, labels)) in enumerate(item_pools(seed, source, path).items()):
        count = counts[part]
        images, left, right = make_multifashion(items, labels, count, seed=seed * 3 + number)
        splits[part] = Split(images, {"left": left, "right": right})
    return Splits(splits["train"], splits["validation"], splits["test"], multifashion_tasks())
