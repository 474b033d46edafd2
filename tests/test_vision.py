"""Vision: scenes and MultiFashion generators, the vision builder, its metrics, the job, export and predict."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_model_round_trips, fit_on_one_device_and_mirrored, train_in_process
from mtl_keras import InputError, LabelError, Task, build_vision_model, compute_metrics
from mtl_keras.cli import main
from mtl_keras.datasets.fashion_mnist import load_fashion_mnist
from mtl_keras.datasets.multifashion import compose_pair, load_multifashion, make_multifashion
from mtl_keras.datasets.pipeline import as_image_array, make_image_dataset
from mtl_keras.datasets.scenes import SceneConfig, generate_scene, generate_scenes, scene_tasks
from mtl_keras.metrics import BoxIoU, ExactMatch, PixelAccuracy, SegmentationIoU


@pytest.fixture(scope="module")
def items():
    (x_train, y_train), _ = load_fashion_mnist()
    return np.array(x_train[:500]), np.array(y_train[:500])


@pytest.fixture(scope="module")
def scenes(items):
    return generate_scenes(*items, num_scenes=40, seed=3)


# --- scenes ------------------------------------------------------------------------------------------------------
def test_scenes_are_deterministic_and_each_scene_regenerates_alone(items, scenes):
    again = generate_scenes(*items, num_scenes=40, seed=3)
    for key in scenes:
        np.testing.assert_array_equal(again[key], scenes[key], err_msg=key)
    alone = generate_scene(*items, seed=3, index=17, config=SceneConfig())
    np.testing.assert_array_equal(alone["image"], scenes["image"][17])
    other = generate_scenes(*items, num_scenes=40, seed=4)
    assert not np.array_equal(other["mask"], scenes["mask"])


def test_every_item_pixel_of_the_mask_shows_the_item_not_the_clutter(items, scenes):
    clean = generate_scenes(*items, num_scenes=40, seed=3, config=SceneConfig(clutter=False))
    np.testing.assert_array_equal(clean["mask"], scenes["mask"])  # the clutter draws from its own stream
    on_item = scenes["mask"] > 0
    np.testing.assert_array_equal(scenes["image"][..., 0][on_item], clean["image"][..., 0][on_item])
    # Without clutter, the mask is exactly the lit pixels: nothing of an item is left out of the mask or added.
    np.testing.assert_array_equal(clean["mask"] > 0, clean["image"][..., 0] > 0)


def test_mask_labels_agree_with_presence_count_and_sources(items, scenes):
    _, labels = items
    for index in range(len(scenes["mask"])):
        sources = scenes["source"][index][scenes["source"][index] >= 0]
        assert scenes["count"][index, 0] == len(sources) >= 1
        visible = set(np.unique(scenes["mask"][index])) - {0}
        assert visible == {int(labels[s]) + 1 for s in sources}
        np.testing.assert_array_equal(np.flatnonzero(scenes["presence"][index]), sorted(c - 1 for c in visible))
    assert set(scenes["count"][:, 0]) == {1.0, 2.0, 3.0}


def test_box_of_a_single_item_is_the_bounding_box_of_its_mask(scenes):
    singles = np.flatnonzero(scenes["count"][:, 0] == 1)
    assert len(singles) > 3
    for index in singles:
        rows, cols = np.nonzero(scenes["mask"][index])
        expected = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]) / 64
        np.testing.assert_allclose(scenes["box"][index], expected)


def test_items_stay_mostly_visible(items):
    config = SceneConfig(clutter=False, min_items=3, max_items=3, max_overlap=0.2)
    x, y = items
    scenes = generate_scenes(x, y, num_scenes=30, seed=1, config=config)
    placed = scenes["source"] >= 0
    assert placed.sum() > 60  # most scenes found room for three items
    assert scenes["visible"][placed].min() >= 0.8 and (scenes["visible"][placed] < 1).any()
    assert (scenes["visible"][~placed] == 0).all()
    # Each item's visible pixels are its class's pixels in the mask when classes differ within a scene.
    for index in range(30):
        sources = scenes["source"][index][placed[index]]
        if len(set(y[sources])) == len(sources):
            sizes = [(scenes["mask"][index] == 1 + y[s]).sum() for s in sources]
            assert min(sizes) > 0


def test_clutter_cannot_be_thresholded_away(scenes):
    image, on_item = scenes["image"][..., 0], scenes["mask"] > 0
    # The best single threshold, scored by balanced accuracy (items vs background), stays far from a segmentation.
    best = max(((image[on_item] >= t).mean() + (image[~on_item] < t).mean()) / 2 for t in range(256))
    assert 0.5 < best < 0.8


def test_scene_config_is_checked():
    with pytest.raises(ValueError, match="min_items"):
        SceneConfig(min_items=0)
    with pytest.raises(ValueError, match="item_size"):
        SceneConfig(item_size=(30, 80))


# --- MultiFashion --------------------------------------------------------------------------------------------------
def test_multifashion_pair_by_hand():
    left, right = np.full((28, 28), 100, np.uint8), np.full((28, 28), 200, np.uint8)
    image = compose_pair(left, right)
    assert image.shape == (28, 28) and image.dtype == np.uint8
    # Canvas pixel (r, c) lands near (r, c) * 28 / 36: top-left item only, both (max), bottom-right item only.
    assert image[0, 0] == 100 and image[14, 14] == 200 and image[23, 23] == 200
    assert image[0, -1] == image[-1, 0] == image[-1, -1] == 0  # corners of the canvas neither item covers


def test_multifashion_labels_follow_the_items_and_splits_are_deterministic(items):
    x, y = items
    images, left, right = make_multifashion(x, y, num_examples=6, seed=2)
    rng = np.random.default_rng([2, 4])
    first, second = rng.choice(len(x), size=2, replace=False)
    assert (left[4], right[4]) == (y[first], y[second])
    np.testing.assert_array_equal(images[4, ..., 0], compose_pair(x[first], x[second]))
    splits = load_multifashion(num_train=20, num_validation=5, num_test=5, seed=1)
    again = load_multifashion(num_train=20, num_validation=5, num_test=5, seed=1)
    np.testing.assert_array_equal(splits.test.inputs, again.test.inputs)
    assert [t.name for t in splits.tasks] == ["left", "right"]


# --- metrics -------------------------------------------------------------------------------------------------------
def _one_hot(mask, classes):
    return np.eye(classes, dtype="float32")[mask]


def test_segmentation_iou_and_pixel_accuracy_by_hand():
    truth = np.array([[[0, 0, 1, 1], [2, 2, 2, 0]]])  # 1 x 2 x 4
    predicted = np.array([[[0, 1, 1, 1], [2, 2, 0, 0]]])
    # class 0: TP 2 (two of three), FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1 -> 2/3; class 2: TP 2, FN 1 -> 2/3
    iou = SegmentationIoU(3, class_ids=[1, 2])
    iou.update_state(truth, _one_hot(predicted, 3))
    np.testing.assert_allclose(np.asarray(iou.per_class()), [0.5, 2 / 3, 2 / 3])
    assert float(iou.result()) == pytest.approx(2 / 3)
    accuracy = PixelAccuracy(3)
    accuracy.update_state(truth, _one_hot(predicted, 3))
    assert float(accuracy.result()) == pytest.approx(6 / 8)
    # A second, unlabelled example (weight 0) changes nothing.
    iou.update_state(np.zeros((1, 2, 4), int), _one_hot(np.ones((1, 2, 4), int), 3), sample_weight=[0.0])
    assert float(iou.result()) == pytest.approx(2 / 3)


def test_exact_match_and_box_iou_by_hand():
    match = ExactMatch()
    match.update_state([[2.0], [3.0], [1.0]], [[2.4], [2.4], [0.6]], sample_weight=[1.0, 1.0, 0.0])
    assert float(match.result()) == pytest.approx(0.5)
    boxes = BoxIoU()
    truth = [[0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.4, 0.4]]
    predicted = [[0.0, 0.0, 0.5, 0.25], [0.4, 0.4, 0.2, 0.2]]  # half the box; an inverted (empty) box
    boxes.update_state(truth, predicted)
    assert float(boxes.result()) == pytest.approx((0.5 + 0.0) / 2)


def test_scene_tasks_metrics_from_compute_metrics(scenes):
    tasks = scene_tasks()
    labels = {"segmentation": scenes["mask"], "presence": scenes["presence"], "count": scenes["count"],
              "box": scenes["box"]}
    perfect = {"segmentation": _one_hot(scenes["mask"], 11), "presence": scenes["presence"],
               "count": scenes["count"] + 0.3, "box": scenes["box"]}
    metrics = compute_metrics(tasks, perfect, labels)
    assert metrics["segmentation"]["mean_iou"] == pytest.approx(1.0)
    assert metrics["segmentation"]["background_iou"] == pytest.approx(1.0)
    present = {name for name, value in metrics["segmentation"]["iou_per_class"].items() if value == 1.0}
    assert "background" in present and len(present) >= 5
    assert metrics["presence"]["f1_micro"] == pytest.approx(1.0)
    assert metrics["count"]["exact_match"] == 1.0 and metrics["count"]["mae"] == pytest.approx(0.3)
    assert metrics["box"]["box_iou"] == pytest.approx(1.0)
    # Every item pixel called background: item IoUs 0, background IoU = background share of all pixels.
    blind = dict(perfect, segmentation=_one_hot(np.zeros_like(scenes["mask"]), 11))
    metrics = compute_metrics(tasks, blind, labels)
    assert metrics["segmentation"]["mean_iou"] == 0.0
    assert metrics["segmentation"]["background_iou"] == pytest.approx((scenes["mask"] == 0).mean())


# --- builder -------------------------------------------------------------------------------------------------------
EVERY_KIND = [
    Task("mask", "segmentation", num_classes=4, background_class=0),
    Task("kind", "multiclass", num_classes=3),
    Task("tags", "multilabel", num_classes=5),
    Task("lit", "binary"),
    Task("box", "regression", units=4, metrics=["box_iou"]),
]


@pytest.mark.parametrize("backbone", ["unet", "cnn"])
def test_builder_shapes_for_every_head_kind_and_round_trips(backbone, tmp_path):
    model = build_vision_model(EVERY_KIND, image_shape=(16, 16, 1), backbone=backbone, filters=(4, 8, 8))
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1)).astype(np.uint8)
    outputs = model.predict(images, verbose=0)
    assert {k: v.shape for k, v in outputs.items()} == {
        "mask": (3, 16, 16, 4), "kind": (3, 3), "tags": (3, 5), "lit": (3, 1), "box": (3, 4)}
    np.testing.assert_allclose(outputs["mask"].sum(axis=-1), 1.0, atol=1e-5)
    assert model.input.dtype == "uint8"
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    # Called directly (eagerly): the same outputs as `predict`, without tracing a predict function for the clone.
    np.testing.assert_allclose(np.asarray(clone(images)["box"]), outputs["box"], atol=1e-6)
    assert_model_round_trips(model, images, tmp_path, signature=[tf.TensorSpec([None, 16, 16, 1], tf.uint8)])


@pytest.mark.parametrize("sharing, backbone", [("mtan", "unet"), ("cross_stitch", "unet"), ("cross_stitch", "cnn")])
def test_vision_sharing_builds_every_head_kind_and_round_trips(sharing, backbone, tmp_path):
    model = build_vision_model(EVERY_KIND, image_shape=(16, 16, 1), backbone=backbone, filters=(4, 8),
                               sharing=sharing)
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1)).astype(np.uint8)
    outputs = model.predict(images, verbose=0)
    assert {k: v.shape for k, v in outputs.items()} == {
        "mask": (3, 16, 16, 4), "kind": (3, 3), "tags": (3, 5), "lit": (3, 1), "box": (3, 4)}
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(clone(images)["kind"]), outputs["kind"], atol=1e-6)
    assert_model_round_trips(model, images, tmp_path, signature=[tf.TensorSpec([None, 16, 16, 1], tf.uint8)])
    if sharing == "mtan":
        masks = set(model.get_layer("mtan_sharing").masks)
        # Per-pixel tasks attend both encoder stages and the decoder's; image-level tasks the encoder only.
        assert {f"mask_{j}" for j in range(3)} <= masks and "kind_1" in masks and "kind_2" not in masks
    else:
        units = [layer.name for layer in model.layers if layer.name.startswith("stitch_")]
        assert units == (["stitch_encoder0", "stitch_encoder1", "stitch_decoder0"] if backbone == "unet"
                         else ["stitch_encoder0", "stitch_encoder1", "stitch_pixels"])


def test_cross_stitch_with_self_weight_one_starts_as_separate_trunks():
    """The units' diagonal starts at self_weight: at 1.0 the trunks start apart (one task's trunk leaves the other's
    outputs alone), below 1.0 they mix from the first step."""
    tasks = [Task("mask", "segmentation", num_classes=3), Task("kind", "multiclass", num_classes=3)]
    images = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 1)).astype(np.uint8)
    for self_weight, mixed in [(1.0, False), (0.9, True)]:
        model = build_vision_model(tasks, image_shape=(16, 16, 1), filters=(4, 8), sharing="cross_stitch",
                                   sharing_options={"self_weight": self_weight})
        before = np.asarray(model(images)["kind"])
        for layer in model.layers:
            if layer.name.startswith("mask_encoder") and layer.weights:
                layer.set_weights([w + 0.5 for w in layer.get_weights()])
        changed = not np.allclose(np.asarray(model(images)["kind"]), before, atol=1e-6)
        assert changed == mixed, self_weight


def test_builder_checks_its_arguments():
    with pytest.raises(ValueError, match="multiples of 4"):
        build_vision_model(EVERY_KIND, image_shape=(18, 18, 1), filters=(4, 8, 8))
    with pytest.raises(ValueError, match="backbone"):
        build_vision_model(EVERY_KIND, image_shape=(16, 16, 1), backbone="resnet")
    with pytest.raises(ValueError, match=r"sharing='mmoe' is not a sharing of a convolutional trunk"):
        build_vision_model(EVERY_KIND, image_shape=(16, 16, 1), sharing="mmoe")
    with pytest.raises(ValueError, match=r"sharing='mtan': bad sharing option\(s\) \['self_weight'\]"):
        build_vision_model(EVERY_KIND, image_shape=(16, 16, 1), sharing="mtan", sharing_options={"self_weight": 1})
    with pytest.raises(ValueError, match="sharing='mtan' needs one of the built-in trunks"):
        build_vision_model(EVERY_KIND, image_shape=(32, 32, 3), backbone="resnet_18_imagenet", sharing="mtan")
    with pytest.raises(ValueError, match="background_class"):
        Task("kind", "multiclass", num_classes=3, background_class=0)


def test_bad_images_and_masks_are_refused_before_training():
    with pytest.raises(InputError, match=r"3 channels where the model takes 1"):
        as_image_array(np.zeros((2, 8, 8, 3), np.uint8), (8, 8, 1))
    with pytest.raises(InputError, match=r"whole numbers in 0\.\.255; got 300"):
        as_image_array(np.full((2, 8, 8), 300.0), (8, 8, 1))
    with pytest.raises(InputError, match=r"scaled to \[0, 1\]"):
        as_image_array(np.full((2, 8, 8), 0.5), (8, 8, 1))
    np.testing.assert_array_equal(as_image_array(np.full((1, 8, 8), 255.0), (8, 8, 1)), 255)
    task = Task("mask", "segmentation", num_classes=3)
    bad_mask = np.zeros((2, 8, 8), np.int64)
    bad_mask[1, 2, 3] = 3
    with pytest.raises(LabelError, match=r"Task 'mask': label 3 is out of range"):
        make_image_dataset(np.zeros((2, 8, 8), np.uint8), {"mask": bad_mask}, [task], (8, 8, 1))


@pytest.mark.parametrize("sharing", ["hard", "mtan", "cross_stitch"])
def test_vision_model_trains_under_mirrored_strategy_like_on_one_device(sharing, two_replicas):
    tasks = [Task("mask", "segmentation", num_classes=3), Task("count", "regression")]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 8, 8, 1)).astype(np.uint8)
    labels = {"mask": rng.integers(0, 3, (8, 8, 8)), "count": rng.normal(size=(8, 1)).astype("float32")}
    dataset = make_image_dataset(images, labels, tasks, (8, 8, 1), batch_size=8)

    def build():
        # Synchronised batch normalisation: statistics of the global batch, as on one device.
        return build_vision_model(tasks, image_shape=(8, 8, 1), filters=(4, 4), location_channels=2,
                                  normalization="synchronized", dropout=0.0, sharing=sharing)

    initial, single, mirrored = fit_on_one_device_and_mirrored(build, tasks, dataset, two_replicas, 0.1)
    # The model's own weights come first; compiling appends the balancing state (weighting, log means).
    trained = [w for w, w0 in zip(single.get_weights()[:len(initial)], initial, strict=True)
               if not np.array_equal(w, w0)]
    assert trained, "one step changed no weight"
    for after_single, after_mirrored in zip(single.get_weights(), mirrored.get_weights(), strict=True):
        np.testing.assert_allclose(after_mirrored, after_single, atol=2e-5)


# --- job, export, predict ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    # Five trainings (the multi-task model and one baseline per task), each costing its tracing whatever the data:
    # the smallest U-Net (two stages) and the fewest scenes (32 per split, the least a split takes) do.
    folder = tmp_path_factory.mktemp("runs") / "vision"
    stdout = train_in_process("vision", "--limit", "32", "--epochs", "1", "--filters", "4,8", "--baselines",
                              "--output", str(folder), "--quiet")
    return folder, stdout


def test_vision_job_writes_a_run_folder_with_baselines(vision_run):
    folder, stdout = vision_run
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["test"]) == set(metrics["single_task_test"]) == {"segmentation", "presence", "count", "box"}
    assert set(metrics["test"]["segmentation"]) == {"pixel_accuracy", "mean_iou", "background_iou", "labelled",
                                                    "iou_per_class"}
    assert metrics["test"]["count"]["labelled"] == 32  # --limit 32: max(32 // 5, 32) test scenes
    assert "delta_m_percent" in metrics or "delta_m_error" in metrics
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["filters"] == [4, 8] and config["config"]["loss_weights"] == {"box": 10.0}
    assert "mean_iou" in stdout


def test_vision_predict_writes_a_mask_png_and_refuses_wrong_sizes(vision_run, tmp_path, capsys):
    folder, _ = vision_run
    scene = generate_scenes(*load_fashion_mnist()[1], num_scenes=1, seed=9)["image"][0]
    image = tmp_path / "scene.png"
    image.write_bytes(tf.io.encode_png(scene).numpy())
    assert main(["predict", str(folder), str(image)]) == 0
    out = capsys.readouterr().out
    mask = tf.io.decode_png((tmp_path / "scene.segmentation.png").read_bytes()).numpy()
    assert mask.shape == (64, 64, 3)
    assert "scene.segmentation.png" in out and "presence" in out and "count" in out
    small = tmp_path / "small.png"
    small.write_bytes(tf.io.encode_png(scene[:32, :32]).numpy())
    assert main(["predict", str(folder), str(small)]) == 2
    assert "the image is 32x32 (height x width); the model takes 64x64" in capsys.readouterr().err


def test_vision_evaluate_regenerates_the_test_scenes_and_matches_the_record(vision_run, capsys):
    folder, _ = vision_run
    assert main(["evaluate", str(folder), "--saved-model"]) == 0
    recorded = json.loads((folder / "metrics.json").read_text())["test"]["segmentation"]["mean_iou"]
    line = next(line for line in capsys.readouterr().out.splitlines() if "mean_iou" in line)
    recomputed = float(line.split()[1])  # "mean_iou  RECOMPUTED   (recorded: RECORDED)"
    assert recomputed == pytest.approx(recorded, abs=1e-4)


def test_multifashion_job_end_to_end(tmp_path):
    folder = tmp_path / "mf"
    train_in_process("vision", "--dataset", "multifashion", "--limit", "32", "--epochs", "1", "--filters", "4,8",
                     "--sharing", "cross_stitch", "--sharing-option", "self_weight=0.8", "--output", str(folder),
                     "--quiet")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["test"]) == {"left", "right"} and 0.0 <= metrics["test"]["left"]["accuracy"] <= 1.0
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["sharing"] == "cross_stitch" and config["sharing_options"] == {"self_weight": 0.8}
    model = keras.saving.load_model(folder / "model.keras")
    assert model.get_layer("stitch_encoder0").get_config()["self_weight"] == 0.8
