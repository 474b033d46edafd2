"""Rebuild `data/vader/vader_ground_truth.tsv.gz` (the rated texts) and `data/vader/vader_lexicon.tsv.gz` (the
VADER lexicon's token valences) from the vaderSentiment 3.3.2 source distribution.

Usage (needs pip and access to PyPI):

    python data/build_vader.py                      # downloads the sdist into a temporary folder
    python data/build_vader.py --sdist PATH.tar.gz  # uses a copy you already have

The output is byte-for-byte reproducible (fixed row order, gzip mtime 0): compare its sha256 with
`data/README.md`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "vaderSentiment==3.3.2"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
# Source file stem -> the domain name used by mtl_keras (the `domain` task's classes, in this order).
DOMAINS = {
    "tweets": "tweets",
    "movieReviewSnippets": "movie_reviews",
    "amazonReviewSnippets": "product_reviews",
    "nytEditorialSnippets": "news_editorials",
}
LEXICON_MEMBER = "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt"
OUTPUT = Path(__file__).resolve().parent / "vader" / "vader_ground_truth.tsv.gz"
LEXICON_OUTPUT = Path(__file__).resolve().parent / "vader" / "vader_lexicon.tsv.gz"


def _download_sdist(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST, "-d", str(folder)],
        check=True,
    )
    return next(folder.glob("vaderSentiment-3.3.2.tar.gz"))


def _decode(raw: bytes) -> str:
    # The movie snippets are UTF-8; the other three files are plain ASCII/latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_rows(sdist: Path) -> list[tuple[str, str, str, str]]:
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile(INNER_ARCHIVE).read()
    rows = []
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for stem, domain in DOMAINS.items():
            text = _decode(inner.extractfile(f"hutto_ICWSM_2014/{stem}_GroundTruth.txt").read())
            for record in csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE):
                identifier, rating, sentence = record
                rows.append((domain, identifier, f"{float(rating):.6g}", sentence.strip()))
    return rows


def read_lexicon(sdist: Path) -> list[tuple[str, str]]:
    """(token, mean valence) of the VADER lexicon, in file order."""
    with tarfile.open(sdist) as outer:
        text = outer.extractfile(LEXICON_MEMBER).read().decode("utf-8")
    return [tuple(line.split("\t")[:2]) for line in text.splitlines() if line.strip()]


def write_rows(rows, output: Path, header=("domain", "id", "rating", "text")) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    payload = gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=9, mtime=0)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, help="path to vaderSentiment-3.3.2.tar.gz (downloaded if absent)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--lexicon-output", type=Path, default=LEXICON_OUTPUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or _download_sdist(Path(tmp))
        rows = read_rows(sdist)
        digest = write_rows(rows, args.output)
        lexicon = read_lexicon(sdist)
        lexicon_digest = write_rows(lexicon, args.lexicon_output, header=("token", "valence"))
    print(f"wrote {len(rows)} rows to {args.output}\nsha256 {digest}")
    print(f"wrote {len(lexicon)} lexicon entries to {args.lexicon_output}\nsha256 {lexicon_digest}")


if __name__ == "__main__":
    main()
