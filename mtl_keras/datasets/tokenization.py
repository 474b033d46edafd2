"""One tokenizer, two engines: nltk in Python and RE2 inside the TensorFlow graph.

The vocabulary is built with nltk's `RegexpTokenizer` (which needs no downloaded data) and the model splits
text inside its graph with `tf.strings.regex_replace` using *the same pattern*, so a SavedModel tokenizes raw
strings exactly as training did. The pattern is written in the subset of regular-expression syntax that Python's
`re` and RE2 read alike: no look-arounds, no back-references, explicit character classes instead of `\\w`/`\\d`/`\\s`
(whose meaning differs between the two engines outside ASCII). `tests/test_tokenization.py` checks on the whole
bundled corpus that both engines give identical tokens.

Example:

>>> tokenize("Not GOOD at all :( #fail")
['not', 'good', 'at', 'all', ':(', '#fail']
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterable

import keras
import nltk
import tensorflow as tf

# Every character Python's str.isspace() accepts, so both engines agree on what separates tokens.
_WHITESPACE_CHARS = "".join(chr(c) for c in range(0x3000 + 1) if chr(c).isspace())
WHITESPACE_PATTERN = "[" + "".join(sorted({re.escape(c) for c in _WHITESPACE_CHARS})) + "]+"

# Letters: ASCII plus Latin-1 Supplement to Latin Extended-B, written as literal characters (both engines read them).
_LETTERS = "a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_WORD = f"[{_LETTERS}0-9_]"
_EMOTICON = (
    r"(?:[<>]?[:;=8][\-o\*']?[\)\]\(\[dp/\:\}\{@\|\\]"  # :-)  ;p  :/
    r"|[\)\]\(\[dp/\:\}\{@\|\\][\-o\*']?[:;=8][<>]?"  # (-:
    r"|<3)"
)
TOKEN_PATTERN = "|".join(
    (
        r"https?://[^ ]+|www\.[^ ]+",  # URLs, kept whole
        _EMOTICON,
        f"[@#]{_WORD}+",  # mentions and hashtags
        r"[0-9]+(?:[.,][0-9]+)+",  # numbers such as 3.5 or 1,000
        f"{_WORD}+(?:['\u2019]{_WORD}+)*",  # words, contractions kept whole ("don't")
        r"[!?]+|\.\.+",  # "!!!", "?!", "..." carry sentiment
        f"[^ {_LETTERS}0-9_]",  # any other single symbol
    )
)


# HTML entities that scraped tweets carry ("&lt;3" is a heart); decoded by both engines in this order.
HTML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&amp;", "&"))


def standardize(text: str) -> str:
    """Lower-cases, decodes a few HTML entities and turns every whitespace run into one space (Python engine)."""
    text = text.lower()
    for entity, character in HTML_ENTITIES:
        text = text.replace(entity, character)
    return re.sub(WHITESPACE_PATTERN, " ", text)


def nltk_tokenizer() -> nltk.tokenize.RegexpTokenizer:
    """The nltk tokenizer that defines the project's tokens (no nltk data needed)."""
    return nltk.tokenize.RegexpTokenizer(TOKEN_PATTERN)


_TOKENIZER = nltk_tokenizer()


def tokenize(text: str) -> list[str]:
    """Tokens of one text, through nltk."""
    return _TOKENIZER.tokenize(standardize(text))


def build_vocabulary(texts: Iterable[str], max_tokens: int | None = 20000, min_count: int = 1) -> list[str]:
    """The most frequent nltk tokens of `texts`, most frequent first (ties in alphabetical order).

    `max_tokens` counts the two entries TextVectorization reserves (padding and out-of-vocabulary), as Keras does.
    """
    counts = collections.Counter(token for text in texts for token in tokenize(text))
    ranked = sorted((token for token, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    if max_tokens is not None:
        ranked = ranked[: max(max_tokens - 2, 0)]
    if not ranked:
        raise ValueError("build_vocabulary: the texts contain no token; is the training set empty?")
    return ranked


def build_ngram_idf(texts: Iterable[str], max_terms: int = 50000) -> tuple[list[str], list[float]]:
    """The word unigrams and bigrams in most of `texts` (ties in alphabetical order, at most `max_terms` less the
    out-of-vocabulary entry) and their inverse document frequencies, log(1 + n / (1 + n_t)) as Keras' adapted
    `TextVectorization(output_mode="tf_idf")` has them; bigrams are two tokens joined by a space, as its `ngrams=2`
    makes them. Given to that layer as `vocabulary=` and `idf_weights=`, they are in its config, so the model
    rebuilds from its config alone.

    >>> terms, idf = build_ngram_idf(["good film", "good"])
    >>> terms, [round(weight, 3) for weight in idf]
    (['good', 'film', 'good film'], [0.511, 0.693, 0.693])
    """
    documents = collections.Counter()
    count = 0
    for text in texts:
        tokens = tokenize(text)
        documents.update(set(tokens) | {f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)})
        count += 1
    ranked = sorted(documents, key=lambda t: (-documents[t], t))[: max(max_terms - 1, 0)]
    if not ranked:
        raise ValueError("build_ngram_idf: the texts contain no token; is the training set empty?")
    return ranked, [math.log(1 + count / (1 + documents[term])) for term in ranked]


@keras.saving.register_keras_serializable(package="mtl_keras")
def standardize_graph(texts: tf.Tensor) -> tf.Tensor:
    """`standardize` inside the graph (the RE2 engine)."""
    texts = tf.strings.lower(texts, encoding="utf-8")
    for entity, character in HTML_ENTITIES:
        texts = tf.strings.regex_replace(texts, re.escape(entity), character)
    return tf.strings.regex_replace(texts, WHITESPACE_PATTERN, " ")


@keras.saving.register_keras_serializable(package="mtl_keras")
def split_graph(texts: tf.Tensor) -> tf.RaggedTensor:
    """`tokenize` inside the graph: each match of TOKEN_PATTERN is kept and followed by a space, every other
    character is dropped, as nltk's RegexpTokenizer does; then split on spaces (tokens never contain one)."""
    marked = tf.strings.regex_replace(texts, f"({TOKEN_PATTERN})|(?s:.)", r"\1 ")
    return tf.strings.split(marked)
