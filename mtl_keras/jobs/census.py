"""`mtl-keras train census`: income > 50K and "never married" on UCI Census-Income (KDD), the MMoE benchmark.

Every feature column goes in raw (strings for categorical columns, numbers for the rest); the sharing layer is chosen
with `--sharing` (MMoE by default) and the single-task baselines (`--baselines`) are plain shared-bottom networks of
one task: the "single-task" row of the MMoE paper.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from mtl_keras.builders import build_tabular_model
from mtl_keras.datasets.census import CENSUS_CATEGORICAL, CENSUS_NUMERIC, load_census
from mtl_keras.datasets.features import Feature, describe_features
from mtl_keras.datasets.pipeline import as_feature_columns, make_tabular_dataset
from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.encoders.numeric import NUMERIC_ENCODINGS
from mtl_keras.jobs.base import Job, JobConfig
from mtl_keras.tasks import Task

# Heavy-tailed money columns: standardised after sign(x) * log(1 + |x|).
LOG_COLUMNS = ("wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks")

# Each sharing's default shape, of similar capacity (about 40-60k weights in the sharing part).
DEFAULT_SHARING_OPTIONS = {
    "hard": {"units": (128, 64)},
    "soft": {"units": (128, 64), "penalty": 1e-4},
    "cross_stitch": {"units": (128, 64)},
    "mmoe": {"num_experts": 6, "expert_units": (64,)},
    "ple": {"num_levels": 1, "num_shared_experts": 2, "num_task_experts": 2, "expert_units": (64,)},
    "dselect_k": {"num_experts": 6, "k": 2, "expert_units": (64,)},
    "mtan": {"units": (128, 64)},
    "cascade": {"order": ("marital", "income")},
}


@dataclasses.dataclass
class CensusJobConfig(JobConfig):
    """The census job's settings; the defaults are the README's census job."""

    epochs: int = 20
    batch_size: int = 512
    patience: int = 3
    sharing: str = "mmoe"
    sharing_options: dict | None = None  # added to (and overriding) the sharing's defaults above
    head_hidden_units: tuple[int, ...] = (32,)
    dropout: float = 0.1
    validation_fraction: float = 0.1
    data_path: str | None = None
    numeric_encoding: str = "periodic"  # measured best on census-income (README); standardize, piecewise_linear
    numeric_embedding_dim: int = 8


class CensusJob(Job):
    name = "census"
    config_class = CensusJobConfig

    def __init__(self, config: CensusJobConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.sharing not in DEFAULT_SHARING_OPTIONS:
            raise ValueError(f"--sharing must be one of {sorted(DEFAULT_SHARING_OPTIONS)}, got "
                             f"{self.config.sharing!r}.")
        if self.config.numeric_encoding not in NUMERIC_ENCODINGS:  # before the data is loaded
            raise ValueError(f"--numeric-encoding must be one of {list(NUMERIC_ENCODINGS)}, got "
                             f"{self.config.numeric_encoding!r}.")
        self.features: list[Feature] | None = None

    def load_data(self) -> Splits:
        splits = load_census(seed=self.config.seed, validation_fraction=self.config.validation_fraction,
                             limit=self.config.limit, path=self.config.data_path)
        self.features = describe_features(splits.train.inputs, categorical=CENSUS_CATEGORICAL,
                                          numeric=CENSUS_NUMERIC, log=LOG_COLUMNS)
        return splits

    def sharing_options(self, sharing: str) -> dict:
        options = dict(DEFAULT_SHARING_OPTIONS[sharing])
        if sharing == self.config.sharing:
            options.update(self.config.sharing_options or {})
        return options

    def build_model(self, tasks: list[Task], splits: Splits) -> keras.Model:
        # A single-task baseline is a plain network (shared bottom of one task), whatever the multi-task sharing.
        sharing = self.config.sharing if len(tasks) > 1 else "hard"
        return build_tabular_model(
            tasks, self.features, sharing=sharing, sharing_options=self.sharing_options(sharing),
            head_hidden_units=self.config.head_hidden_units, dropout=self.config.dropout,
            numeric_encoding=self.config.numeric_encoding, numeric_embedding_dim=self.config.numeric_embedding_dim,
            name=f"census_{sharing}" if len(tasks) > 1 else f"census_{tasks[0].name}",
        )

    def dataset(self, split: Split, tasks: list[Task], training: bool) -> tf.data.Dataset:
        split = split.for_tasks(task.name for task in tasks)
        return make_tabular_dataset(split.inputs, split.labels, tasks, self.features, split.masks,
                                    batch_size=self.config.batch_size if training else 4096,
                                    shuffle=training, seed=self.config.seed)

    def model_inputs(self, inputs):
        return {name: tf.constant(values) for name, values in as_feature_columns(inputs, self.features).items()}
