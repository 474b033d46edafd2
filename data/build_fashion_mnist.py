"""Rebuild `data/fashion_mnist/fashion_mnist_subset.npz`, a class-balanced subset of Fashion-MNIST (Zalando, MIT),
from the Debian package `dataset-fashion-mnist`, which ships the four official idx files.

Usage (needs dpkg-deb; without --deb, also apt-get and access to a Debian mirror):

    python data/build_fashion_mnist.py                 # downloads the .deb into a temporary folder
    python data/build_fashion_mnist.py --deb PATH.deb  # uses a copy you already have

The subset: 1,200 images per class from the official training file (12,000) and 200 per class from the official
test file (2,000), drawn without replacement by `numpy.random.default_rng(SEED)` (train before test, classes 0 to 9
in turn), then kept in source order. Arrays: `x_train` and `x_test` (uint8, N x 28 x 28), `y_train` and `y_test`
(uint8), `train_index` and `test_index` (int64, each image's index in its official file).

The .npz is a zip of .npy files, as `numpy.savez_compressed` writes it, but every member has a fixed date and
attributes and is compressed with LZMA (`numpy.load` reads it like any .npz), so the output is byte-for-byte
reproducible: compare its sha256 with `data/README.md`. Takes about ten seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from mtl_keras.datasets.fashion_mnist import DEBIAN_PACKAGE, IDX_FILES, IMAGE_SHAPE, SUBSET_FILE, read_idx

DEBIAN_VERSION = "0.0~git20200523.55506a9-1"  # the version the bundled file was built from
IDX_FOLDER = "usr/share/datasets/fashion-mnist"  # inside the .deb
SEED = 1337  # the project's DEFAULT_SEED, written out so that the subset never changes with it
PER_CLASS = {"train": 1_200, "test": 200}
NUM_CLASSES = 10
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can store
OUTPUT = Path(__file__).resolve().parent / "fashion_mnist" / SUBSET_FILE


def download_deb(folder: Path) -> Path:
    """`apt-get download` the package into `folder`; returns the .deb."""
    subprocess.run(["apt-get", "download", DEBIAN_PACKAGE], cwd=folder, check=True)
    debs = sorted(folder.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if len(debs) != 1:
        raise FileNotFoundError(f"expected one {DEBIAN_PACKAGE}_*.deb in {folder} after apt-get download, "
                                f"found {[deb.name for deb in debs]}.")
    return debs[0]


def extract_deb(deb: Path, folder: Path) -> Path:
    """Unpack the .deb into `folder` (warns if its version is not `DEBIAN_VERSION`); returns the idx folder."""
    version = subprocess.run(["dpkg-deb", "--field", str(deb), "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    if version != DEBIAN_VERSION:
        print(f"warning: {deb.name} is version {version}, the bundled file came from {DEBIAN_VERSION}; "
              f"the output may differ from the sha256 of data/README.md.", file=sys.stderr)
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(folder)], check=True)
    return folder / IDX_FOLDER


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """`per_class` indices of each class (0 to 9, in turn), drawn without replacement, sorted ascending."""
    chosen = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} images, fewer than {per_class}.")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def build_subset(idx_folder: Path, seed: int = SEED) -> dict[str, np.ndarray]:
    """The subset's six arrays, from the four official idx files in `idx_folder`."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, (images_file, labels_file, total) in IDX_FILES.items():
        images = read_idx(idx_folder / images_file, shape=(total, *IMAGE_SHAPE))
        labels = read_idx(idx_folder / labels_file, shape=(total,))
        index = balanced_subset(labels, PER_CLASS[part], rng)
        arrays[f"x_{part}"], arrays[f"y_{part}"], arrays[f"{part}_index"] = images[index], labels[index], index
    return {name: arrays[name] for name in ("x_train", "y_train", "x_test", "y_test", "train_index", "test_index")}


def write_npz(arrays: dict[str, np.ndarray], output: Path) -> str:
    """Write `arrays` as a reproducible .npz (fixed dates and attributes, LZMA); returns the file's sha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, values in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(values), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_LZMA
            info.create_system = 3  # Unix, whatever the machine
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    payload = buffer.getvalue()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deb", type=Path, help=f"path to the {DEBIAN_PACKAGE} .deb (downloaded if absent)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deb = args.deb or download_deb(Path(tmp))
        arrays = build_subset(extract_deb(deb, Path(tmp) / "extracted"))
    digest = write_npz(arrays, args.output)
    print(f"wrote {len(arrays['x_train'])} + {len(arrays['x_test'])} images to {args.output} "
          f"({args.output.stat().st_size} bytes)\nsha256 {digest}")


if __name__ == "__main__":
    main()
