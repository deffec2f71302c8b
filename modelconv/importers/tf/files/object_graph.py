"""TensorFlow-free reading of the object graphs of SavedModels written by tf.keras / tf_keras
(Keras 2); :mod:`modelconv.importers.tf.keras_route` maps them onto the Keras importer.

Such a folder holds, next to ``saved_model.pb``:

- ``keras_metadata.pb``: a ``SavedMetadata`` proto, ``repeated SavedObject nodes = 1`` with
  ``node_id = 2``, ``node_path = 3`` (``root.layer_with_weights-0``...), ``identifier = 4``
  (``_tf_keras_network``, ``_tf_keras_layer``...) and ``metadata = 5`` (JSON). The root's
  JSON carries the model's Keras config, the same structure a Keras 2 .h5 keeps in
  ``model_config``; every layer's JSON carries its ``name``.
- ``variables/variables.index`` + data shards: a tensor bundle (see
  :mod:`modelconv.importers.tf.files.bundle`) whose ``_CHECKPOINTABLE_OBJECT_GRAPH`` string tensor
  is a ``TrackableObjectGraph``: ``nodes = 1``, each with ``children = 1``
  (``node_id = 1``, ``local_name = 2``) and ``attributes = 2`` (``name = 1``,
  ``full_name = 2``, ``checkpoint_key = 3``).

A layer is found by following its metadata ``node_path`` from the object graph's root
(node 0). Keras also tracks each layer's ``variables`` list (children ``"0"``, ``"1"``...),
which is ``layer.weights`` in order (Conv2D kernel, bias; BatchNormalization gamma, beta,
moving mean, moving variance; Bidirectional forward then backward weights): exactly the
order the Keras layer handlers expect, so they convert the model unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelconv import protowire as pw
from modelconv.errors import ModelLoadError
from modelconv.importers.tf.files.bundle import read_member

KERAS_METADATA = "keras_metadata.pb"
#: classes whose config is a layer graph (subclassed models carry no graph)
GRAPH_NETWORKS = {"Functional", "Sequential", "Model"}


@dataclass
class KerasMetadata:
    """The parsed ``keras_metadata.pb``: metadata JSON by node path."""

    nodes: dict[str, tuple[str, dict[str, Any]]]  # node_path -> (identifier, metadata)

    @property
    def root(self) -> dict[str, Any]:
        """The root object's metadata."""
        return self.nodes.get("root", ("", {}))[1]

    def model_config(self) -> dict[str, Any] | None:
        """``{"class_name", "config"}`` when the root is a graph network, else None."""
        root = self.root
        cfg = root.get("config")
        if root.get("class_name") in GRAPH_NETWORKS and isinstance(cfg, dict) \
                and isinstance(cfg.get("layers"), list):
            return {"class_name": root["class_name"], "config": cfg}
        return None

    def name_paths(self) -> dict[tuple[str, ...], str]:
        """Layer paths of names from the top model (``("block", "dense")``) -> node path."""
        names = {p: str(md.get("name", "")) for p, (ident, md) in self.nodes.items()
                 if "metric" not in ident}
        out: dict[tuple[str, ...], str] = {}
        for node_path in names:
            parts = node_path.split(".")
            if parts[0] != "root" or len(parts) < 2:
                continue
            prefixes = [".".join(parts[: i + 1]) for i in range(1, len(parts))]
            if all(names.get(p) for p in prefixes):
                out.setdefault(tuple(names[p] for p in prefixes), node_path)
        return out


def _decode_json(obj: dict[str, Any]) -> Any:
    """Undo tf.keras' metadata JSON encoding of tuples and shapes (``{"class_name":
    "__tuple__", "items": [...]}``); a .h5 config holds plain lists there."""
    if obj.keys() == {"class_name", "items"} and obj["class_name"] in ("__tuple__",
                                                                       "TensorShape"):
        return obj["items"] if isinstance(obj["items"], list) else obj
    return obj


def read_keras_metadata(folder: Path, display: str, max_bytes: int) -> KerasMetadata | None:
    """Parse ``folder/keras_metadata.pb``.

    Args:
        folder: the SavedModel folder.
        display: how the folder is named in errors.
        max_bytes: the largest metadata file read (the Keras importer's config limit).

    Returns:
        The metadata, or None when the file is absent.

    Raises:
        ModelLoadError: the file is too large, a link, or corrupt.
    """
    if not (folder / KERAS_METADATA).exists() and not (folder / KERAS_METADATA).is_symlink():
        return None
    raw = read_member(folder, KERAS_METADATA, max_bytes, display)
    shown = f"{display}/{KERAS_METADATA}"
    nodes: dict[str, tuple[str, dict[str, Any]]] = {}
    try:
        for item in pw.get_messages(pw.parse(raw), 1):
            obj = pw.parse(item)
            text = pw.get_str(obj, 5)
            meta = json.loads(text, object_hook=_decode_json) if text else {}
            if not isinstance(meta, dict):
                raise ModelLoadError("layer metadata is not a JSON object", path=shown)
            nodes[pw.get_str(obj, 3)] = (pw.get_str(obj, 4), meta)
    except (pw.ProtoError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"corrupt Keras metadata ({type(exc).__name__}: {exc})"[:400],
                             path=shown) from exc
    if "root" not in nodes:
        raise ModelLoadError("Keras metadata has no root object", path=shown)
    return KerasMetadata(nodes)


class ObjectGraph:
    """The checkpoint's ``TrackableObjectGraph``; nodes decoded on first visit."""

    def __init__(self, raw: bytes, display: str):
        self.display = display
        try:
            self._raw = pw.get_messages(pw.parse(raw), 1)
        except pw.ProtoError as exc:
            raise ModelLoadError(f"corrupt checkpoint object graph ({exc})",
                                 path=display) from exc
        if not self._raw:
            raise ModelLoadError("checkpoint object graph is empty", path=display)
        self._nodes: dict[int, tuple[list[tuple[str, int]], dict[str, str]]] = {}

    def node(self, node_id: int) -> tuple[list[tuple[str, int]], dict[str, str]]:
        """``(children as (local_name, node_id), attributes name -> checkpoint key)``."""
        if not 0 <= node_id < len(self._raw):
            raise ModelLoadError(f"checkpoint object graph refers to node {node_id}, it has "
                                 f"{len(self._raw)}", path=self.display)
        if node_id not in self._nodes:
            try:
                msg = pw.parse(self._raw[node_id])
                children = []
                for ref in pw.get_messages(msg, 1):
                    r = pw.parse(ref)
                    children.append((pw.get_str(r, 2), pw.to_int64(pw.get_int(r, 1))))
                attrs = {}
                for att in pw.get_messages(msg, 2):
                    a = pw.parse(att)
                    attrs[pw.get_str(a, 1)] = pw.get_str(a, 3)
            except pw.ProtoError as exc:
                raise ModelLoadError(f"corrupt checkpoint object graph node {node_id} ({exc})",
                                     path=self.display) from exc
            self._nodes[node_id] = (children, attrs)
        return self._nodes[node_id]

    def child(self, node_id: int, name: str) -> int | None:
        """The child of ``node_id`` called ``name`` (first one), if any."""
        for local, child in self.node(node_id)[0]:
            if local == name:
                return child
        return None

    def walk(self, node_path: str) -> int | None:
        """Node id reached from the root by the local names of ``root.a.b``."""
        node = 0
        for name in node_path.split(".")[1:]:
            found = self.child(node, name)
            if found is None:
                return None
            node = found
        return node
