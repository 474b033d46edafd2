"""Choosing and building a tf.distribute strategy, and the few facts about it that training needs.

`get_strategy(name)` turns a name into a strategy:

- `"none"` or `"default"`: TensorFlow's default strategy (one device; its scope changes nothing);
- `"mirrored"`: `MirroredStrategy` over the local GPUs (one CPU when there are none), or over listed devices,
  `"mirrored:/cpu:0,/cpu:1"`;
- `"multi_worker"`: `MultiWorkerMirroredStrategy` for the cluster that the `TF_CONFIG` environment variable
  describes (checked first: a missing or malformed `TF_CONFIG` is an error that says what is expected);
- `"auto"`: `"multi_worker"` when `TF_CONFIG` describes more than one task, else `"mirrored"` when there is more
  than one GPU, else the default strategy.

A strategy is built once per name and process and then reused: two `MirroredStrategy` objects in one process can
collide in their collective-op keys, and a `MultiWorkerMirroredStrategy` can be created only once.

`split_cpu(n)` splits the CPU into `n` logical devices, so that `"mirrored:/cpu:0,/cpu:1"` runs two replicas on one
machine (for tests and experiments: the replicas share the same cores). `local_cluster(n)` writes the `TF_CONFIG` of
`n` worker processes on this machine (free ports on 127.0.0.1).

Example:

>>> strategy = get_strategy("none")
>>> strategy.num_replicas_in_sync
1
>>> with strategy.scope():          # models, optimizers and metrics are created under the scope
...     pass
>>> is_multi_worker(strategy), is_chief(strategy)
(False, True)
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping

import tensorflow as tf

STRATEGY_NAMES = ("none", "default", "mirrored", "multi_worker", "auto")

_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def get_strategy(name: str | tf.distribute.Strategy | None = "none") -> tf.distribute.Strategy:
    """The strategy `name` stands for (see the module docstring); a strategy object is returned as it is.

    >>> get_strategy("default") is tf.distribute.get_strategy()
    True
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    spec = "none" if name is None else str(name).strip()
    kind, _, devices = spec.partition(":")
    kind = kind.lower().replace("-", "_")
    if kind not in STRATEGY_NAMES:
        raise ValueError(f"Unknown strategy {name!r}: expected one of {', '.join(STRATEGY_NAMES)} "
                         f"(or 'mirrored:DEVICE,DEVICE,...', e.g. 'mirrored:/cpu:0,/cpu:1').")
    if devices and kind != "mirrored":
        raise ValueError(f"Strategy {name!r}: only 'mirrored' takes a device list, e.g. 'mirrored:/gpu:0,/gpu:1'.")
    if kind == "auto":
        kind = _auto_kind()
    if kind in ("none", "default"):
        return tf.distribute.get_strategy()
    key = f"{kind}:{','.join(device.strip().lower() for device in devices.split(',') if device.strip())}"
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _mirrored(devices) if kind == "mirrored" else _multi_worker()
    return _STRATEGIES[key]


def _auto_kind() -> str:
    config = os.environ.get("TF_CONFIG")
    if config:
        cluster = read_tf_config(config)["cluster"]
        if sum(len(addresses) for addresses in cluster.values()) > 1:
            return "multi_worker"
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def _mirrored(devices: str) -> tf.distribute.MirroredStrategy:
    if not devices:
        return tf.distribute.MirroredStrategy()
    names = [device.strip() for device in devices.split(",") if device.strip()]
    available = {_canonical(device.name): device.name for device in tf.config.list_logical_devices()}
    unknown = [device for device in names if _canonical(device) not in available]
    if unknown:
        raise ValueError(f"Strategy 'mirrored:{devices}': no device {unknown}; this process has "
                         f"{sorted(available.values())} (split the CPU with mtl_keras.distribute.split_cpu(n) "
                         f"before TensorFlow starts, for several CPU devices).")
    return tf.distribute.MirroredStrategy([available[_canonical(device)] for device in names])


