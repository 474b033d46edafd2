"""Builder functions: a shared trunk plus one head per task, as a functional Keras model with dict outputs.

Every builder checks its arguments, names each output after its task (so labels, losses, loss weights and metrics
line up by name) and uses only registered, serializable layers (no `Lambda`), so models round-trip through
`.keras` files and export as SavedModels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from mtl_keras.backbones import check_no_fine_tuning, make_trunk
from mtl_keras.datasets.features import Feature, input_names
from mtl_keras.datasets.pipeline import as_text_array
from mtl_keras.datasets.tokenization import build_ngram_idf, build_vocabulary, split_graph, standardize_graph
from mtl_keras.encoders.tabular import encode_features, feature_inputs
from mtl_keras.encoders.text import get_text_encoder
from mtl_keras.encoders.vision import BACKBONES, check_image_shape, conv_block
from mtl_keras.heads import TaskHead
from mtl_keras.sharing import SharingLayer, TaskCascade, attach_cascade_heads, check_sharing_options, get_sharing
from mtl_keras.sharing.vision import check_vision_sharing, vision_task_features
from mtl_keras.tasks import Task, as_task_dict
from mtl_keras.training.model import MultiTaskModel


def attach_heads(shared, tasks: Sequence[Task], hidden_units: Sequence[int] = (), dropout: float = 0.0) -> dict:
    """One `TaskHead` per task; returns the outputs keyed by task name.

    `shared` is one representation for every task, or a dict of one per task (a sharing layer's output).
    """
    return {
        name: TaskHead.for_task(task, hidden_units=hidden_units, dropout=dropout)(
            shared[name] if isinstance(shared, Mapping) else shared)
        for name, task in as_task_dict(tasks).items()
    }


def attach_shared_heads(
    shared,
    tasks: Sequence[Task],
    sharing: str | SharingLayer = "hard",
    sharing_options: Mapping | None = None,
    cascade: TaskCascade | None = None,
    head_hidden_units: Sequence[int] = (),
    dropout: float = 0.0,
) -> dict:
    """A sharing layer on the trunk's output, then a head per task (chained if `cascade`); outputs by task name.

    `sharing="cascade"` is hard sharing with `cascade=TaskCascade(**sharing_options)` (e.g. `{"order": [...]}`).

    A model of one's own trunk, with the tasks given once (it then compiles, evaluates and exports as the builders'):

    >>> from mtl_keras import Task, export_saved_model
    >>> tasks = [Task("a", "binary"), Task("b", "regression")]
    >>> inputs = keras.Input((3,), name="signal")
    >>> trunk = keras.layers.Dense(4, name="trunk")(inputs)
    >>> model = MultiTaskModel(inputs, attach_shared_heads(trunk, tasks, "mmoe", {"num_experts": 2}), tasks=tasks)
    >>> model.compile(optimizer="adam")
    >>> path = export_saved_model(model, getfixture("tmp_path") / "custom")   # the signature: the model's inputs
    """
    tasks = as_task_dict(tasks)
    options = dict(sharing_options or {})
    if isinstance(sharing, str) and sharing == "cascade":
        if cascade is not None:
            raise ValueError("Give the cascade either as sharing='cascade' with sharing_options, or as cascade=.")
        check_sharing_options(sharing, options)
        cascade, options = TaskCascade(**options), {}
    representations = get_sharing(sharing, list(tasks), **options)(shared)
    if cascade is not None:
        return attach_cascade_heads(representations, list(tasks.values()), cascade, head_hidden_units, dropout)
    return attach_heads(representations, list(tasks.values()), head_hidden_units, dropout)


def _token_feature_matrix(vocabulary: Sequence[str], token_features: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Rows for padding, out-of-vocabulary, then each vocabulary token (zeros where a token has no features)."""
    widths = {len(np.atleast_1d(v)) for v in token_features.values()}
    if len(widths) != 1:
        raise ValueError(f"token_features: every vector must have the same length, got lengths {sorted(widths)}.")
    matrix = np.zeros((len(vocabulary) + 2, widths.pop()), dtype="float32")
    for row, token in enumerate(vocabulary, start=2):
        if token in token_features:
            matrix[row] = np.atleast_1d(token_features[token])
    return matrix


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
    embedding_dropout: float = 0.0,
    token_features: Mapping[str, Sequence[float]] | None = None,
    tfidf_units: int = 0,
    tfidf_max_tokens: int = 50000,
    sharing: str | SharingLayer = "hard",
    sharing_options: Mapping | None = None,
    cascade: TaskCascade | None = None,
    backbone=None,
    preprocessor=None,
    pooling: str = "auto",
    freeze_backbone: bool | int = False,
    unfreeze_from: str | None = None,
    lora_rank: int | None = None,
    backbone_learning_rate_multiplier: float = 1.0,
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
        embedding_dropout: rate at which whole embedding channels are dropped during training (SpatialDropout1D).
        token_features: fixed prior knowledge per token (e.g. a sentiment lexicon's valence): token -> vector, all
            of one length. Each token's vector is appended, frozen, to its learned embedding; tokens absent from
            the mapping get zeros.
        tfidf_units: when > 0, a wide branch beside the encoder: each text's TF-IDF bag of word unigrams and
            bigrams (terms and idf counted on `texts` by `build_ngram_idf`; unseen words weigh 0), of unit length,
            through a linear layer of this width, joined to the encoder's output. It sees what a TF-IDF linear
            model sees, which a few hundred texts train far better than embeddings learned from scratch (README,
            "Small corpora, against the baselines users would pick instead").
        tfidf_max_tokens: the branch's vocabulary: the unigrams and bigrams in most of `texts`, plus one entry
            for unseen words (at least 2).
        sharing: how the tasks share the encoder's output (`mtl_keras.sharing`): `"hard"` (default: the encoder
            is the shared part), `"soft"`, `"cross_stitch"`, `"mmoe"`, `"ple"`, `"mtan"`, `"cascade"`, or a layer.
        sharing_options: arguments of the sharing layer named by `sharing`.
        cascade: chain the heads (`mtl_keras.TaskCascade`).
        backbone: a pretrained trunk instead of ours (`mtl_keras.backbones`): a keras-hub preset name (e.g.
            `"bert_tiny_en_uncased"`, downloaded once) or folder, a `keras_hub.models.Backbone` (with
            `preprocessor=`), or a folder from `save_trunk`. Its tokenizer goes inside the model, so the model and
            its SavedModel still take raw strings; `texts`, `vocabulary`, `encoder` and the embedding arguments
            are then not used (`max_length` is the preprocessor's sequence length).
        preprocessor: the keras-hub text preprocessor of a `backbone` given as an object.
        pooling: how a backbone's token outputs become one vector (`PretrainedTrunk`: `"auto"`, `"pooled"`,
            `"first"`, `"mean"`).
        freeze_backbone: `True` (frozen throughout), `False`, or a number of epochs to keep it frozen.
        unfreeze_from: the backbone's first layer to train once unfrozen (earlier layers stay frozen).
        lora_rank: train low-rank adapters on the backbone's attention layers (keras-hub's `enable_lora`) and
            nothing else of it.
        backbone_learning_rate_multiplier: the backbone trains at this multiple of the optimizer's learning rate
            (in (0, 1]; e.g. 0.1), the heads at the full rate.
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
    tasks = list(as_task_dict(tasks, input_names=["text"]).values())
    if isinstance(tfidf_units, bool) or not isinstance(tfidf_units, int) or tfidf_units < 0:
        raise ValueError(f"build_text_model: tfidf_units must be a whole number >= 0, got {tfidf_units!r}.")
    if tfidf_units and (isinstance(tfidf_max_tokens, bool) or not isinstance(tfidf_max_tokens, int)
                        or tfidf_max_tokens < 2):
        raise ValueError(f"build_text_model: tfidf_max_tokens must be a whole number >= 2 (one entry is for unseen "
                         f"words), got {tfidf_max_tokens!r}.")
    if tfidf_units and (backbone is not None or texts is None):
        raise ValueError("build_text_model: tfidf_units needs texts= (its vocabulary and inverse document "
                         "frequencies are learned from the training texts), and no backbone.")
    if backbone is None:
        check_no_fine_tuning("build_text_model", preprocessor=preprocessor, pooling=pooling,
                             freeze_backbone=freeze_backbone, unfreeze_from=unfreeze_from, lora_rank=lora_rank,
                             backbone_learning_rate_multiplier=backbone_learning_rate_multiplier)
    else:
        if texts is not None or vocabulary is not None:
            raise ValueError("build_text_model: a backbone brings its own tokenizer; give either backbone= or "
                             "texts=/vocabulary=, not both.")
        inputs = keras.Input(shape=(), dtype="string", name="text")
        trunk = make_trunk("text", backbone, preprocessor, sequence_length=max_length, pooling=pooling,
                           freeze=freeze_backbone, unfreeze_from=unfreeze_from, lora_rank=lora_rank,
                           learning_rate_multiplier=backbone_learning_rate_multiplier)
        features = trunk(inputs)
        if len(features.shape) != 2:
            raise ValueError(f"build_text_model: backbone {trunk.backbone.name!r} gives features of shape "
                             f"{tuple(features.shape)}, not one vector per text; pool them in the backbone.")
        shared = keras.layers.Dropout(dropout, name="shared_dropout")(features)
        outputs = attach_shared_heads(shared, tasks, sharing, sharing_options, cascade, head_hidden_units, dropout)
        return MultiTaskModel(inputs, outputs, tasks=tasks, name=name)
    if (texts is None) == (vocabulary is None):
        raise ValueError("build_text_model: give exactly one of `texts` (to build the vocabulary) or `vocabulary`.")
    if vocabulary is None:
        vocabulary = build_vocabulary(as_text_array(texts, "build_text_model: texts"), max_tokens=max_tokens)
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
    if token_features:
        prior = _token_feature_matrix(vocabulary, token_features)
        prior_layer = keras.layers.Embedding(prior.shape[0], prior.shape[1], mask_zero=True, trainable=False,
                                             name="token_features")
        embedded = keras.layers.Concatenate(name="embedding_with_features")([embedded, prior_layer(token_ids)])
        prior_layer.set_weights([prior])
    if embedding_dropout:
        embedded = keras.layers.SpatialDropout1D(embedding_dropout, name="embedding_dropout")(embedded)
    options = dict(encoder_options or {})
    if encoder == "transformer":
        options.setdefault("max_length", max_length)
    shared = get_text_encoder(encoder, **options)(embedded)
    if tfidf_units:
        shared = keras.layers.Concatenate(name="encoder_with_tfidf")(
            [shared, _tfidf_branch(inputs, texts, tfidf_units, tfidf_max_tokens)])
    shared = keras.layers.Dropout(dropout, name="shared_dropout")(shared)
    outputs = attach_shared_heads(shared, tasks, sharing, sharing_options, cascade, head_hidden_units, dropout)
    return MultiTaskModel(inputs, outputs, tasks=tasks, name=name)


