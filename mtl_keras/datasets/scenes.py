"""Scenes: one to three Fashion-MNIST items composited on a cluttered 64x64 canvas, with exact per-pixel masks.

Fashion-MNIST has no human masks. Here every mask is *derived from compositing*: items are pasted one after the
other, each opaque over its footprint (the pixels of the resized item at or above `footprint_threshold`), so the
class on top at every pixel is known exactly. Per scene the generator gives:

- `image`: uint8 (64, 64, 1);
- `mask`: uint8 (64, 64), 0 = background, 1 + c = an item of Fashion-MNIST class c on top (11 classes);
- `presence`: float32 (10,), 1 where an item of that class is visible (multi-label);
- `count`: float32 (1,), the number of items (regression);
- `box`: float32 (4,), the bounding box `(y_min, x_min, y_max, x_max)` of the visible pixels of the largest item
  (the one with most visible pixels), as fractions of the canvas (max edges exclusive).

The background is clutter that a threshold cannot separate from the items: a smooth random field over the whole
intensity range of the items, speckle noise, and fragments cut out of other Fashion-MNIST images. Items overlap by
at most `max_overlap` of any item's footprint, so every item stays countable.

Scene `i` of a set depends only on `(seed, i)` and the item pool (NumPy generators seeded `[seed, i, stream]`):
any scene can be regenerated alone, and the items and the clutter draw from separate streams, so turning the
clutter off (`clutter=False`) leaves the items, masks and labels unchanged. A whole set is generated once, in memory
(about 1,500 scenes a second on one core), before training, so training never waits for it.

Example:

>>> from mtl_keras.datasets.fashion_mnist import load_fashion_mnist
>>> (x_train, y_train), _ = load_fashion_mnist()
>>> scenes = generate_scenes(x_train, y_train, num_scenes=4, seed=0)
>>> scenes["image"].shape, scenes["mask"].shape, scenes["presence"].shape, scenes["box"].shape
((4, 64, 64, 1), (4, 64, 64), (4, 10), (4, 4))
>>> bool((scenes["count"][:, 0] == (scenes["source"] >= 0).sum(axis=1)).all())
True
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtl_keras.datasets.fashion_mnist import CLASS_NAMES, item_pools
from mtl_keras.datasets.image_ops import resize_bilinear
from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.tasks import Task

NUM_ITEM_CLASSES = len(CLASS_NAMES)
MASK_CLASS_NAMES = ("background", *CLASS_NAMES)
_ITEM_STREAM, _CLUTTER_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn.

    Args:
        size: canvas side in pixels.
        min_items, max_items: items per scene, drawn uniformly.
        item_size: range of an item's side in pixels (Fashion-MNIST items are 28).
        footprint_threshold: an item's pixel belongs to it (is opaque, and in the mask) at this value or above.
        contrast: range of the factor applied to an item's intensities.
        max_overlap: the most of any item's footprint that later items may cover.
        clutter: draw the cluttered background (False: black, for tests and figures).
        fragments: range of the number of clutter fragments cut from other items.
        fragment_size: range of a fragment's side in pixels.
    """

    size: int = 64
    min_items: int = 1
    max_items: int = 3
    item_size: tuple[int, int] = (24, 34)
    footprint_threshold: int = 32
    contrast: tuple[float, float] = (0.8, 1.0)
    max_overlap: float = 0.2
    clutter: bool = True
    fragments: tuple[int, int] = (3, 6)
    fragment_size: tuple[int, int] = (6, 12)

    def __post_init__(self):
        if not 1 <= self.min_items <= self.max_items:
            raise ValueError(f"SceneConfig: need 1 <= min_items <= max_items, got {self.min_items}, {self.max_items}.")
        if not 8 <= self.item_size[0] <= self.item_size[1] <= self.size:
            raise ValueError(f"SceneConfig: item_size must lie in [8, size={self.size}], got {self.item_size}.")
        if not 0.0 <= self.max_overlap < 1.0:
            raise ValueError(f"SceneConfig: max_overlap must be in [0, 1), got {self.max_overlap}.")