def _canonical(device: str) -> str:
    """'/cpu:0', '/device:CPU:0' and '/job:localhost/replica:0/task:0/device:CPU:0' all name CPU:0."""
    spec = tf.DeviceSpec.from_string(device)
    return f"{(spec.device_type or '').upper()}:{spec.device_index or 0}"


def _multi_worker() -> tf.distribute.MultiWorkerMirroredStrategy:
    read_tf_config()  # a clear error before TensorFlow's own
    return tf.distribute.MultiWorkerMirroredStrategy()


def read_tf_config(text: str | None = None) -> dict:
    """The `TF_CONFIG` cluster description (`text`, by default the environment variable), checked.

    Expected: `{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}` (a `"chief"` list
    beside the workers is allowed).

    >>> read_tf_config('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 0}}')["task"]
    {'type': 'worker', 'index': 0}
    """
    example = ('\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}\' '
               '(mtl_keras.distribute.local_cluster(n) writes one per local worker)')
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise ValueError(f"Strategy 'multi_worker' needs the TF_CONFIG environment variable, which is not set: "
                         f"every worker process sets it to the cluster and its own place in it, e.g. {example}.")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}); expected e.g. {example}.") from None
    cluster = config.get("cluster") if isinstance(config, Mapping) else None
    task = config.get("task") if isinstance(config, Mapping) else None
    if not isinstance(cluster, Mapping) or not cluster.get("worker") and not cluster.get("chief"):
        raise ValueError(f"TF_CONFIG has no cluster of workers (got {text!r}); expected e.g. {example}.")
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ValueError(f"TF_CONFIG cluster[{role!r}] must be a list of 'host:port' strings, got {addresses!r}.")
    if not isinstance(task, Mapping) or task.get("type") not in cluster:
        raise ValueError(f"TF_CONFIG task must name this process's role, one of {sorted(cluster)} (got {task!r}); "
                         f"expected e.g. {example}.")
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG task index must be an integer from 0 to {len(cluster[task['type']]) - 1} for "
                         f"role {task['type']!r}, got {index!r}.")
    return dict(config)


def split_cpu(count: int = 2) -> list[str]:
    """Splits the first CPU into `count` logical devices and returns their names, e.g. for
    `get_strategy("mirrored:/cpu:0,/cpu:1")`. Call it first, before TensorFlow creates its devices (before any
    tensor, model or strategy); calling it again with the same count is harmless.

    The logical devices share the machine's cores: they make multi-replica code testable on one machine, they do
    not make it faster.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return [device.name for device in tf.config.list_logical_devices("CPU")]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()
                                                         for _ in range(count)])
    except RuntimeError:
        existing = len(tf.config.list_logical_devices("CPU"))
        raise RuntimeError(f"split_cpu({count}) must run before TensorFlow initialises its devices, and this process "
                           f"already has {existing} logical CPU device(s): call it at the start of the program, "
                           f"before creating any tensor, model or strategy.") from None
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` (Keras' own `fit` fails on one that spans several
    processes, keras-team/keras#20585; `mtl_keras.training.loop` trains there)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process is the one that writes files (backups, progress bars) for the whole cluster."""
    return not is_multi_worker(strategy) or bool(strategy.extended.should_checkpoint)


def local_cluster(num_workers: int, host: str = "127.0.0.1") -> list[str]:
    """The `TF_CONFIG` of each of `num_workers` worker processes on this machine, on free ports.

    >>> configs = local_cluster(2)
    >>> [json.loads(config)["task"]["index"] for config in configs]
    [0, 1]
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}.")
    sockets = [socket.socket() for _ in range(num_workers)]
    try:
        for sock in sockets:  # all bound at once, so that no two get the same port
            sock.bind((host, 0))
        addresses = [f"{host}:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
            for index in range(num_workers)]