OUT_OF_VOCABULARY = "[UNK]"  # TextVectorization's oov_token; given first, it takes the idf weight given with it


def _tfidf_branch(inputs, texts, units: int, max_tokens: int):
    """strings -> TF-IDF of unigrams and bigrams (tokenized as the encoder's input is), of unit length ->
    Dense(units)."""
    terms, idf = build_ngram_idf(as_text_array(texts, "build_text_model: texts"), max_tokens)
    # Words never seen in training weigh nothing, as in scikit-learn's TfidfVectorizer: Keras would give the
    # out-of-vocabulary entry the mean idf, and on unseen texts that one entry then dominates the unit-length
    # vector (on 500 VADER texts, a linear model on those features reached 0.56 domain accuracy, 0.76 without).
    vectorizer = keras.layers.TextVectorization(
        standardize=standardize_graph, split=split_graph, ngrams=2, output_mode="tf_idf",
        vocabulary=[OUT_OF_VOCABULARY] + terms, idf_weights=[0.0] + idf, name="tfidf_vectorizer")
    # Unit length, as scikit-learn's TfidfVectorizer gives them: long texts do not get larger inputs.
    weighted = keras.layers.UnitNormalization(name="tfidf_unit_length")(vectorizer(inputs))
    return keras.layers.Dense(units, name="tfidf_projection")(weighted)


