"""mtl_keras: multi-task learning for Keras 3 (TensorFlow backend).

The public API lives here and nowhere else.
"""

__version__ = "0.1.0"

# First, before anything imports TensorFlow: a quiet start-up for the `mtl-keras` command (see the module).
import mtl_keras._startup  # noqa: F401, I001
from mtl_keras.backbones import ImagePreprocessing, PretrainedTrunk, load_trunk, save_trunk
from mtl_keras.builders import (
    attach_heads,
    attach_shared_heads,
    build_tabular_model,
    build_text_model,
    build_vision_model,
)
from mtl_keras.datasets.census import load_census
from mtl_keras.datasets.fashion_mnist import load_fashion_mnist
from mtl_keras.datasets.features import Feature, describe_features
from mtl_keras.datasets.lexicon import sentiment_token_features
from mtl_keras.datasets.multifashion import load_multifashion
from mtl_keras.datasets.pipeline import (
    InputError,
    as_feature_columns,
    as_image_array,
    make_dataset,
    make_image_dataset,
    make_tabular_dataset,
    make_text_dataset,
)
from mtl_keras.datasets.scenes import load_scenes
from mtl_keras.datasets.tokenization import build_vocabulary, tokenize
from mtl_keras.datasets.vader import load_vader, load_vader_lexicon
from mtl_keras.distribute import get_strategy, local_cluster, split_cpu
from mtl_keras.encoders.numeric import NumericColumn, PeriodicEncoding, PiecewiseLinearEncoding
from mtl_keras.encoders.text import (
    BiLSTMTextEncoder,
    ConvTextEncoder,
    TransformerBlock,
    TransformerTextEncoder,
    get_text_encoder,
)
from mtl_keras.evaluation import compute_metrics, delta_m, roc_auc, task_deltas
from mtl_keras.export import export_saved_model, load_saved_model, serving_signature
from mtl_keras.heads import TaskHead
from mtl_keras.labels import MISSING, LabelError, prepare_labels
from mtl_keras.losses import MaskedLoss, SparseCategoricalFocalCrossentropy
from mtl_keras.metrics import (
    BoxIoU,
    ExactMatch,
    HistogramAUC,
    MacroF1,
    MacroPrecision,
    MacroRecall,
    PearsonR,
    PixelAccuracy,
    SegmentationIoU,
    SparseMacroAUC,
    ThresholdF1Score,
    ThresholdPrecision,
    ThresholdRecall,
)
from mtl_keras.seeds import DEFAULT_SEED, set_global_seed
from mtl_keras.sharing import (
    PLE,
    CrossStitch,
    CrossStitchUnit,
    DenseStack,
    DSelectK,
    Gate,
    HardSharing,
    MMoE,
    SharingLayer,
    SoftSharing,
    StopGradient,
    TaskAttention,
    TaskCascade,
    expert_gates,
    get_sharing,
)
from mtl_keras.tasks import HIGHER_IS_BETTER, KINDS, Task
from mtl_keras.analysis.affinity import TaskAffinity
from mtl_keras.training.backup import TrainingBackup
from mtl_keras.training.callbacks import NonFiniteLossError, StopOnNonFiniteLoss, TaskLossScaleWarning
from mtl_keras.training.compile import compile_multitask
from mtl_keras.training.gradients import (
    GRADIENT_METHODS,
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    DualProj,
    GradientMethod,
    NashMTL,
    PCGrad,
    UPGrad,
    get_gradient_method,
)
from mtl_keras.training.loop import fit_distributed
from mtl_keras.training.model import MultiTaskModel
from mtl_keras.training.progress import TaskProgressBar
from mtl_keras.training.weighting import (
    DWA,
    FAMO,
    WEIGHTINGS,
    GeometricLossWeighting,
    GradNorm,
    RandomLossWeighting,
    SmoothTchebycheff,
    StaticWeighting,
    UncertaintyWeighting,
    Weighting,
    get_weighting,
)

__all__ = [
    "AlignedMTL",
    "BiLSTMTextEncoder",
    "BoxIoU",
    "CAGrad",
    "ConvTextEncoder",
    "CrossStitch",
    "CrossStitchUnit",
    "DEFAULT_SEED",
    "DSelectK",
    "DWA",
    "DenseStack",
    "DualProj",
    "ExactMatch",
    "FAMO",
    "Feature",
    "GRADIENT_METHODS",
    "Gate",
    "GeometricLossWeighting",
    "GradNorm",
    "GradientMethod",
    "HIGHER_IS_BETTER",
    "HardSharing",
    "HistogramAUC",
    "IMTLG",
    "ImagePreprocessing",
    "InputError",
    "KINDS",
    "LabelError",
    "MGDA",
    "MISSING",
    "MMoE",
    "MacroF1",
    "MacroPrecision",
    "MacroRecall",
    "MaskedLoss",
    "MultiTaskModel",
    "NashMTL",
    "NonFiniteLossError",
    "NumericColumn",
    "PCGrad",
    "PLE",
    "PearsonR",
    "PeriodicEncoding",
    "PiecewiseLinearEncoding",
    "PixelAccuracy",
    "PretrainedTrunk",
    "RandomLossWeighting",
    "SegmentationIoU",
    "SharingLayer",
    "SmoothTchebycheff",
    "SoftSharing",
    "SparseCategoricalFocalCrossentropy",
    "SparseMacroAUC",
    "StaticWeighting",
    "StopGradient",
    "StopOnNonFiniteLoss",
    "Task",
    "TaskAffinity",
    "TaskAttention",
    "TaskCascade",
    "TaskHead",
    "TaskLossScaleWarning",
    "TaskProgressBar",
    "ThresholdF1Score",
    "ThresholdPrecision",
    "ThresholdRecall",
    "TrainingBackup",
    "TransformerBlock",
    "TransformerTextEncoder",
    "UPGrad",
    "UncertaintyWeighting",
    "WEIGHTINGS",
    "Weighting",
    "as_feature_columns",
    "as_image_array",
    "attach_heads",
    "attach_shared_heads",
    "build_tabular_model",
    "build_text_model",
    "build_vision_model",
    "build_vocabulary",
    "compile_multitask",
    "compute_metrics",
    "delta_m",
    "describe_features",
    "expert_gates",
    "export_saved_model",
    "fit_distributed",
    "get_gradient_method",
    "get_sharing",
    "get_strategy",
    "get_text_encoder",
    "get_weighting",
    "load_census",
    "load_fashion_mnist",
    "load_multifashion",
    "load_saved_model",
    "load_scenes",
    "load_trunk",
    "load_vader",
    "load_vader_lexicon",
    "local_cluster",
    "make_dataset",
    "make_image_dataset",
    "make_tabular_dataset",
    "make_text_dataset",
    "prepare_labels",
    "roc_auc",
    "save_trunk",
    "sentiment_token_features",
    "serving_signature",
    "set_global_seed",
    "split_cpu",
    "task_deltas",
    "tokenize",
]
