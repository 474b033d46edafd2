"""The sharing layers: shapes, serialization, and the property that defines each one."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_config_round_trip, assert_model_round_trips
from mtl_keras import (
    PLE,
    CrossStitch,
    CrossStitchUnit,
    DenseStack,
    DSelectK,
    Gate,
    HardSharing,
    MMoE,
    SoftSharing,
    StopGradient,
    Task,
    TaskAttention,
    TaskCascade,
    attach_shared_heads,
    expert_gates,
    get_sharing,
)
from mtl_keras.sharing import SHARING, DSelectGate
from mtl_keras.sharing.dselect_k import selector_distribution, smooth_step

NAMES = ["a", "b", "c"]
TASKS = [Task("a", "binary"), Task("b", "regression"), Task("c", "multiclass", num_classes=3)]


def features(n=6, width=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, width)).astype("float32")


def model_with(sharing, width=5, **kwargs):
    inputs = keras.Input((width,), name="x")
    return keras.Model(inputs, attach_shared_heads(inputs, TASKS, sharing, head_hidden_units=(4,), **kwargs))


LAYERS = {
    "hard": lambda names=NAMES, **kwargs: HardSharing(names, units=(8, 4), **kwargs),
    "soft": lambda names=NAMES, **kwargs: SoftSharing(names, units=(8, 4), penalty=0.01, **kwargs),
    "cross_stitch": lambda names=NAMES, **kwargs: CrossStitch(names, units=(8, 4), **kwargs),
    "mmoe": lambda names=NAMES, **kwargs: MMoE(names, num_experts=3, expert_units=(8, 4), gate_hidden_units=(4,),
                                               **kwargs),
    "ple": lambda names=NAMES, **kwargs: PLE(names, num_levels=2, num_shared_experts=2, num_task_experts=1,
                                             expert_units=(4,), **kwargs),
    "mtan": lambda names=NAMES, **kwargs: TaskAttention(names, units=(8, 4), **kwargs),
    # 3 experts: not a power of two, so the unused code and its penalty are exercised too.
    "dselect_k": lambda names=NAMES, **kwargs: DSelectK(names, num_experts=3, k=2, expert_units=(8, 4), **kwargs),
}
BUILDING_BLOCKS = {
    "DenseStack": lambda: DenseStack((6, 3), dropout=0.1),
    "Gate": lambda: Gate(num_experts=4, hidden_units=(5,)),
    "DSelectGate": lambda: DSelectGate(num_experts=5, k=2, gamma=2.0, static=True),
    "StopGradient": lambda: StopGradient(),
}


def tasks_of(kind):
    """TASKS renamed `<kind>_a`, ...: several sharings side by side in one model, each with its own heads."""
    return [Task.from_config({**task.get_config(), "name": f"{kind}_{task.name}"}) for task in TASKS]


def every_sharing_side_by_side(inputs):
    """The outputs of each sharing layer of LAYERS with its own heads, on the same input, as `<kind>_<task>`; each
    layer is named `<kind>_branch`, so that every variable of a kind has a path starting with `<kind>_`. The
    branches share no variable: a step on the sum of their losses is each branch's own step."""
    outputs = {}
    for kind in sorted(LAYERS):
        tasks = tasks_of(kind)
        layer = LAYERS[kind]([task.name for task in tasks], name=f"{kind}_branch")
        outputs.update(attach_shared_heads(inputs, tasks, layer, head_hidden_units=(4,)))
    return outputs


def test_every_registered_sharing_is_tested_here():
    assert sorted(LAYERS) == sorted(SHARING)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_each_sharing_layer_shapes_and_config(kind):
    layer = LAYERS[kind]()
    outputs = layer(features())
    assert sorted(outputs) == NAMES
    assert all(tuple(value.shape) == (6, 4) for value in outputs.values())
    assert_config_round_trip(layer)


@pytest.mark.parametrize("make_layer", list(BUILDING_BLOCKS.values()), ids=list(BUILDING_BLOCKS))
def test_building_block_layers_config_round_trip(make_layer):
    assert_config_round_trip(make_layer())