def build_tabular_model(
    tasks: Sequence[Task],
    features: Sequence[Feature],
    sharing: str | SharingLayer = "hard",
    sharing_options: Mapping | None = None,
    cascade: TaskCascade | None = None,
    head_hidden_units: Sequence[int] = (32,),
    dropout: float = 0.0,
    name: str = "tabular_multitask",
    numeric_encoding: str = "periodic",
    numeric_embedding_dim: int = 8,
) -> keras.Model:
    """A multi-task model on tabular data: a dict of raw columns in, one output per task out.

    The columns keep the user's names: the model's inputs are named by `mtl_keras.datasets.features.input_name`,
    and `model.predict`, `make_tabular_dataset` and the exported SavedModel's `serve` take the original names.

    raw columns -> per column `StringLookup` + `Embedding` (categorical) or standardisation or an embedding of the
    number (numeric), concatenated -> sharing layer (shared bottom, MMoE, PLE, ...) -> one `TaskHead` per task.

    Args:
        tasks: the tasks (their names key the outputs).
        features: the input columns, from `mtl_keras.describe_features` on the training data.
        sharing: `"hard"` (a shared bottom), `"soft"`, `"cross_stitch"`, `"mmoe"`, `"ple"`, `"mtan"`, `"cascade"`,
            or a `SharingLayer`.
        sharing_options: arguments of the sharing layer named by `sharing` (e.g. `{"num_experts": 8}`).
        cascade: chain the heads (`mtl_keras.TaskCascade`).
        head_hidden_units: hidden layer widths of each head (its "tower").
        dropout: dropout in the heads.
        name: the model's name.
        numeric_encoding: how numeric columns go in (`mtl_keras.encoders.numeric`): `"periodic"` (the default:
            the best on census-income, README), `"piecewise_linear"` (over the quantile bins `describe_features`
            learned) or `"standardize"` (one standardised value per column).
        numeric_embedding_dim: the width of each numeric column's embedding (the two embedding encodings).

    Example:

    >>> import numpy as np
    >>> from mtl_keras import Task, describe_features
    >>> columns = {"age": np.array([25.0, 40.0, 61.0]), "job": np.array(["a", "b", "a"], dtype=object)}
    >>> tasks = [Task("income", "binary"), Task("marital", "binary")]
    >>> model = build_tabular_model(tasks, describe_features(columns), sharing="mmoe",
    ...                             sharing_options={"num_experts": 2, "expert_units": (4,)})
    >>> {k: v.shape for k, v in model.predict(columns, verbose=0).items()}
    {'income': (3, 1), 'marital': (3, 1)}
    """
    features = list(features)
    if not features or not all(isinstance(f, Feature) for f in features):
        raise TypeError("build_tabular_model: features must be a non-empty list of mtl_keras.Feature "
                        "(see mtl_keras.describe_features).")
    tasks = list(as_task_dict(tasks, input_names=[f.name for f in features]).values())
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ValueError(f"build_tabular_model: feature names must be distinct, got {names}.")
    columns = {name: column for column, name in input_names(names).items()}  # fails on two columns, one input name
    inputs = feature_inputs(features)
    shared = encode_features(inputs, features, numeric_encoding, numeric_embedding_dim)
    outputs = attach_shared_heads(shared, tasks, sharing, sharing_options, cascade, head_hidden_units, dropout)
    return MultiTaskModel(inputs, outputs, tasks=tasks, input_columns=columns, name=name)


