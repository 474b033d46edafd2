"""Bad input refused before any training step, with a message naming the thing and what was expected: task names
that collide, NumPy scalars as weights, text that is not UTF-8 or not text, images in [0, 1] given to `predict`,
label maps of another size than their images."""

import numpy as np
import pytest

from mtl_keras import (
    InputError,
    LabelError,
    Task,
    build_tabular_model,
    build_text_model,
    build_vision_model,
    describe_features,
)
from mtl_keras.datasets.pipeline import make_image_dataset, make_text_dataset
from mtl_keras.tasks import as_task_dict
from mtl_keras.training.compile import resolve_loss_weights


@pytest.mark.parametrize("names, message", [
    (["b", "val_b"], r"the loss of task 'val_b' and the loss of task 'b' on validation data .* 'val_b_loss'"),
    (["val"], r"the loss of task 'val' and the total loss on validation data .* 'val_loss'"),
    (["a_b", "c", "a", "b_c"], r"gradient cosine of tasks 'a' and 'b_c' and the gradient cosine of tasks 'a_b' and "
                               r"'c' .* 'cosine_a_b_c'"),
])
def test_task_names_whose_log_keys_collide_are_refused(names, message):
    with pytest.raises(ValueError, match=message):
        as_task_dict([Task(name, "binary") for name in names])
    as_task_dict([Task("b", "binary"), Task("valid_b", "binary")])  # a prefix alone collides with nothing


@pytest.mark.parametrize("build", [
    lambda: build_text_model([Task("text", "binary")], texts=["a b"]),
    lambda: build_vision_model([Task("image", "binary")], image_shape=(8, 8, 1), filters=(4,)),
    lambda: build_tabular_model([Task("age", "binary")], describe_features({"age": np.array([20.0, 30.0])})),
])
def test_a_task_named_like_the_models_input_is_refused(build):
    with pytest.raises(ValueError, match=r"Task '(text|image|age)' has the name of the model's input"):
        build()


def test_numpy_scalars_are_loss_weights_and_bools_are_not():
    tasks = as_task_dict([Task("a", "binary"), Task("b", "regression")])
    assert resolve_loss_weights(tasks, {"a": np.float32(0.5), "b": np.int64(2)}) == {"a": 0.5, "b": 2.0}
    with pytest.raises(ValueError, match=r"loss_weights\['a'\] must be a finite number >= 0, got True"):
        resolve_loss_weights(tasks, {"a": True})


def test_text_that_is_not_utf8_or_not_text_names_the_item(text_tasks):
    labels = {"sentiment": [1, 0], "intensity": [1.0, -1.0], "domain": [0, 1]}
    with pytest.raises(InputError, match=r"texts: item 1 is bytes that are not UTF-8 \(invalid start byte at byte 2"):
        make_text_dataset([b"ok", b"no\xff"], labels, text_tasks)
    with pytest.raises(InputError, match=r"build_text_model: texts: item 1 is bytes that are not UTF-8"):
        build_text_model(text_tasks, texts=[b"ok", b"no\xff"])
    with pytest.raises(InputError, match=r"build_text_model: texts: the text model takes strings; item 0 is int"):
        build_text_model(text_tasks, texts=[1, 2, 3])


def test_predict_checks_arrays_as_the_dataset_helpers_do(text_tasks):
    text_model = build_text_model(text_tasks, texts=["good film", "bad"], embedding_dim=4,
                                  encoder_options={"filters": 2})
    with pytest.raises(InputError, match=r"model input 'text': the text model takes strings; item 0 is int"):
        text_model.predict(np.array([1, 2, 3]), verbose=0)
    assert text_model.predict(["good"], verbose=0)["domain"].shape == (1, 3)
    vision_model = build_vision_model([Task("kind", "multiclass", num_classes=3)], image_shape=(8, 8, 1),
                                      filters=(4,))
    scaled = np.random.default_rng(0).random((2, 8, 8, 1))
    with pytest.raises(InputError, match=r"model input 'image': .* whole numbers in 0..255; .*scaled to \[0, 1\]"):
        vision_model.predict(scaled, verbose=0)
    # uint8 values held as floats follow the documented convention: the same outputs as the uint8 images.
    whole = np.round(scaled * 255)
    np.testing.assert_allclose(vision_model.predict(whole, verbose=0)["kind"],
                               vision_model.predict(whole.astype("uint8"), verbose=0)["kind"], atol=1e-6)


def test_label_maps_of_another_size_than_the_images_fail_before_training():
    task = Task("mask", "segmentation", num_classes=3)
    images = np.zeros((2, 8, 8, 1), "uint8")
    with pytest.raises(LabelError, match=r"Task 'mask' \(segmentation\): the label maps are 4x4 .* images are 8x8"):
        make_image_dataset(images, {"mask": np.zeros((2, 4, 4), "int32")}, [task], (8, 8, 1))
    make_image_dataset(images, {"mask": np.zeros((2, 8, 8), "int32")}, [task], (8, 8, 1))