def test_every_layer_round_trips_in_one_model(tmp_path):
    """One model holds each sharing layer (with its heads), a hidden-link cascade over MMoE, each building block and
    a CrossStitchUnit, side by side on one input: one .keras round trip and one SavedModel export check them all
    (each output is compared under its own name)."""
    inputs = keras.Input((5,), name="x")
    outputs = every_sharing_side_by_side(inputs)
    cascade = TaskCascade(["cascade_c", "cascade_a"], link="hidden", stop_gradient=True, hidden_units=5)
    outputs.update(attach_shared_heads(inputs, tasks_of("cascade"), "mmoe", cascade=cascade, head_hidden_units=(4,),
                                       sharing_options={"num_experts": 2, "expert_units": (4,)}))
    outputs.update({name: make_layer()(inputs) for name, make_layer in BUILDING_BLOCKS.items()})
    unit = CrossStitchUnit(num_tasks=2, self_weight=0.7)
    assert_config_round_trip(unit)
    mixed = unit([keras.layers.Dense(3)(inputs), keras.layers.Dense(3)(inputs)])
    outputs.update({"unit_a": mixed[0], "unit_b": mixed[1]})
    model = keras.Model(inputs, outputs)
    assert len(outputs) == 3 * (len(LAYERS) + 1) + len(BUILDING_BLOCKS) + 2
    assert_model_round_trips(model, features(), tmp_path)


@pytest.mark.parametrize("kind", sorted(LAYERS) + ["cascade"])
def test_sharing_by_name(kind):
    options = {"order": ["c", "a", "b"]} if kind == "cascade" else {}
    model = model_with(kind, sharing_options=options)
    predictions = model(features())
    assert {k: tuple(v.shape) for k, v in predictions.items()} == {"a": (6, 1), "b": (6, 1), "c": (6, 3)}


def test_unknown_sharing_and_mismatched_layer_are_refused():
    with pytest.raises(ValueError, match="Unknown sharing 'moe'"):
        get_sharing("moe", NAMES)
    with pytest.raises(ValueError, match="bad sharing option"):
        get_sharing("mmoe", NAMES, experts=3)
    with pytest.raises(ValueError, match="is for tasks"):
        model_with(MMoE(["a", "b"]))
    with pytest.raises(ValueError, match="needs sharing_options"):
        model_with("cascade")


@pytest.mark.parametrize("kind", ["mmoe", "dselect_k"])
def test_gates_sum_to_one_and_experts_start_different(kind, tmp_path):
    model = model_with(LAYERS[kind]())
    gates = expert_gates(model, features())[model.layers[1].name]
    assert sorted(gates) == NAMES
    for values in gates.values():
        assert values.shape == (6, 3)
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-6)
    experts = model.layers[1].experts
    kernels = [expert.dense_layers[0].kernel.numpy() for expert in experts]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])
    # Gates survive a .keras round trip (the report reads them from the reloaded model too).
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    again = expert_gates(reloaded, features())[reloaded.layers[1].name]
    np.testing.assert_allclose(again["b"], gates["b"], atol=1e-6)


def test_ple_gates_cover_own_and_shared_experts():
    layer = PLE(["a", "b"], num_levels=2, num_shared_experts=2, num_task_experts=3, expert_units=(4,))
    gates = layer.gates(features())
    assert gates["a"].shape == (6, 5)  # 3 own + 2 shared
    assert gates["level1_shared"].shape == (6, 8)  # every expert of level 1: 3 + 3 + 2
    for values in gates.values():
        np.testing.assert_allclose(np.asarray(values).sum(axis=1), 1.0, atol=1e-6)


def test_cross_stitch_unit_mixes_by_alpha():
    unit = CrossStitchUnit(num_tasks=3, self_weight=0.8)
    np.testing.assert_allclose(unit.initial_alpha(), [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], atol=1e-7)
    parts = [np.full((2, 4), value, "float32") for value in (1.0, 2.0, 4.0)]
    mixed = [np.asarray(m) for m in unit(parts)]
    np.testing.assert_allclose(mixed[0], 0.8 * 1 + 0.1 * 2 + 0.1 * 4, rtol=1e-6)
    np.testing.assert_allclose(mixed[2], 0.1 * 1 + 0.1 * 2 + 0.8 * 4, rtol=1e-6)


