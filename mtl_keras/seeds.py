"""The project's one source of randomness: every default seed comes from here."""

from __future__ import annotations

import keras

DEFAULT_SEED = 1337


def set_global_seed(seed: int = DEFAULT_SEED) -> None:
    """Seeds Python, NumPy, TensorFlow and Keras at once (Keras' own helper does all four)."""
    keras.utils.set_random_seed(seed)
