"""The smoke subset: the whole path a user takes, once, on tiny models. README's test command runs it a second time
in a fresh environment with the lowest releases setup.cfg admits (`bash .ci/lowest-versions --smoke`), beside
`test_keras_hooks.py` and the tests marked `smoke` elsewhere (`pytest -m smoke`): every builder built, compiled
with a weighting and a gradient method and fitted on arrays with missing labels; MirroredStrategy on two logical
CPUs with a reshuffling dataset against one device (test_distribute.py); an export reloaded in a fresh process.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import serve_many_in_fresh_process
from mtl_keras import (
    MISSING,
    Task,
    build_tabular_model,
    build_text_model,
    build_vision_model,
    describe_features,
    export_saved_model,
)

pytestmark = pytest.mark.smoke

TEXTS = np.array(["good film", "bad service", "great phone", "awful food", "fine", "the market fell"], dtype=object)


def text_model():
    tasks = [Task("sentiment", "binary"), Task("intensity", "regression")]
    model = build_text_model(tasks, texts=TEXTS, embedding_dim=4, encoder_options={"filters": 2})
    labels = {"sentiment": np.array([1, 0, 1, 0, MISSING, MISSING]), "intensity": np.linspace(-2.0, 2.0, 6)}
    return model, TEXTS, labels


def vision_model():
    tasks = [Task("mask", "segmentation", num_classes=3), Task("kind", "multiclass", num_classes=2)]
    model = build_vision_model(tasks, image_shape=(8, 8, 1), filters=(4, 4), head_hidden_units=())
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("uint8")
    return model, images, {"mask": images[..., 0] % 3, "kind": np.array([0, 1, MISSING, 1])}


def tabular_model():
    tasks = [Task("income", "binary"), Task("hours", "regression")]
    columns = pd.DataFrame({"age": np.linspace(20.0, 60.0, 6), "work": ["a", "b", "a", "c", "b", "a"]})
    model = build_tabular_model(tasks, describe_features(columns), head_hidden_units=(4,))
    return model, columns, {"income": np.array([0, 1, MISSING, 1, 0, 1]), "hours": np.linspace(20.0, 50.0, 6)}


@pytest.mark.parametrize("make", [text_model, vision_model, tabular_model], ids=["text", "vision", "tabular"])
def test_every_builder_compiles_with_a_weighting_and_a_gradient_method_and_fits_with_missing_labels(make):
    model, x, y = make()
    model.compile(optimizer="adam", weighting="uncertainty", gradient="pcgrad")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert {f"{task.name}_weight" for task in model.tasks} <= set(history)


def test_an_export_answers_in_a_fresh_process_as_predict_does(tmp_path):
    model, x, y = text_model()
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    path = export_saved_model(model, tmp_path / "served")
    [served] = serve_many_in_fresh_process([(path, {"text": list(x)})])
    for name, values in model.predict(x, verbose=0).items():
        np.testing.assert_allclose(served[name], values, atol=1e-5, err_msg=name)
