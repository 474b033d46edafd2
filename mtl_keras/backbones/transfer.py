"""Transfer of our own trunks: save the shared part of a trained model as a reusable backbone, build on it later.

`save_trunk(model, folder)` writes a preset-style folder, as keras-hub lays its presets out:

- `config.json`: the trunk (the model's inputs up to its shared representation) as a Keras config;
- `model.weights.h5`: its weights;
- `assets/vocabulary.txt`: a text trunk's vocabulary, one token per line (also inside the config, which is what
  loading reads; the file is for people and other tools);
- `metadata.json`: the format, the Keras and mtl_keras versions, the trunk's input and output width.

`build_text_model(tasks, backbone=folder)` (and the vision and tabular builders, for trunks of their kind) then
put it, with its weights, under new heads: new tasks, or the same ones on other data.

>>> import numpy as np
>>> from mtl_keras import Task, build_text_model
>>> model = build_text_model([Task("a", "binary"), Task("b", "binary")], texts=["good film", "bad food"],
...                          embedding_dim=4, encoder_options={"filters": 2})
>>> folder = save_trunk(model, getfixture("tmp_path") / "trunk")
>>> sorted(p.name for p in folder.iterdir())
['assets', 'config.json', 'metadata.json', 'model.weights.h5']
>>> x = np.array(["good food"], dtype=object)
>>> bool(np.allclose(load_trunk(folder).predict(x, verbose=0), trunk_model(model).predict(x, verbose=0)))
True
>>> reused = build_text_model([Task("c", "regression")], backbone=folder)   # new heads on the trained trunk
>>> sorted(reused.output)
['c']
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras

from mtl_keras.atomic_write import atomic_directory
from mtl_keras.training.shared import shared_representation

TRUNK_FORMAT = "mtl_keras.trunk"


def is_trunk_folder(spec) -> bool:
    """Whether `spec` is a folder written by `save_trunk` (an mtl_keras trunk, not a keras-hub preset)."""
    if not isinstance(spec, str | os.PathLike) or not Path(spec).is_dir():
        return False
    metadata = Path(spec) / "metadata.json"
    return metadata.is_file() and json.loads(metadata.read_text()).get("format") == TRUNK_FORMAT


def trunk_model(model: keras.Model, output_layer: str | None = None) -> keras.Model:
    """The shared part of `model` as a model of its own: its inputs up to `output_layer`'s output, or up to its one
    shared representation (the tensor every task's head reads, `shared_representation`)."""
    if output_layer is not None:
        output = model.get_layer(output_layer).output
    else:
        frontier = shared_representation(model)
        if len(frontier) != 1:
            raise ValueError(f"Model {model.name!r} has {len(frontier)} shared representations, not one (a sharing "
                             f"layer such as MMoE gives each task its own mixture): name the trunk's last layer "
                             f"with output_layer=.")
        output = frontier[0]
    return keras.Model(model.input, output, name=f"{model.name}_trunk")


def save_trunk(model: keras.Model, folder: str | os.PathLike, output_layer: str | None = None,
               overwrite: bool = False) -> Path:
    """Writes the shared part of `model` (`trunk_model`) as a preset folder (see the module); returns the folder.
    Written whole or not at all (`atomic_directory`)."""
    import mtl_keras
    trunk = trunk_model(model, output_layer)
    folder = Path(folder)
    vocabularies = [layer.get_vocabulary() for layer in trunk.layers
                    if isinstance(layer, keras.layers.TextVectorization)]
    metadata = {
        "format": TRUNK_FORMAT, "keras_version": keras.__version__, "mtl_keras_version": mtl_keras.__version__,
        "source_model": model.name,
        "inputs": [{"name": tensor.name, "dtype": str(tensor.dtype), "shape": list(tensor.shape[1:])}
                   for tensor in trunk.inputs],
        "output_width": int(trunk.output.shape[-1]),
    }
    with atomic_directory(folder, overwrite=overwrite) as staging:
        (staging / "config.json").write_text(json.dumps(keras.saving.serialize_keras_object(trunk), indent=1))
        trunk.save_weights(staging / "model.weights.h5")
        if vocabularies:
            (staging / "assets").mkdir()
            (staging / "assets" / "vocabulary.txt").write_text("\n".join(vocabularies[0]) + "\n")
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=1))
    return folder


def load_trunk(folder: str | os.PathLike) -> keras.Model:
    """The trunk model `save_trunk` wrote to `folder`, with its weights."""
    if not is_trunk_folder(folder):
        raise ValueError(f"{folder} is not a trunk folder written by save_trunk (no metadata.json of format "
                         f"{TRUNK_FORMAT!r}).")
    folder = Path(folder)
    trunk = keras.saving.deserialize_keras_object(json.loads((folder / "config.json").read_text()))
    trunk.load_weights(folder / "model.weights.h5")
    return trunk
