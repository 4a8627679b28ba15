"""What a model file says about itself that makes it unusable, however often it is loaded.

:class:`BadModelFile` marks such a failure: at start the daemon exits 2 (systemd does not
restart it: a restart reads the same file), and a swap to it is refused while the old model
keeps serving. Checks here read the file only; nothing in it is loaded or run.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edged.backends.base import BackendError
from edged.models import ModelError, ensure_inside


class BadModelFile(BackendError):
    """The model file itself is unusable (its metadata, its external data): not retried."""


def _may_name_external_data(path: Path) -> bool:
    """False when the file cannot reference external data: every reference is a ``location``
    entry, so those 8 bytes appear in any such file. Lets the inference process skip importing
    ``onnx`` (18 MB it would keep) for the usual self-contained model."""
    try:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"location") >= 0
    except (OSError, ValueError):  # unreadable or empty: ONNX Runtime says why when it loads
        return False


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    """Tensors in a node's attributes (Constant values), subgraphs (If, Loop, Scan) included."""
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        for sparse in [attr.sparse_tensor, *attr.sparse_tensors]:
            yield from (sparse.values, sparse.indices)
        for graph in [attr.g, *attr.graphs]:
            yield from _graph_tensors(graph)


def external_data_locations(path: Path) -> list[str]:
    """Every external-data ``location`` an ONNX file names (its weights are not read)."""
    if not _may_name_external_data(path):
        return []
    import onnx  # only for the rare file that may use external data (see above)

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a protobuf onnx can read: ONNX Runtime reports it when it loads
        return []
    tensors = [*_graph_tensors(model.graph)]
    for function in model.functions:
        for node in function.node:
            tensors.extend(_node_tensors(node))
    return [e.value for t in tensors for e in t.external_data if e.key == "location"]


def check_external_data(path: Path) -> None:
    """Refuse (:class:`BadModelFile`) an ONNX model whose external data lies outside its own
    directory: ``ensure_inside`` confines the ``.onnx`` path, and this confines what it names
    (``../../etc/shadow``, an absolute path, a symlink out), before ONNX Runtime opens any."""
    root = path.resolve().parent
    for location in external_data_locations(path):
        if not location or os.path.isabs(location):
            raise BadModelFile(
                f"{path.name}: external data location {location!r} is not a path relative to "
                "the model's directory; refused"
            )
        try:
            ensure_inside(root / location, root)
        except ModelError:
            raise BadModelFile(
                f"{path.name}: external data location {location!r} resolves outside the "
                f"model's directory {root}; refused"
            ) from None
