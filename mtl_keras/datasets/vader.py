"""The VADER ground-truth corpus (Hutto & Gilbert, ICWSM 2014; MIT): 23,703 short texts from four domains.

Every text carries three tasks:

- `sentiment` (binary): 1 if the mean human rating is > 0, 0 if < 0, missing (-1) where it is exactly 0;
- `intensity` (regression): the mean human rating, from -4 to +4;
- `domain` (multiclass, 4): tweets, movie reviews, product reviews or news editorials.

Example:

>>> splits = load_vader()
>>> len(splits.train), len(splits.validation), len(splits.test)
(18963, 2370, 2370)
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np

from mtl_keras.datasets.splits import Split, Splits, stratified_split_indices
from mtl_keras.labels import MISSING
from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.tasks import Task

DOMAINS = ("tweets", "movie_reviews", "product_reviews", "news_editorials")
FILE_NAME = "vader_ground_truth.tsv.gz"
LEXICON_FILE_NAME = "vader_lexicon.tsv.gz"


def vader_tasks() -> list[Task]:
    """The three tasks of the corpus, with their default metrics."""
    return [
        Task("sentiment", "binary", class_names=("negative", "positive")),
        Task("intensity", "regression"),
        Task("domain", "multiclass", num_classes=len(DOMAINS), class_names=DOMAINS),
    ]


def default_data_dir() -> Path:
    """`$MTL_KERAS_DATA` if set, else the repository's `data/` folder."""
    return Path(os.environ.get("MTL_KERAS_DATA", Path(__file__).resolve().parents[2] / "data"))


def read_vader(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts (object array), ratings (float32) and domain indices (int32), in file order."""
    path = Path(path) if path is not None else default_data_dir() / "vader" / FILE_NAME
    if not path.exists():
        raise FileNotFoundError(f"VADER corpus not found at {path}; rebuild it with `python data/build_vader.py` "
                                f"or point MTL_KERAS_DATA at the folder that holds vader/{FILE_NAME}.")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        header = next(reader)
        rows = list(reader)
    if header != ["domain", "id", "rating", "text"]:
        raise ValueError(f"{path}: unexpected header {header}.")
    texts = np.array([row[3] for row in rows], dtype=object)
    ratings = np.array([float(row[2]) for row in rows], dtype="float32")
    domains = np.array([DOMAINS.index(row[0]) for row in rows], dtype="int32")
    return texts, ratings, domains


def load_vader(
    seed: int = DEFAULT_SEED,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    limit: int | None = None,
    path: str | os.PathLike | None = None,
) -> Splits:
    """Deterministic train / validation / test splits, stratified by domain and sign of the rating.

    Args:
        seed: the split's seed; the same seed always gives the same split.
        fractions: train, validation and test fractions.
        limit: keep only a stratified subset of about this many texts (for quick runs and tests).
        path: the corpus file (default: the bundled copy).
    """
    texts, ratings, domains = read_vader(path)
    strata = domains * 3 + np.sign(ratings).astype("int32") + 1
    corpus = Split(
        texts,
        {
            "sentiment": np.where(ratings > 0, 1, np.where(ratings < 0, 0, MISSING)).astype("int32"),
            "intensity": ratings,
            "domain": domains,
        },
    )
    if limit is not None and limit < len(texts):
        keep, _ = stratified_split_indices(strata, (limit / len(texts), 1 - limit / len(texts)), seed)
        corpus, strata = corpus.take(keep), strata[keep]
    train, validation, test = stratified_split_indices(strata, fractions, seed)
    return Splits(corpus.take(train), corpus.take(validation), corpus.take(test), vader_tasks())


def load_vader_lexicon(path: str | os.PathLike | None = None) -> dict[str, float]:
    """The VADER lexicon (7,520 words, emoticons and slang rated by humans from -4 to +4): lower-cased token ->
    mean valence, as the text model's tokens are lower-cased.

    >>> load_vader_lexicon()["great"]
    3.1
    """
    path = Path(path) if path is not None else default_data_dir() / "vader" / LEXICON_FILE_NAME
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        next(reader)
        lexicon: dict[str, float] = {}
        for token, valence in reader:
            lexicon.setdefault(token.lower(), float(valence))
    return lexicon