def test_cross_stitch_at_identity_reproduces_separate_towers():
    layer = CrossStitch(["a", "b"], units=(6, 3), self_weight=1.0)
    x = features()
    stitched = layer(x)
    for name in ("a", "b"):
        tower = DenseStack((6, 3))
        tower.build(x.shape)
        tower.set_weights([w.numpy() for depth in layer.layers_by_task[name] for w in depth.weights])
        np.testing.assert_allclose(np.asarray(stitched[name]), np.asarray(tower(x)), atol=1e-6)
    # The same towers with mixing no longer reproduce them: the identity start is what makes them separate.
    mixed = CrossStitch(["a", "b"], units=(6, 3), self_weight=0.5)
    mixed(x)
    mixed.set_weights([w if w.shape != (2, 2) else np.full((2, 2), 0.5, "float32") for w in layer.get_weights()])
    assert not np.allclose(np.asarray(mixed(x)["a"]), np.asarray(stitched["a"]), atol=1e-3)


def test_soft_sharing_penalty_value_and_gradient_by_hand():
    layer = SoftSharing(["a", "b", "c"], units=(3,), penalty=0.5)
    layer(features())
    kernels = [layer.towers[name].dense_layers[0].kernel for name in "abc"]
    biases = [layer.towers[name].dense_layers[0].bias for name in "abc"]
    for i, bias in enumerate(biases):
        bias.assign(np.full((3,), float(i), "float32"))
    k = [v.numpy() for v in kernels]
    b = [v.numpy() for v in biases]
    expected = 0.5 * sum(np.sum((k[i] - k[j]) ** 2) + np.sum((b[i] - b[j]) ** 2)
                         for i in range(3) for j in range(i + 1, 3))
    with tf.GradientTape() as tape:
        penalty = layer.distance_penalty()
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-5)
    gradient = tape.gradient(penalty, kernels[0])
    # d/dW_a of lambda * sum_{i<j} ||W_i - W_j||^2 = 2 lambda * sum_{j != a} (W_a - W_j)
    np.testing.assert_allclose(gradient.numpy(), 2 * 0.5 * ((k[0] - k[1]) + (k[0] - k[2])), rtol=1e-5, atol=1e-6)


def test_soft_sharing_penalty_reaches_the_model_loss():
    model = model_with(SoftSharing(NAMES, units=(4,), penalty=1.0))
    model(features())
    assert len(model.losses) == 1 and float(model.losses[0]) > 0


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_cascade_stop_gradient_really_stops_gradients(stop_gradient):
    cascade = TaskCascade(["a", "b"], link="prediction", stop_gradient=stop_gradient)
    model = model_with("hard", cascade=cascade)
    first_head = model.get_layer("a_cascade_hidden")
    with tf.GradientTape() as tape:
        outputs = model(features(), training=True)
        second_task_loss = tf.reduce_sum(outputs["b"])
    gradient = tape.gradient(second_task_loss, first_head.kernel)
    if stop_gradient:
        assert gradient is None or np.allclose(gradient.numpy(), 0.0)
    else:
        assert gradient is not None and np.abs(gradient.numpy()).max() > 0


def test_cascade_hidden_link_and_bad_cascades():
    cascade = TaskCascade(["c", "a"], link="hidden", stop_gradient=True, hidden_units=5)
    model = model_with("mmoe", sharing_options={"num_experts": 2, "expert_units": (4,)}, cascade=cascade)
    assert model.get_layer("a_with_link").output.shape == (None, 4 + 5)  # round trip: in the model of every layer
    with pytest.raises(ValueError, match="unknown task"):
        model_with("hard", cascade=TaskCascade(["a", "zz"]))
    with pytest.raises(ValueError, match="link must be"):
        TaskCascade(["a", "b"], link="logits")


def test_task_attention_on_conv_feature_maps(tmp_path):
    images = keras.Input((16, 16, 3))
    first = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(images)
    second = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(first)
    third = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(second)
    attention = TaskAttention(["a", "b"], units=())
    attended = attention([first, second, third])
    assert attended["a"].shape == (None, 4, 4, 8)
    outputs = {name: keras.layers.Dense(1, name=name)(keras.layers.GlobalAveragePooling2D()(value))
               for name, value in attended.items()}
    model = keras.Model(images, outputs)
    x = np.random.default_rng(1).uniform(size=(2, 16, 16, 3)).astype("float32")
    masks = attention.attention_masks([np.asarray(t) for t in keras.Model(images, [first, second, third])(x)])
    assert set(masks) == {"a_0", "a_1", "a_2", "b_0", "b_1", "b_2"}
    assert all(0 < float(np.min(m)) and float(np.max(m)) < 1 for m in masks.values())
    assert_model_round_trips(model, x, tmp_path)
    with pytest.raises(ValueError, match="units=()"):
        TaskAttention(["a"], units=(4,))([first, second])