def scene_tasks() -> list[Task]:
    """The four scene tasks: `segmentation` (11 classes, background first), `presence` (10 labels), `count` and
    `box` (regressions)."""
    return [
        Task("segmentation", "segmentation", num_classes=NUM_ITEM_CLASSES + 1, class_names=MASK_CLASS_NAMES,
             background_class=0),
        Task("presence", "multilabel", num_classes=NUM_ITEM_CLASSES, class_names=CLASS_NAMES),
        Task("count", "regression", metrics=["mae", "exact_match"]),
        Task("box", "regression", units=4, metrics=["mae", "box_iou"]),
    ]


def generate_scenes(
    items: np.ndarray, labels: np.ndarray, num_scenes: int, seed: int = DEFAULT_SEED,
    config: SceneConfig | None = None,
) -> dict[str, np.ndarray]:
    """`num_scenes` scenes whose items are drawn from `items` (uint8 (N, 28, 28)) with class `labels` (N,).

    Returns a dict of arrays keyed `image`, `mask`, `presence`, `count`, `box`, plus `source` (int32
    (scenes, max_items): the index in `items` of each placed item, bottom first, -1 where fewer were placed) and
    `visible` (float32 (scenes, max_items): the share of each placed item's footprint left visible).
    """
    config = config or SceneConfig()
    items, labels = np.asarray(items), np.asarray(labels)
    if items.ndim != 3 or len(items) != len(labels) or len(items) == 0:
        raise ValueError(f"generate_scenes: items must be (N, height, width) with one label each, got "
                         f"{items.shape} and {labels.shape}.")
    if num_scenes < 0:
        raise ValueError(f"generate_scenes: num_scenes must be >= 0, got {num_scenes}.")
    size = config.size
    out = {
        "image": np.zeros((num_scenes, size, size, 1), np.uint8),
        "mask": np.zeros((num_scenes, size, size), np.uint8),
        "presence": np.zeros((num_scenes, NUM_ITEM_CLASSES), np.float32),
        "count": np.zeros((num_scenes, 1), np.float32),
        "box": np.zeros((num_scenes, 4), np.float32),
        "source": np.full((num_scenes, config.max_items), -1, np.int32),
        "visible": np.zeros((num_scenes, config.max_items), np.float32),
    }
    for index in range(num_scenes):
        scene = generate_scene(items, labels, seed, index, config)
        for key, value in scene.items():
            out[key][index] = value
    return out


def generate_scene(items: np.ndarray, labels: np.ndarray, seed: int, index: int,
                   config: SceneConfig) -> dict[str, np.ndarray]:
    """Scene `index` of the set seeded `seed` (see `generate_scenes`)."""
    item_rng = np.random.default_rng([seed, index, _ITEM_STREAM])
    size = config.size
    canvas = _clutter(items, size, np.random.default_rng([seed, index, _CLUTTER_STREAM]), config)
    owner = np.full((size, size), -1, np.int16)  # which placed item is on top at each pixel
    placed: list[tuple[int, np.ndarray]] = []  # (source index, footprint on the canvas)
    for _ in range(item_rng.integers(config.min_items, config.max_items + 1)):
        source = int(item_rng.integers(len(items)))
        side = int(item_rng.integers(config.item_size[0], config.item_size[1] + 1))
        pixels = resize_bilinear(items[source], side) * item_rng.uniform(*config.contrast)
        footprint = resize_bilinear(items[source], side) >= config.footprint_threshold
        for _attempt in range(30):
            top, left = item_rng.integers(0, size - side + 1, size=2)
            window = (slice(top, top + side), slice(left, left + side))
            full = np.zeros((size, size), bool)
            full[window] = footprint
            if _fits(owner, full, placed, config.max_overlap):
                break
        else:
            continue  # no room left: the scene keeps the items it has
        canvas[window][footprint] = pixels[footprint]
        owner[full] = len(placed)
        placed.append((source, full))
    mask = np.zeros((size, size), np.uint8)
    presence = np.zeros(NUM_ITEM_CLASSES, np.float32)
    visible = []
    for number, (source, _) in enumerate(placed):
        on_top = owner == number
        mask[on_top] = 1 + int(labels[source])
        presence[int(labels[source])] = 1.0
        visible.append(on_top)
    largest = visible[int(np.argmax([v.sum() for v in visible]))]
    rows, columns = np.flatnonzero(largest.any(axis=1)), np.flatnonzero(largest.any(axis=0))
    box = np.array([rows[0], columns[0], rows[-1] + 1, columns[-1] + 1], np.float32) / size
    sources = np.full(config.max_items, -1, np.int32)
    sources[: len(placed)] = [source for source, _ in placed]
    visible_share = np.zeros(config.max_items, np.float32)
    visible_share[: len(placed)] = [v.sum() / footprint.sum() for v, (_, footprint) in zip(visible, placed,
                                                                                          strict=True)]
    return {
        "image": np.clip(np.rint(canvas), 0, 255).astype(np.uint8)[..., None],
        "mask": mask,
        "presence": presence,
        "count": np.array([len(placed)], np.float32),
        "box": box,
        "source": sources,
        "visible": visible_share,
    }


