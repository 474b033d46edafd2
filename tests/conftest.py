import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so that MirroredStrategy runs with two replicas on this one machine. It must be set before
# TensorFlow creates its devices, hence here, first.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mtl_keras import Task  # noqa: E402


@pytest.fixture(scope="session")
def two_replicas():
    """One MirroredStrategy over the two logical CPUs for the whole session: several strategies in one process can
    collide in their collective-op instance keys."""
    devices = [device.name for device in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "two logical CPU devices are configured at the top of conftest.py"
    return tf.distribute.MirroredStrategy(devices)


@pytest.fixture
def text_tasks():
    return [
        Task("sentiment", "binary"),
        Task("intensity", "regression"),
        Task("domain", "multiclass", num_classes=3),
    ]


@pytest.fixture
def tiny_texts():
    return np.array(
        ["I love it :)", "terrible, awful service", "the market fell today", "what a great movie!!!",
         "not good at all", "stocks and bonds rallied", "meh", "best phone ever"],
        dtype=object,
    )


@pytest.fixture
def tiny_labels():
    return {
        "sentiment": np.array([1, 0, -1, 1, 0, -1, 0, 1]),
        "intensity": np.array([2.5, -3.0, -0.5, 3.1, -1.2, 0.4, -0.1, 2.9], "float32"),
        "domain": np.array([0, 1, 2, 1, 0, 2, 0, 1]),
    }