def test_task_attention_through_an_encoder_and_a_decoder_with_depths(tmp_path):
    """Levels that shrink then grow again (an encoder-decoder): carry pools on the way down and upsamples on the way
    up; a task with a depth stops at that level and has masks for those levels only."""
    images = keras.Input((16, 16, 2))
    encoder0 = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(images)
    encoder1 = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(encoder0)
    encoder2 = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(encoder1)
    decoder1 = keras.layers.Conv2D(6, 3, padding="same")(keras.layers.UpSampling2D()(encoder2))
    decoder0 = keras.layers.Conv2D(4, 3, padding="same")(keras.layers.UpSampling2D()(decoder1))
    levels = [encoder0, encoder1, encoder2, decoder1, decoder0]
    attention = TaskAttention(["pixels", "image"], units=(), depths={"image": 3})
    attended = attention(levels)
    assert attended["pixels"].shape == (None, 16, 16, 4) and attended["image"].shape == (None, 4, 4, 8)
    assert attention.compute_output_shape([tuple(level.shape) for level in levels]) == {
        "pixels": (None, 16, 16, 4), "image": (None, 4, 4, 8)}
    assert attention.resizes == [("pool", (2, 2)), ("pool", (2, 2)), ("up", (8, 8)), ("up", (16, 16))]
    x = np.random.default_rng(2).uniform(size=(2, 16, 16, 2)).astype("float32")
    masks = attention.attention_masks([np.asarray(t) for t in keras.Model(images, levels)(x)])
    assert set(masks) == {f"pixels_{j}" for j in range(5)} | {f"image_{j}" for j in range(3)}
    assert masks["pixels_4"].shape == (2, 16, 16, 4)
    clone = assert_config_round_trip(attention)
    assert clone.depths == {"image": 3}
    model = keras.Model(images, {"pixels": keras.layers.Conv2D(1, 1, name="pixels")(attended["pixels"]),
                                 "image": keras.layers.Dense(1, name="image")(
                                     keras.layers.GlobalAveragePooling2D()(attended["image"]))})
    assert_model_round_trips(model, x, tmp_path)
    with pytest.raises(ValueError, match=r"depths \{'image': 6\} exceed the 5 levels"):
        TaskAttention(["pixels", "image"], units=(), depths={"image": 6})(levels)
    with pytest.raises(ValueError, match="depths maps task names"):
        TaskAttention(["pixels", "image"], units=(), depths={"colour": 2})
    odd = keras.layers.Conv2D(4, 3, padding="same")(keras.layers.Resizing(12, 12)(encoder0))
    with pytest.raises(ValueError, match="whole multiple or a whole fraction"):
        TaskAttention(["a"], units=())([encoder1, odd])


