"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; Zalando, MIT): 28x28 grayscale images of clothing in 10 classes,
60,000 training and 10,000 test images, 6,000 and 1,000 per class.

Three sources, all giving the same arrays: uint8 images of shape (N, 28, 28), 0 (background) to 255, and uint8
labels 0-9 (names in `CLASS_NAMES`):

- `"bundled"` (default): the subset shipped in `data/fashion_mnist/fashion_mnist_subset.npz`, 12,000 training
  images (1,200 per class) and 2,000 test images (200 per class), drawn (seeded) from the official training and
  test files and kept in source order; `bundled_source_indices()` gives each image's index in its official file.
- `"debian"`: the full set, read from the idx files of the Debian package `dataset-fashion-mnist`
  (`apt-get install dataset-fashion-mnist`), in `/usr/share/datasets/fashion-mnist`.
- `"keras"`: the full set from `keras.datasets.fashion_mnist.load_data()`, which downloads it (needs internet the
  first time) into `~/.keras/datasets`. Used only when asked for.

The arrays are read once per process and shared by every caller, so they are read-only: copy them
(`np.array(x_train)`) before changing them in place.

Example:

>>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
>>> x_train.shape, x_train.dtype, y_train.shape, x_test.shape, y_test.dtype
((12000, 28, 28), dtype('uint8'), (12000,), (2000, 28, 28), dtype('uint8'))
>>> [CLASS_NAMES[label] for label in y_train[:3]], x_train.flags.writeable
(['Ankle boot', 'Trouser', 'Coat'], False)
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtl_keras.datasets.vader import default_data_dir

# Label -> name, in label order (the names of the Fashion-MNIST documentation).
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
SOURCES = ("bundled", "debian", "keras")
SUBSET_FILE = "fashion_mnist_subset.npz"
SUBSET_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "train_index", "test_index")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# Part -> (images file, labels file, number of images) of the official set.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
IMAGE_SHAPE = (28, 28)
# The idx format's type codes (third byte of the magic number) -> element type, stored big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def read_idx(path: str | os.PathLike, shape: Sequence[int | None] | None = None) -> np.ndarray:
    """The array stored in an idx file (the format of the MNIST files), gzip'd (read by its content, whatever its
    name) or not. The result is a new, writable array in native byte order.

    The magic number is two zero bytes, a type code (0x08 for uint8) and the number of dimensions; then come the
    dimensions (big-endian uint32) and the values, which must be exactly as many as the dimensions say.

    Args:
        path: the file.
        shape: if given, the expected shape; `None` entries match any size, e.g. `(None, 28, 28)`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     file = Path(folder) / "tiny-idx2-ubyte"  # a 2x3 uint8 array
    ...     _ = file.write_bytes(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]))
    ...     print(read_idx(file, shape=(2, None)))
    [[1 2 3]
     [4 5 6]]
    """
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise ValueError(f"{path}: not an idx file (bad magic number {data[:4].hex() or 'none'}; expected 0000, "
                         f"a type code among {[f'{code:02x}' for code in _IDX_DTYPES]} and a nonzero rank).")
    dtype, rank = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(f"{path}: truncated idx header ({len(data)} bytes for a rank-{rank} array).")
    dims = tuple(int(size) for size in np.frombuffer(data, ">u4", count=rank, offset=4))
    expected_bytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected_bytes:
        raise ValueError(f"{path}: an idx array of shape {dims} needs {expected_bytes} bytes of values, "
                         f"found {len(data) - header}.")
    if shape is not None and (
        len(shape) != rank or any(want is not None and want != got for want, got in zip(shape, dims, strict=True))
    ):
        raise ValueError(f"{path}: expected an array of shape {tuple(shape)}, found {dims}.")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def subset_file(path: str | os.PathLike | None = None) -> Path:
    """The bundled subset: `path/fashion_mnist_subset.npz` if `path` is given, else in
    `default_data_dir()/fashion_mnist`."""
    folder = Path(path) if path is not None else default_data_dir() / "fashion_mnist"
    return folder / SUBSET_FILE


def load_fashion_mnist(source: str = "bundled", path: str | os.PathLike | None = None) -> Arrays:
    """`((x_train, y_train), (x_test, y_test))`: uint8 images (N, 28, 28) and uint8 labels (N,), read-only.

    Args:
        source: `"bundled"` (the 12,000 + 2,000 image subset shipped with the package), `"debian"` (the full
            60,000 + 10,000 images of the Debian package `dataset-fashion-mnist`) or `"keras"` (the full set from
            `keras.datasets.fashion_mnist`, downloaded on first use: needs internet).
        path: for `"bundled"`, the folder holding `fashion_mnist_subset.npz`; for `"debian"`, the folder holding
            the four idx files (default `/usr/share/datasets/fashion-mnist`); not used by `"keras"`.
    """
    if source == "bundled":
        arrays = _read_subset(subset_file(path).resolve())
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    if source == "debian":
        return _read_debian(Path(path or DEBIAN_DIR).resolve())
    if source == "keras":
        if path is not None:
            raise ValueError("path is not used with source='keras' (Keras keeps its copy in ~/.keras/datasets).")
        return _read_keras()
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")


