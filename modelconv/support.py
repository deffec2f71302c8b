"""The support matrix, read from the handler registries (never written by hand)."""

from __future__ import annotations

import importlib
from typing import Any

from modelconv.registry import Registry

#: (title, module that defines/imports the registry's handlers)
_SOURCES = [
    ("PyTorch importer: ATen ops", "modelconv.importers.torch"),
    ("Keras importer: layers", "modelconv.importers.keras"),
    ("TFLite exporter: ONNX ops lowered", "modelconv.exporters.tflite"),
]


def _registries(module: Any) -> list[Registry[Any]]:
    found = []
    for value in vars(module).values():
        if isinstance(value, Registry):
            found.append(value)
    return found


def support_matrix() -> dict[str, dict[str, Any]]:
    """{title: {"supported": [keys], "error": str|None}} for every registry."""
    import onnx

    matrix: dict[str, dict[str, Any]] = {
        f"ONNX importer/exporter: standard ops (opset <= {onnx.defs.onnx_opset_version()})": {
            "supported": sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain == ""}),
            "error": None,
        }
    }
    for title, module_name in _SOURCES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            matrix[title] = {"supported": [], "error": f"needs {exc.name}"}
            continue
        keys: set[str] = set()
        for reg in _registries(module):
            keys.update(reg.keys())
        matrix[title] = {"supported": sorted(keys), "error": None}
    return matrix


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
    return "\n".join(lines)


if __name__ == "__main__":
    print(support_markdown())