def test_distributed_step_equals_single_device_step_for_every_sharing(two_replicas):
    """One SGD step on two replicas (two logical CPUs) equals one step on one device, same global batch, for each
    sharing layer (all side by side in one model: their branches share no variable, so each takes its own step).
    This also checks that SoftSharing's penalty is counted once, not once per replica."""
    x = features(n=8)
    rng = np.random.default_rng(3)
    labels = {"a": rng.integers(0, 2, (8, 1)).astype("float32"), "b": rng.normal(size=(8, 1)).astype("float32"),
              "c": rng.integers(0, 3, (8, 1)).astype("int32")}
    losses = {"a": "binary_crossentropy", "b": "mse", "c": "sparse_categorical_crossentropy"}
    labels, losses = ({f"{kind}_{task}": table[task] for kind in LAYERS for task in NAMES}
                      for table in (labels, losses))

    def build():
        inputs = keras.Input((5,), name="x")
        return keras.Model(inputs, every_sharing_side_by_side(inputs))

    single = build()
    initial = single.get_weights()
    single.compile(keras.optimizers.SGD(0.5), loss=losses)
    single.fit(x, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    with two_replicas.scope():
        mirrored = build()
        mirrored.set_weights(initial)
        mirrored.compile(keras.optimizers.SGD(0.5), loss=losses)
    mirrored.fit(x, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    paths = [variable.path for variable in single.weights]
    assert paths == [variable.path for variable in mirrored.weights]
    for kind in LAYERS:
        moved = max(np.abs(after - before).max() for path, after, before in zip(paths, single.get_weights(), initial,
                                                                                   strict=True)
                    if path.startswith(f"{kind}_"))
        assert moved > 1e-4, kind
    for path, after_single, after_mirrored in zip(paths, single.get_weights(), mirrored.get_weights(), strict=True):
        np.testing.assert_allclose(after_mirrored, after_single, atol=2e-5, err_msg=path)


def test_cross_stitch_unit_refuses_the_wrong_number_of_tensors():
    inputs = keras.Input((5,))
    first, second = keras.layers.Dense(3)(inputs), keras.layers.Dense(3)(inputs)
    with pytest.raises(ValueError, match="expected a list of 2 tensors"):
        CrossStitchUnit(num_tasks=2)([first, second, first])


# --- DSelect-k -------------------------------------------------------------------------------------------------------


def numpy_smooth_step(t, gamma=1.0):
    t = np.asarray(t, "float64")
    return np.where(t <= -gamma / 2, 0.0, np.where(t >= gamma / 2, 1.0, -2 / gamma**3 * t**3 + 1.5 / gamma * t + 0.5))


def numpy_entropy(r):
    return -np.sum(r * np.log(r + 1e-6), axis=-1)


def static_gate(num_experts, z, alpha, **kwargs):
    """A static DSelect-k gate with the given logits z (k, m) and selector weights alpha (k,)."""
    gate = DSelectGate(num_experts, k=len(z), static=True, **kwargs)
    gate.build((None, 2))
    gate.z.assign(np.asarray(z, "float32"))
    if len(z) > 1:
        gate.alpha.assign(np.asarray(alpha, "float32"))
    return gate


def set_gate_logits(gate, z_kernel, z_bias):
    gate.z_logits.kernel.assign(np.asarray(z_kernel, "float32"))
    gate.z_logits.bias.assign(np.asarray(z_bias, "float32"))


def test_smooth_step_by_hand():
    # gamma = 1: S(0.25) = -2/64 + 3/8 + 1/2, S(-0.1) = 2/1000 - 3/20 + 1/2, S(0.4) = -0.128 + 0.6 + 0.5.
    t = np.array([-3.0, -0.5, -0.25, -0.1, 0.0, 0.25, 0.4, 0.5, 0.5001, 7.0], "float32")
    np.testing.assert_allclose(np.asarray(smooth_step(t)),
                               [0, 0, 0.15625, 0.352, 0.5, 0.84375, 0.972, 1, 1, 1], atol=1e-6)
    # gamma = 2 stretches the cubic over [-1, 1]: S(0.5) = -2/8 * 1/8 + 3/4 * 1/2 + 1/2.
    np.testing.assert_allclose(np.asarray(smooth_step(np.float32([-1.0, 0.5, 0.9]), gamma=2.0)),
                               [0, 0.84375, -0.18225 + 0.675 + 0.5], atol=1e-6)
    # Exactly 0 and 1 outside [-gamma/2, gamma/2] (a sigmoid never is), and so no gradient there.
    outside = np.float32([-100.0, -1.0, -0.5, 0.5, 1.0, 100.0])
    assert np.asarray(smooth_step(outside)).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    t = tf.constant([-0.7, 0.6, -0.3, 0.2])
    with tf.GradientTape() as tape:
        tape.watch(t)
        values = smooth_step(t)
    # S'(t) = -6 t^2 + 3/2 inside, 0 outside.
    np.testing.assert_allclose(tape.gradient(values, t).numpy(), [0, 0, -6 * 0.09 + 1.5, -6 * 0.04 + 1.5], atol=1e-6)


def test_selector_distributions_and_gate_by_hand():
    z, alpha = [[0.25, -0.1], [0.0, 0.4]], [0.3, -0.2]
    s = [(0.84375, 0.352), (0.5, 0.972)]  # S(z), from the smooth step's values above
    weights = np.exp(alpha) / np.exp(alpha).sum()
    # K = 4 (m = 2): expert j has code j in binary, the first logit deciding the most significant bit.
    by_hand = np.array([[(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b] for a, b in s])
    r, reachable = selector_distribution(np.float32(z), num_experts=4)
    np.testing.assert_allclose(np.asarray(r), by_hand, atol=1e-6)
    np.testing.assert_allclose(np.asarray(reachable), 1.0, atol=1e-6)
    gate = np.asarray(static_gate(4, z, alpha)(np.zeros((3, 2), "float32")))
    np.testing.assert_allclose(gate, np.tile(weights @ by_hand, (3, 1)), atol=1e-6)
    np.testing.assert_allclose(gate.sum(axis=1), 1.0, atol=1e-6)
    # K = 3: code 3 (binary 11) is no expert; its mass a * b is spread evenly over the three.
    by_hand = np.array([[(1 - a) * (1 - b) + a * b / 3, (1 - a) * b + a * b / 3, a * (1 - b) + a * b / 3]
                        for a, b in s])
    r, reachable = selector_distribution(np.float32(z), num_experts=3)
    np.testing.assert_allclose(np.asarray(r), by_hand, atol=1e-6)
    np.testing.assert_allclose(np.asarray(reachable), [1 - a * b for a, b in s], atol=1e-6)
    gate = np.asarray(static_gate(3, z, alpha)(np.zeros((3, 2), "float32")))
    np.testing.assert_allclose(gate, np.tile(weights @ by_hand, (3, 1)), atol=1e-6)
    np.testing.assert_allclose(gate.sum(axis=1), 1.0, atol=1e-6)


def test_per_example_gate_by_hand():
    """z = x W + b for each example: different examples, different selections."""
    gate = DSelectGate(num_experts=4, k=1)
    x = features(n=4, width=3)
    gate(x)
    kernel, bias = np.float32([[0.2, -0.1], [0.0, 0.3], [-0.1, 0.1]]), np.float32([0.05, -0.02])
    set_gate_logits(gate, kernel, bias)
    a, b = numpy_smooth_step(x @ kernel + bias).T
    by_hand = np.stack([(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b], axis=1)
    values = np.asarray(gate(x))
    np.testing.assert_allclose(values, by_hand, atol=1e-6)
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(values[0], values[1])


def test_saturated_selector_picks_exactly_one_expert():
    layer = DSelectK(["a", "b"], num_experts=4, k=1, expert_units=(3,))
    x = features()
    layer(x)
    # Logits outside (-1/2, 1/2) for every example (a zero kernel): task a encodes 10 = expert 2, task b 01 = expert
    # 1, the latter right on the edges, where S is already exactly 0 and 1.
    set_gate_logits(layer.task_gates["a"], np.zeros((5, 2)), [5.0, -5.0])
    set_gate_logits(layer.task_gates["b"], np.zeros((5, 2)), [-0.5, 0.5])
    gates = {name: np.asarray(values) for name, values in layer.gates(x).items()}
    np.testing.assert_array_equal(gates["a"], np.tile([0.0, 0.0, 1.0, 0.0], (6, 1)))
    np.testing.assert_array_equal(gates["b"], np.tile([0.0, 1.0, 0.0, 0.0], (6, 1)))
    with tf.GradientTape() as tape:
        outputs = layer(x)
        selected = tf.reduce_sum(outputs["a"])
    np.testing.assert_array_equal(np.asarray(outputs["a"]), np.asarray(layer.experts[2](x)))
    np.testing.assert_array_equal(np.asarray(outputs["b"]), np.asarray(layer.experts[1](x)))
    # The choice is made: no gradient reaches the saturated selector's logits.
    kernel = layer.task_gates["a"].z_logits.kernel
    np.testing.assert_array_equal(tape.gradient(selected, kernel).numpy(), 0.0)


def test_a_selector_saturated_on_an_unused_code_gives_a_uniform_gate():
    # K = 5 needs 3 bits; codes 5, 6 and 7 are no expert. A selector set on 111 spreads its mass evenly (no NaN).
    gate = static_gate(5, [[1.0, 1.0, 1.0]], alpha=None)
    values = np.asarray(gate(np.zeros((2, 2), "float32"), training=True))
    np.testing.assert_allclose(values, 0.2, atol=1e-7)
    assert np.isfinite([float(loss) for loss in gate.losses]).all()


def test_entropy_regularizer_and_reachability_penalty_by_hand():
    z, alpha = [[0.25, -0.1], [0.0, 0.4]], [0.3, -0.2]
    s = [(0.84375, 0.352), (0.5, 0.972)]
    gate = static_gate(4, z, alpha, entropy_regularization=0.1)
    inputs = np.zeros((3, 2), "float32")
    gate(inputs)
    assert gate.losses == []  # only in training
    gate(inputs, training=True)
    r = np.array([[(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b] for a, b in s])
    (loss,) = gate.losses
    np.testing.assert_allclose(float(loss), 0.1 * numpy_entropy(r).sum(), rtol=1e-5)
    # K = 3: the entropy of the spread distributions, and sum_i (1 / reachable_i - 1) for the mass on code 11.
    gate = static_gate(3, z, alpha, entropy_regularization=0.1)
    gate(inputs, training=True)
    r = np.array([[(1 - a) * (1 - b) + a * b / 3, (1 - a) * b + a * b / 3, a * (1 - b) + a * b / 3] for a, b in s])
    entropy_loss, penalty = (float(loss) for loss in gate.losses)
    np.testing.assert_allclose(entropy_loss, 0.1 * numpy_entropy(r).sum(), rtol=1e-5)
    np.testing.assert_allclose(penalty, sum(1 / (1 - a * b) - 1 for a, b in s), rtol=1e-5)
    # Per example: the mean over examples of each example's summed entropies.
    gate = DSelectGate(num_experts=4, k=1, entropy_regularization=0.5)
    x = features(n=4, width=3)
    gate(x)
    kernel, bias = np.float32([[0.2, -0.1], [0.0, 0.3], [-0.1, 0.1]]), np.float32([0.05, -0.02])
    set_gate_logits(gate, kernel, bias)
    gate(x, training=True)
    a, b = numpy_smooth_step(x @ kernel + bias).T
    r = np.stack([(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b], axis=1)
    np.testing.assert_allclose(float(gate.losses[0]), 0.5 * numpy_entropy(r).mean(), rtol=1e-5)
    # In a model: one term per task's gate, in training only; none at all with entropy_regularization=0.
    model = model_with(DSelectK(NAMES, num_experts=4, k=2, expert_units=(4,), entropy_regularization=0.1))
    model(features(), training=True)
    assert len(model.losses) == 3 and all(float(loss) > 0 for loss in model.losses)
    model(features())
    assert model.losses == []
    model = model_with(DSelectK(NAMES, num_experts=4, k=2, expert_units=(4,), entropy_regularization=0.0))
    model(features(), training=True)
    assert model.losses == []


def test_dselect_k_static_gates_round_trip(tmp_path):
    layer = DSelectK(NAMES, num_experts=5, k=2, expert_units=(4,), static_gates=True, gamma=0.5)
    model = model_with(layer)
    assert_config_round_trip(layer)
    assert_model_round_trips(model, features(), tmp_path)
    gates = expert_gates(model, features())[layer.name]
    for values in gates.values():  # the same gate for every example
        np.testing.assert_allclose(values, np.tile(values[:1], (6, 1)), atol=1e-7)
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    ({"k": 0}, "k must be between 1 and num_experts=4, got k=0"),
    ({"k": 5}, "k must be between 1 and num_experts=4, got k=5"),
    ({"num_experts": 1, "k": 1}, r"num_experts must be >= 2 .*got num_experts=1"),
    ({"gamma": 0.0}, "gamma must be > 0, got gamma=0.0"),
    ({"gamma": -1}, "gamma must be > 0, got gamma=-1"),
    ({"entropy_regularization": -0.1}, "entropy_regularization must be >= 0, got entropy_regularization=-0.1"),
])
def test_dselect_k_argument_errors_name_the_argument_and_value(arguments, message):
    with pytest.raises(ValueError, match=f"^DSelectK: {message}"):
        DSelectK(NAMES, **{"num_experts": 4, **arguments})
    with pytest.raises(ValueError, match=f"^DSelectGate: {message}"):
        DSelectGate(**{"num_experts": 4, **arguments})