def _fits(owner: np.ndarray, footprint: np.ndarray, placed, max_overlap: float) -> bool:
    """Whether an item with this canvas footprint may go on top: at most `max_overlap` of its footprint lies over
    placed items, and every placed item keeps at least `1 - max_overlap` of its own footprint visible."""
    covered = owner[footprint]
    covered = covered[covered >= 0]
    if covered.size > max_overlap * footprint.sum():
        return False
    for number, hidden in zip(*np.unique(covered, return_counts=True), strict=True):
        still_visible = int((owner == number).sum()) - int(hidden)
        if still_visible < (1.0 - max_overlap) * placed[number][1].sum():
            return False
    return True


def _clutter(items: np.ndarray, size: int, rng: np.random.Generator, config: SceneConfig) -> np.ndarray:
    """The background: a smooth field spanning the items' intensities, speckle, and fragments of other items."""
    if not config.clutter:
        return np.zeros((size, size), np.float32)
    low = rng.uniform(0, 90)
    high = rng.uniform(low + 60, 230)
    field = resize_bilinear(rng.uniform(0, 1, (5, 5)), size)
    canvas = low + (high - low) * (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    canvas += rng.normal(0, 14, (size, size))
    for _ in range(rng.integers(config.fragments[0], config.fragments[1] + 1)):
        side = int(rng.integers(config.fragment_size[0], config.fragment_size[1] + 1))
        item = items[rng.integers(len(items))]
        top, left = rng.integers(0, item.shape[0] - side + 1, size=2)
        fragment = item[top:top + side, left:left + side].astype(np.float32) * rng.uniform(0.5, 1.0)
        y, x = rng.integers(0, size - side + 1, size=2)
        region = canvas[y:y + side, x:x + side]
        opaque = fragment >= config.footprint_threshold
        region[opaque] = fragment[opaque]
    return canvas.astype(np.float32)


def load_scenes(
    num_train: int = 20_000,
    num_validation: int = 2_000,
    num_test: int = 2_000,
    seed: int = DEFAULT_SEED,
    source: str = "bundled",
    path=None,
    config: SceneConfig | None = None,
) -> Splits:
    """Train, validation and test scenes, with the four tasks of `scene_tasks()`.

    Items never cross splits: test scenes take their items from the Fashion-MNIST test images; training and
    validation scenes from a stratified 90/10 split (by `seed`) of the training images.
    """
    counts = {"train": num_train, "validation": num_validation, "test": num_test}
    splits = {}
    for number, (part, (items, labels)) in enumerate(item_pools(seed, source, path).items()):
        count = counts[part]
        # Each split its own seed, so a test scene never repeats a training scene's layout.
        scenes = generate_scenes(items, labels, count, seed=seed * 3 + number, config=config)
        splits[part] = Split(scenes["image"], {name: scenes[name] for name in ("mask", "presence", "count", "box")})
        splits[part].labels["segmentation"] = splits[part].labels.pop("mask")
    return Splits(splits["train"], splits["validation"], splits["test"], scene_tasks())
