"""Which operations a SavedModel's graph holds, and a refusal of those that reach outside the model.

A SavedModel is a program: loading and calling it runs whatever graph it holds, and TensorFlow has ops that write
files (`WriteFile`, summary writers, `DatasetToTFRecord`...) or run Python in the calling process (`PyFunc`,
`EagerPyFunc`). `mtl-keras predict` refuses a SavedModel holding one of them (`check_saved_model_ops`) unless asked
not to; the checkpoint writer every SavedModel carries (`SaveV2`, `MergeV2Checkpoints`, in the function its saver
names) is allowed there and nowhere else. This is a check of a run folder's graph, not a sandbox: run folders must
come from someone you trust.

Example:

>>> sorted(UNSAFE_OPS)[:3]
['CreateSummaryDbWriter', 'CreateSummaryFileWriter', 'DatasetToTFRecord']
"""

from __future__ import annotations

import os
from pathlib import Path

# Ops that write files or run Python code, wherever they are in the graph.
UNSAFE_OPS = frozenset({
    "WriteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary", "WriteRawProtoSummary",
    "ImportEvent", "FlushSummaryWriter", "DatasetToTFRecord", "SaveDataset", "SaveDatasetV2",
})
# Checkpoint writers: every SavedModel's saver holds them; anywhere else they write files like the ops above.
CHECKPOINT_WRITERS = frozenset({"SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints"})


class UnsafeSavedModelError(ValueError):
    """A SavedModel whose graph holds ops that write files or run Python code."""


def _called_functions(nodes) -> set[str]:
    """Names of the library functions that `nodes` call (through any function-valued attribute)."""
    names = set()
    for node in nodes:
        for attr in node.attr.values():
            if attr.HasField("func"):
                names.add(attr.func.name)
            if attr.HasField("list"):
                names.update(function.name for function in attr.list.func)
    return names


def unsafe_ops(path: str | os.PathLike) -> dict[str, list[str]]:
    """The unsafe ops of the SavedModel at `path`: op type -> names of the functions (or "graph") holding it."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    found: dict[str, set[str]] = {}
    for graph in saved.meta_graphs:
        library = {function.signature.name: function for function in graph.graph_def.library.function}
        save_node = graph.saver_def.save_tensor_name.split(":")[0]
        # Functions reachable from anything but the saver's save node: checkpoint writers are unsafe there.
        roots = {node.name for node in graph.graph_def.node} - {save_node}
        pending = _called_functions(node for node in graph.graph_def.node if node.name in roots)
        pending |= set(graph.object_graph_def.concrete_functions)
        outside_saver: set[str] = set()
        while pending:
            name = pending.pop()
            if name in outside_saver or name not in library:
                continue
            outside_saver.add(name)
            pending |= _called_functions(library[name].node_def)
        places = [("graph", node.op, node.name in roots) for node in graph.graph_def.node]
        places += [(name, node.op, name in outside_saver) for name, function in library.items()
                   for node in function.node_def]
        for place, op, outside in places:
            if op in UNSAFE_OPS or (outside and op in CHECKPOINT_WRITERS):
                found.setdefault(op, set()).add(place)
    return {op: sorted(places) for op, places in sorted(found.items())}


def check_saved_model_ops(path: str | os.PathLike) -> None:
    """Raises `UnsafeSavedModelError` naming each op that writes files or runs Python code in the SavedModel."""
    found = unsafe_ops(path)
    if found:
        listed = "; ".join(f"{op} (in {', '.join(places[:3])})" for op, places in found.items())
        raise UnsafeSavedModelError(
            f"{path} holds operations that write files or run Python code, which a model exported by mtl_keras "
            f"never does: {listed}. Only run a SavedModel from someone you trust; if you trust this one, pass "
            f"--allow-unsafe-ops.")
