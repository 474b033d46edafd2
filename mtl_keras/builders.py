"""Builder functions: a shared trunk plus one head per task, as a functional Keras model with dict outputs.

Every builder checks its arguments, names each output after its task (so labels, losses, loss weights and metrics
line up by name) and uses only registered, serializable layers (no `Lambda`), so models round-trip through
`.keras` files and export as SavedModels.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mtl_keras.datasets.tokenization import build_vocabulary, split_graph, standardize_graph
from mtl_keras.encoders.text import get_text_encoder
from mtl_keras.heads import TaskHead
from mtl_keras.tasks import Task, as_task_dict


def attach_heads(shared, tasks: Sequence[Task], hidden_units: Sequence[int] = (), dropout: float = 0.0) -> dict:
    """One `TaskHead` per task on the shared representation; returns the outputs keyed by task name."""
    return {
        name: TaskHead.for_task(task, hidden_units=hidden_units, dropout=dropout)(shared)
        for name, task in as_task_dict(tasks).items()
    }


def build_text_model(
    tasks: Sequence[Task],
    texts: Sequence[str] | None = None,
    vocabulary: Sequence[str] | None = None,
    encoder: str | keras.layers.Layer = "cnn",
    encoder_options: dict | None = None,
    max_tokens: int = 20000,
    max_length: int = 64,
    embedding_dim: int = 128,
    head_hidden_units: Sequence[int] = (64,),
    dropout: float = 0.3,
    name: str = "text_multitask",
) -> keras.Model:
    """A multi-task text model: raw strings in, one output per task out.

    strings -> TextVectorization (nltk-compatible tokens, see `mtl_keras.datasets.tokenization`) -> shared Embedding
    -> shared encoder -> one `TaskHead` per task.

    Args:
        tasks: the tasks (their names key the outputs).
        texts: training texts to build the vocabulary from (or give `vocabulary`).
        vocabulary: a ready vocabulary, most frequent token first.
        encoder: `"cnn"`, `"bilstm"`, `"transformer"`, or a layer mapping `(batch, length, dim)` to `(batch, dim')`.
        encoder_options: keyword arguments of the named encoder.
        max_tokens: vocabulary size, including padding and out-of-vocabulary entries.
        max_length: tokens kept per text (longer texts are cut, shorter ones padded).
        embedding_dim: width of the shared embedding.
        head_hidden_units: hidden layer widths of each head.
        dropout: dropout on the shared representation and in the heads.
        name: the model's name.

    Example:

    >>> from mtl_keras import Task
    >>> model = build_text_model([Task("sentiment", "binary"), Task("topic", "multiclass", num_classes=3)],
    ...                          texts=["good film", "bad service", "great phone"], embedding_dim=8,
    ...                          encoder_options={"filters": 4})
    >>> sorted(model.output)
    ['sentiment', 'topic']
    >>> import numpy as np
    >>> tuple(model.predict(np.array(["good phone"], dtype=object), verbose=0)["topic"].shape)
    (1, 3)
    """
    tasks = list(as_task_dict(tasks).values())
    if (texts is None) == (vocabulary is None):
        raise ValueError("build_text_model: give exactly one of `texts` (to build the vocabulary) or `vocabulary`.")
    if vocabulary is None:
        vocabulary = build_vocabulary(texts, max_tokens=max_tokens)
    vocabulary = list(vocabulary)
    if not vocabulary:
        raise ValueError("build_text_model: the vocabulary is empty.")
    if max_length < 1 or embedding_dim < 1:
        raise ValueError(f"build_text_model: max_length and embedding_dim must be positive, got {max_length}, "
                         f"{embedding_dim}.")

    inputs = keras.Input(shape=(), dtype="string", name="text")
    token_ids = keras.layers.TextVectorization(
        standardize=standardize_graph, split=split_graph, vocabulary=vocabulary,
        output_sequence_length=max_length, name="vectorizer",
    )(inputs)
    embedded = keras.layers.Embedding(len(vocabulary) + 2, embedding_dim, mask_zero=True,
                                      name="shared_embedding")(token_ids)
    options = dict(encoder_options or {})
    if encoder == "transformer":
        options.setdefault("max_length", max_length)
    shared = get_text_encoder(encoder, **options)(embedded)
    shared = keras.layers.Dropout(dropout, name="shared_dropout")(shared)
    return keras.Model(inputs, attach_heads(shared, tasks, head_hidden_units, dropout), name=name)