def build_vision_model(
    tasks: Sequence[Task],
    image_shape: Sequence[int] = (64, 64, 1),
    backbone: str = "unet",
    filters: Sequence[int] = (16, 32, 64, 128),
    location_channels: int = 8,
    normalization: str | None = "batch",
    head_hidden_units: Sequence[int] = (64,),
    dropout: float = 0.1,
    backbone_weights: str | None = "imagenet",
    preprocessor=None,
    freeze_backbone: bool | int = False,
    unfreeze_from: str | None = None,
    lora_rank: int | None = None,
    backbone_learning_rate_multiplier: float = 1.0,
    sharing: str = "hard",
    sharing_options: Mapping | None = None,
    name: str = "vision_multitask",
) -> keras.Model:
    """A multi-task image model: raw uint8 images in, one output per task out.

    uint8 images -> rescaling to [0, 1] (inside the model) -> shared trunk (`mtl_keras.encoders.vision`) -> a head
    per task: segmentation tasks from the trunk's per-pixel features (outputs at input resolution), every other
    kind from its pooled features.

    Args:
        tasks: the tasks (their names key the outputs); any mix of kinds.
        image_shape: `(height, width, channels)` of the images.
        backbone: `"unet"` (encoder-decoder with skip connections), `"cnn"` (the encoder alone; segmentation from
            its bottleneck upsampled), or a pretrained trunk (`mtl_keras.backbones`): a keras-hub image preset name
            or folder (e.g. `"resnet_18_imagenet"`), `"applications:<Name>"` (e.g. `"applications:ResNet50V2"`:
            `keras.applications` without its top, with `backbone_weights`), or such a model. Its own input
            scaling goes inside the model (uint8 in still; grey images are repeated to RGB); segmentation heads
            read its last feature map resized to the input's size.
        filters: widths of the encoder stages; each stage after the first halves the resolution.
        location_channels: width of the bottleneck projection kept, flattened, beside its global average.
        normalization: `"batch"` (default), `"synchronized"` (batch statistics over all replicas under
            tf.distribute: the same updates as one device) or `None`.
        head_hidden_units: hidden widths of the heads of pooled tasks (segmentation heads are 1x1 convolutions).
        dropout: dropout on the pooled features and in those heads.
        backbone_weights: the weights of an `"applications:<Name>"` backbone (`"imagenet"`, None for random).
        preprocessor: the input scaling of a backbone given as a model (an `ImagePreprocessing` or a keras-hub
            `ImageConverter`), where it cannot be told from the model.
        freeze_backbone, unfreeze_from, lora_rank, backbone_learning_rate_multiplier: fine-tuning a pretrained
            backbone, as in `build_text_model`.
        sharing: how the tasks share the trunk (`mtl_keras.sharing.vision`): `"hard"` (default: one trunk),
            `"mtan"` (per-task attention over every encoder and decoder stage) or `"cross_stitch"` (a trunk per
            task, mixed after every stage); `"unet"` and `"cnn"` backbones only.
        sharing_options: arguments of that sharing (`{"self_weight": 0.9}` for cross-stitch).
        name: the model's name.

    Example:

    >>> import numpy as np
    >>> from mtl_keras import Task
    >>> tasks = [Task("mask", "segmentation", num_classes=3), Task("kind", "multiclass", num_classes=4)]
    >>> model = build_vision_model(tasks, image_shape=(16, 16, 1), filters=(4, 8))
    >>> {k: v.shape for k, v in model.predict(np.zeros((2, 16, 16, 1), "uint8"), verbose=0).items()}
    {'mask': (2, 16, 16, 3), 'kind': (2, 4)}
    >>> stitched = build_vision_model(tasks, image_shape=(16, 16, 1), filters=(4, 8), sharing="cross_stitch")
    >>> [layer.name for layer in stitched.layers if layer.name.startswith("stitch_")]
    ['stitch_encoder0', 'stitch_encoder1', 'stitch_decoder0']
    """
    tasks = list(as_task_dict(tasks, input_names=["image"]).values())
    check_vision_sharing(sharing, sharing_options)
    if isinstance(backbone, str) and backbone in BACKBONES:
        check_no_fine_tuning("build_vision_model", preprocessor=preprocessor, freeze_backbone=freeze_backbone,
                             unfreeze_from=unfreeze_from, lora_rank=lora_rank,
                             backbone_learning_rate_multiplier=backbone_learning_rate_multiplier)
    else:
        if sharing != "hard":
            raise ValueError(f"sharing={sharing!r} needs one of the built-in trunks {BACKBONES} (it builds its layers "
                             f"between their stages); a pretrained backbone {backbone!r} shares hard.")
        return _pretrained_vision_model(tasks, image_shape, backbone, backbone_weights, preprocessor,
                                        freeze_backbone, unfreeze_from, lora_rank, backbone_learning_rate_multiplier,
                                        filters[0], normalization, head_hidden_units, dropout, name)
    image_shape = check_image_shape(image_shape, filters)
    inputs = keras.Input(shape=image_shape, dtype="uint8", name="image")
    images = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    features = vision_task_features(images, tasks, sharing, sharing_options, backbone, filters, location_channels,
                                    normalization, dropout)
    outputs = {}
    for task in tasks:
        if task.spec.pixel_labels:
            outputs[task.name] = TaskHead.for_task(task)(features[task.name])
        else:
            outputs[task.name] = TaskHead.for_task(task, hidden_units=head_hidden_units,
                                                   dropout=dropout)(features[task.name])
    return MultiTaskModel(inputs, outputs, tasks=tasks, name=name)


