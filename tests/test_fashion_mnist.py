import gzip

import numpy as np
import pytest

from mtl_keras.datasets.fashion_mnist import (
    CLASS_NAMES,
    bundled_source_indices,
    load_fashion_mnist,
    read_idx,
)

# Only the bundled file and files written to tmp_path: never the full Debian or Keras copies (CI has neither).


def idx_bytes(values: np.ndarray, type_code: int = 0x08) -> bytes:
    """An idx file of `values` (stored big-endian, as the format wants)."""
    header = bytes([0, 0, type_code, values.ndim]) + np.array(values.shape, ">u4").tobytes()
    return header + values.astype(values.dtype.newbyteorder(">")).tobytes()


def test_bundled_shapes_dtypes_and_class_balance():
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    assert x_train.shape == (12_000, 28, 28) and x_test.shape == (2_000, 28, 28)
    assert y_train.shape == (12_000,) and y_test.shape == (2_000,)
    assert {array.dtype for array in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.bincount(y_train, minlength=10).tolist() == [1_200] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [200] * 10
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[0] == "T-shirt/top" and CLASS_NAMES[9] == "Ankle boot"
    assert 0 < x_train.mean() < 255 and x_train.max() == 255  # real images, not blanks
    assert not x_train.flags.writeable  # shared between callers: read-only
    with pytest.raises(ValueError, match="read-only"):
        x_train[0, 0, 0] = 1


def test_bundled_indices_are_unique_sorted_and_in_range():
    train_index, test_index = bundled_source_indices()
    for index, total, size in ((train_index, 60_000, 12_000), (test_index, 10_000, 2_000)):
        assert index.shape == (size,) and np.issubdtype(index.dtype, np.integer)
        assert len(np.unique(index)) == size and (np.diff(index) > 0).all()
        assert index.min() >= 0 and index.max() < total


def test_read_idx_parses_plain_and_gzipped_files(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain, packed = tmp_path / "tiny-idx3-ubyte", tmp_path / "tiny-idx3-ubyte.gz"
    plain.write_bytes(idx_bytes(images))
    packed.write_bytes(gzip.compress(idx_bytes(images), mtime=0))
    for file in (plain, packed):
        array = read_idx(file, shape=(None, 3, 4))
        assert array.dtype == np.uint8 and np.array_equal(array, images)
    wide = tmp_path / "wide-idx1-int"  # type code 0x0C: big-endian int32, returned in native order
    wide.write_bytes(idx_bytes(np.array([1, -2, 70_000], np.int32), type_code=0x0C))
    assert read_idx(wide).tolist() == [1, -2, 70_000]


def test_read_idx_rejects_bad_files(tmp_path):
    good = idx_bytes(np.zeros((2, 2), np.uint8))
    cases = {
        "bad magic number": b"\x01\x02" + good[2:],
        "bad magic number ": good[:2] + b"\x07" + good[3:],  # unknown type code
        "needs 4 bytes": good[:-1],
        "truncated idx header": good[:7],
    }
    for message, data in cases.items():
        file = tmp_path / "bad"
        file.write_bytes(data)
        with pytest.raises(ValueError, match=message.strip()):
            read_idx(file)
    file = tmp_path / "good"
    file.write_bytes(good)
    with pytest.raises(ValueError, match=r"expected an array of shape \(2, 3\)"):
        read_idx(file, shape=(2, 3))
    with pytest.raises(ValueError, match="expected an array of shape"):
        read_idx(file, shape=(4,))


def test_unknown_source_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="source must be one of"):
        load_fashion_mnist("mnist")
    with pytest.raises(ValueError, match="path is not used"):
        load_fashion_mnist("keras", path=tmp_path)  # refused before anything is downloaded
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("debian", path=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="data/build_fashion_mnist.py"):
        load_fashion_mnist("bundled", path=tmp_path)


def test_debian_source_reads_idx_files(tmp_path):
    """A fake, all-zero copy of the four official files: the real ones are never needed."""
    for images_name, labels_name, total in (
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
        ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
    ):
        labels = (np.arange(total) % 10).astype(np.uint8)
        (tmp_path / images_name).write_bytes(gzip.compress(idx_bytes(np.zeros((total, 28, 28), np.uint8)), 1))
        (tmp_path / labels_name).write_bytes(gzip.compress(idx_bytes(labels), 1))
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist("debian", path=tmp_path)
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28)
    assert y_train.dtype == np.uint8 and np.bincount(y_test).tolist() == [1_000] * 10
