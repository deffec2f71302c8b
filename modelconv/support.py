"""The support matrix, read from the handler registries (never written by hand)."""

from __future__ import annotations

import importlib
from typing import Any

from modelconv.registry import Registry

#: (title, package whose import registers the handlers, "module:registry")
_SOURCES = [
    ("PyTorch importer: ATen ops", "modelconv.importers.torch",
     "modelconv.importers.torch.aten._base:ATEN_OPS"),
    ("Keras importer: layers", "modelconv.importers.keras",
     "modelconv.importers.keras.common:LAYERS"),
    ("SavedModel graph importer: TensorFlow ops", "modelconv.importers.tf.graph",
     "modelconv.importers.tf.graph.core:OPS"),
    ("TFLite exporter: ONNX ops lowered", "modelconv.exporters.tflite",
     "modelconv.exporters.tflite.registry:LOWERINGS"),
]


def support_matrix() -> dict[str, dict[str, Any]]:
    """The support matrix.

    Returns:
        ``{title: {"supported": [keys], "error": str | None}}`` for every registry; the
        Keras layers' entry also has ``"refused": {class: reason}``.
    """
    import onnx

    matrix: dict[str, dict[str, Any]] = {
        f"ONNX importer/exporter: standard ops (opset <= {onnx.defs.onnx_opset_version()})": {
            "supported": sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain == ""}),
            "error": None,
        }
    }
    for title, package, target in _SOURCES:
        module_name, attr = target.split(":")
        try:
            importlib.import_module(package)
            registry = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            matrix[title] = {"supported": [], "error": f"needs {exc.name}"}
            continue
        assert isinstance(registry, Registry)
        matrix[title] = {"supported": registry.keys(), "error": None}
        if target.endswith(":LOWERINGS"):
            matrix[_BODY_TITLE] = {"supported": _function_body_ops(set(registry.keys())),
                                   "error": None}
        if registry.name == "keras layer":
            from modelconv.importers.keras.refused import REFUSED

            matrix[title]["refused"] = dict(sorted(REFUSED.items()))
    return matrix


_BODY_TITLE = ("TFLite exporter: ONNX ops expanded into their ONNX function body "
               "(converted when every op of the body is)")


def _function_body_ops(lowered: set[str]) -> list[str]:
    """Standard ONNX ops with no TFLite lowering of their own that define a function body."""
    import onnx

    return sorted({s.name for s in onnx.defs.get_all_schemas()
                   if s.domain in ("", "ai.onnx.preview") and s.name not in lowered
                   and (getattr(s, "has_function", False)
                        or getattr(s, "has_context_dependent_function", False))})


def support_markdown() -> str:
    """docs/support.md content."""
    lines = ["# Support matrix", "",
             "Generated from the handler registries by `python -m modelconv.support`; "
             "do not edit by hand.", ""]
    for title, entry in support_matrix().items():
        lines.append(f"## {title} ({len(entry['supported'])})")
        lines.append("")
        if entry["error"]:
            lines.append(f"_unavailable when generated: {entry['error']}_")
        lines.append(", ".join(f"`{k}`" for k in entry["supported"]))
        lines.append("")
        if entry.get("refused"):
            lines += [f"### Keras layer classes refused ({len(entry['refused'])})", "",
                      "| class | why |", "| --- | --- |"]
            lines += [f"| `{k}` | {why} |" for k, why in entry["refused"].items()]
            lines.append("")
    lines += [_core_aten_section(), ""]
    return "\n".join(lines)


def _core_aten_section() -> str:
    try:
        from modelconv.importers.torch.coverage import coverage_markdown
    except ImportError as exc:
        return f"## PyTorch importer: core ATen op set coverage\n\n_unavailable: needs {exc.name}_"
    return coverage_markdown()


if __name__ == "__main__":
    print(support_markdown())