def _pretrained_vision_model(tasks, image_shape, backbone, weights, preprocessor, freeze, unfreeze_from, lora_rank,
                             learning_rate_multiplier, pixel_filters, normalization, head_hidden_units, dropout, name):
    """`build_vision_model` on a pretrained trunk: uint8 -> float [0, 255] (RGB) -> the backbone's own scaling and
    the backbone -> pooled features for image-level heads, the last feature map resized for per-pixel ones."""
    image_shape = check_image_shape(image_shape, [1])
    trunk = make_trunk("image", backbone, preprocessor, image_shape=image_shape, weights=weights, freeze=freeze,
                       unfreeze_from=unfreeze_from, lora_rank=lora_rank,
                       learning_rate_multiplier=learning_rate_multiplier)
    inputs = keras.Input(shape=image_shape, dtype="uint8", name="image")
    pixels = keras.layers.Rescaling(1.0, name="as_float")(inputs)  # [0, 255]: each backbone scales its own way
    wanted = trunk.backbone.input.shape[-1] if not isinstance(trunk.backbone.input, dict) else 3
    if image_shape[-1] == 1 and wanted == 3:
        pixels = keras.layers.Concatenate(name="grey_to_rgb")([pixels, pixels, pixels])
    elif image_shape[-1] != wanted:
        raise ValueError(f"build_vision_model: backbone {trunk.backbone.name!r} takes {wanted} channels, the images "
                         f"have {image_shape[-1]}.")
    features = trunk(pixels)
    if len(features.shape) != 4:
        raise ValueError(f"build_vision_model: backbone {trunk.backbone.name!r} gives features of shape "
                         f"{tuple(features.shape)}, not a (batch, height, width, channels) map.")
    pooled = keras.layers.Concatenate(name="pooled")([
        keras.layers.GlobalAveragePooling2D(name="backbone_average")(features),
        keras.layers.GlobalMaxPooling2D(name="backbone_maximum")(features)])
    pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(pooled)
    outputs = {}
    per_pixel = None
    for task in tasks:
        if task.spec.pixel_labels:
            if per_pixel is None:
                resized = keras.layers.Resizing(image_shape[0], image_shape[1], interpolation="bilinear",
                                                name="pixels_resized")(features)
                per_pixel = conv_block(resized, pixel_filters, "pixels", 1, normalization)
            outputs[task.name] = TaskHead.for_task(task)(per_pixel)
        else:
            outputs[task.name] = TaskHead.for_task(task, hidden_units=head_hidden_units, dropout=dropout)(pooled)
    return MultiTaskModel(inputs, outputs, tasks=tasks, name=name)