def bundled_source_indices(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(train_index, test_index)`: the index of each bundled image (int64, ascending) in the official training
    file (0-59,999) and test file (0-9,999), so `x_train[i]` of the subset is image `train_index[i]` of the full
    set (as `load_fashion_mnist("debian")` or `"keras"` order it).

    >>> train_index, test_index = bundled_source_indices()
    >>> len(train_index), len(test_index), bool((np.diff(train_index) > 0).all())
    (12000, 2000, True)
    """
    arrays = _read_subset(subset_file(path).resolve())
    return arrays["train_index"], arrays["test_index"]


@functools.lru_cache(maxsize=2)
def _read_subset(file: Path) -> dict[str, np.ndarray]:
    if not file.exists():
        raise FileNotFoundError(f"Fashion-MNIST subset not found at {file}; rebuild it with "
                                f"`python data/build_fashion_mnist.py` or point MTL_KERAS_DATA at the folder that "
                                f"holds fashion_mnist/{SUBSET_FILE}.")
    with np.load(file, allow_pickle=False) as archive:
        if sorted(archive.files) != sorted(SUBSET_ARRAYS):
            raise ValueError(f"{file}: expected the arrays {SUBSET_ARRAYS}, found {archive.files}.")
        arrays = {name: archive[name] for name in SUBSET_ARRAYS}
    for part, total in (("train", IDX_FILES["train"][2]), ("test", IDX_FILES["test"][2])):
        images, labels, index = arrays[f"x_{part}"], arrays[f"y_{part}"], arrays[f"{part}_index"]
        _check_arrays(file, part, images, labels)
        if index.shape != labels.shape or index.min() < 0 or index.max() >= total:
            raise ValueError(f"{file}: {part}_index must hold one index in [0, {total}) per image.")
    return _read_only(arrays)


@functools.lru_cache(maxsize=2)
def _read_debian(folder: Path) -> Arrays:
    missing = [name for images, labels, _ in IDX_FILES.values() for name in (images, labels)
               if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST not found in {folder} (missing {', '.join(missing)}); install it with "
                                f"`apt-get install {DEBIAN_PACKAGE}` (Debian, Ubuntu), pass path= a folder that holds "
                                f"the four idx files, or use source='bundled' (a 12,000 + 2,000 image subset).")
    parts = []
    for part, (images_file, labels_file, total) in IDX_FILES.items():
        images = read_idx(folder / images_file, shape=(total, *IMAGE_SHAPE))
        labels = read_idx(folder / labels_file, shape=(total,))
        _check_arrays(folder, part, images, labels)
        arrays = _read_only({"x": images, "y": labels})
        parts.append((arrays["x"], arrays["y"]))
    return tuple(parts)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _read_keras() -> Arrays:
    import keras

    parts = []
    for part, (images, labels) in zip(IDX_FILES, keras.datasets.fashion_mnist.load_data(), strict=True):
        arrays = _read_only({"x": np.asarray(images, dtype=np.uint8), "y": np.asarray(labels, dtype=np.uint8)})
        _check_arrays("keras.datasets.fashion_mnist", part, arrays["x"], arrays["y"])
        parts.append((arrays["x"], arrays["y"]))
    return tuple(parts)  # type: ignore[return-value]


def _check_arrays(where: object, part: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{where}: {part} images must be uint8 of shape (N, 28, 28), found {images.dtype} "
                         f"{images.shape}.")
    if labels.shape != images.shape[:1] or labels.dtype != np.uint8 or labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{where}: {part} labels must be one uint8 in [0, {len(CLASS_NAMES)}) per image, found "
                         f"{labels.dtype} {labels.shape}.")


def _read_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for values in arrays.values():
        values.flags.writeable = False
    return arrays


def item_pools(seed: int, source: str = "bundled", path: str | os.PathLike | None = None) -> dict:
    """`{"train" | "validation" | "test": (images, labels)}`: the items each split of a composed data set may use,
    so that no item crosses splits. Training and validation items are a stratified 90/10 split (by `seed`) of the
    Fashion-MNIST training images; test items are its test images.

    >>> {part: len(labels) for part, (_, labels) in item_pools(seed=0).items()}
    {'train': 10800, 'validation': 1200, 'test': 2000}
    """
    from mtl_keras.datasets.splits import stratified_split_indices

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(source, path)
    train_items, validation_items = stratified_split_indices(y_train, (0.9, 0.1), seed=seed)
    return {"train": (x_train[train_items], y_train[train_items]),
            "validation": (x_train[validation_items], y_train[validation_items]),
            "test": (x_test, y_test)}
