"""`mtl-keras train text`: sentiment, intensity and domain on the bundled VADER corpus."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from mtl_keras.backbones.hub import check_backbone
from mtl_keras.backbones.transfer import save_trunk
from mtl_keras.builders import build_text_model
from mtl_keras.datasets.lexicon import sentiment_token_features
from mtl_keras.datasets.pipeline import as_text_array, make_text_dataset
from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.datasets.vader import load_vader, load_vader_lexicon
from mtl_keras.jobs.base import BackboneConfig, Job, JobConfig, _log
from mtl_keras.tasks import Task


@dataclasses.dataclass
class TextJobConfig(BackboneConfig, JobConfig):
    """The text job's settings; the defaults are the README's main job. `backbone`: a keras-hub preset name or
    folder, or a trunk saved by an earlier run (`RUN/trunk`), in place of the embedding and encoder."""

    # Small corpora (README, "Small corpora"): the TF-IDF branch and balanced classes keep 500 labelled texts ahead of
    # TF-IDF + logistic regression; 40 epochs is a ceiling that early stopping ends well before on the whole split.
    epochs: int = 40
    balance_classes: bool = True
    encoder: str = "cnn"
    max_tokens: int = 30000  # the whole training vocabulary (27,390 tokens) fits
    max_length: int = 64
    embedding_dim: int = 200
    dropout: float = 0.3
    head_hidden_units: tuple[int, ...] = (64,)
    lexicon: bool = True  # frozen VADER valence + negation channels beside the learned embedding
    tfidf_units: int = 64  # a TF-IDF unigram+bigram branch beside our encoder (build_text_model); not with backbone
    sharing: str = "hard"  # how the tasks share the encoder's output (mtl_keras.sharing)
    sharing_options: dict | None = None
    data_path: str | None = None
    backbone: str | None = None


class TextJob(Job):
    name = "text"
    config_class = TextJobConfig

    def __init__(self, config: TextJobConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.backbone is not None:
            check_backbone(self.config.backbone, "text")  # before the corpus is loaded
        self.config.check_fine_tuning("text", pretrained=self.config.backbone is not None)

    def load_data(self) -> Splits:
        return load_vader(seed=self.config.seed, limit=self.config.limit, path=self.config.data_path)

    def build_model(self, tasks: list[Task], splits: Splits) -> keras.Model:
        config = self.config
        name = "text_multitask" if len(tasks) > 1 else f"text_{tasks[0].name}"
        # A single-task baseline keeps the plain encoder + head, whatever the multi-task sharing.
        sharing = {"sharing": config.sharing if len(tasks) > 1 else "hard",
                   "sharing_options": config.sharing_options if len(tasks) > 1 else None}
        if config.backbone is not None:
            return build_text_model(tasks, backbone=config.backbone, max_length=config.max_length,
                                    dropout=config.dropout, head_hidden_units=config.head_hidden_units, name=name,
                                    **sharing, **config.fine_tuning())
        return build_text_model(
            tasks, texts=splits.train.inputs, encoder=config.encoder, max_tokens=config.max_tokens,
            max_length=config.max_length, embedding_dim=config.embedding_dim, dropout=config.dropout,
            head_hidden_units=config.head_hidden_units, tfidf_units=config.tfidf_units,
            token_features=sentiment_token_features(load_vader_lexicon()) if config.lexicon else None,
            name=name, **sharing, **config.fine_tuning(),  # fine-tuning options without a backbone: refused
        )

    def save_extras(self, model: keras.Model, folder) -> None:
        """`RUN/trunk`: the shared embedding and encoder, for `mtl-keras train text --backbone RUN/trunk` (when the
        tasks share one representation; a sharing layer such as MMoE gives each its own, and then none is saved)."""
        try:
            save_trunk(model, folder / "trunk")
        except ValueError as error:
            _log(f"trunk not saved: {error}")

    def dataset(self, split: Split, tasks: list[Task], training: bool) -> tf.data.Dataset:
        split = split.for_tasks(task.name for task in tasks)
        return make_text_dataset(
            split.inputs,
            split.labels,
            tasks,
            split.masks,
            batch_size=self.config.batch_size if training else 512,
            shuffle=training,
            seed=self.config.seed,
        )

    def model_inputs(self, inputs):
        return tf.constant(as_text_array(inputs).tolist(), dtype=tf.string)
