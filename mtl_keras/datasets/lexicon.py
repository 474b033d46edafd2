"""Token-level prior knowledge for sentiment: a lexicon's valence and a negation flag per token.

`sentiment_token_features` turns a lexicon (token -> valence on -4..+4, e.g. `load_vader_lexicon()`) into the
`token_features` mapping of `build_text_model`: per token `[valence / 4, is_negation]`. The convolution over these
two frozen channels lets a small model see that "not good" flips "good" without having to learn every word's
polarity from a few thousand examples.

Example:

>>> sentiment_token_features({"good": 1.9})["good"], sentiment_token_features({})["don't"]
([0.475, 0.0], [0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Mapping

# English negators, as the tokenizer yields them (contractions stay whole, curly apostrophes too).
NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor nowhere cannot without n't "
    "don't doesn't didn't isn't wasn't aren't weren't won't wouldn't can't couldn't shouldn't hasn't haven't "
    "hadn't ain't mightn't mustn't needn't shan't dont doesnt didnt isnt wasnt arent werent wont wouldnt cant "
    "couldnt shouldnt hasnt havent hadnt aint".split()
)
NEGATIONS = NEGATIONS | {word.replace("'", "\u2019") for word in NEGATIONS if "'" in word}


def sentiment_token_features(lexicon: Mapping[str, float], scale: float = 4.0) -> dict[str, list[float]]:
    """token -> [valence / scale, 1.0 if the token negates else 0.0], for every lexicon token and negator."""
    return {
        token: [float(lexicon.get(token, 0.0)) / scale, 1.0 if token in NEGATIONS else 0.0]
        for token in set(lexicon) | NEGATIONS
    }
