"""Format detection by content and the registry of importers/exporters.

Importers and exporters are referenced by dotted names and imported only when used,
so ``import modelconv`` stays free of torch and tensorflow.

Contract:
- importer ``fn(src, options) -> SourceModel``
- exporter ``fn(model, dst, options) -> list[Path]`` (writes atomically)
- target runner ``fn(path, options) -> Runner`` (to verify the written file)
"""

from __future__ import annotations

import importlib
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelconv.errors import ModelLoadError, UnsupportedFormatError

if TYPE_CHECKING:
    import onnx_ir as ir

    from modelconv.verification.runners import Runner


@dataclass
class SourceModel:
    """What an importer returns: the IR plus a way to run the original for verification."""

    model: ir.Model
    format: str
    path: str | None = None
    #: builds a runner of the *source* model (lazily: it may import a framework)
    make_runner: Callable[[], Runner] | None = None
    #: why the source cannot be run here (e.g. keras not installed), if so
    runner_unavailable: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: integer input value ranges [lo, hi) for verification inputs (token ids)
    int_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class FormatInfo:
    """One row of the registry."""

    name: str
    description: str
    extensions: tuple[str, ...]
    importer: str | None = None  # "module:function"
    exporter: str | None = None
    runner: str | None = None  # runs a file of this format (verification)
    extra: str = ""  # pip extra that enables it

    def load(self, which: str) -> Callable[..., Any]:
        """Import and return the importer/exporter/runner function."""
        target = getattr(self, which)
        if target is None:
            raise UnsupportedFormatError(f"modelconv has no {which} for format '{self.name}'")
        module_name, attr_path = target.split(":")
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
        return obj


FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in [
        FormatInfo(
            "onnx", "ONNX model (.onnx, optional external data)", (".onnx",),
            importer="modelconv.importers.onnx:import_onnx",
            exporter="modelconv.exporters.onnx:export_onnx",
            runner="modelconv.verification.runners:OnnxRuntimeRunner.from_path",
        ),
        FormatInfo(
            "tflite", "TFLite / LiteRT flatbuffer", (".tflite",),
            importer=None,
            exporter="modelconv.exporters.tflite:export_tflite",
            runner="modelconv.verification.runners_litert:LiteRTRunner.from_path",
            extra="tflite",
        ),
        FormatInfo(
            "keras-h5", "Keras HDF5 model (Keras 2 or Keras 3)", (".h5", ".hdf5"),
            importer="modelconv.importers.keras:import_keras", extra="keras",
        ),
        FormatInfo(
            "keras", "Keras 3 .keras archive", (".keras",),
            importer="modelconv.importers.keras:import_keras", extra="keras",
        ),
        FormatInfo(
            "savedmodel", "TensorFlow SavedModel folder", (),
            importer="modelconv.importers.tf:import_savedmodel", extra="tf",
        ),
        FormatInfo(
            "torch-module", "in-memory torch.nn.Module (Python API)", (),
            importer="modelconv.importers.torch:import_torch_module", extra="torch",
        ),
        FormatInfo(
            "state_dict", "PyTorch state_dict (.pt/.pth) plus the architecture",
            (".pt", ".pth", ".bin", ".ckpt"),
            importer="modelconv.importers.torch:import_state_dict", extra="torch",
        ),
        FormatInfo(
            "safetensors", "safetensors weights plus the architecture", (".safetensors",),
            importer="modelconv.importers.torch:import_safetensors", extra="torch",
        ),
        FormatInfo(
            "torchscript", "TorchScript archive (needs trust_code)", (".pt", ".pth", ".ts", ".jit"),
            importer="modelconv.importers.torch:import_torchscript", extra="torch",
        ),
        FormatInfo(
            "pt2", "torch.export ExportedProgram (.pt2)", (".pt2",),
            importer="modelconv.importers.torch:import_pt2", extra="torch",
        ),
    ]
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
# First byte of a serialized ModelProto: the key of one of its fields
# (ir_version=1, producer_name=2, producer_version=3, domain=4, model_version=5,
# doc_string=6, graph=7, opset_import=8, metadata_props=14, training_info=20,
# functions=25, configuration=26).
_ONNX_FIRST_BYTES = {0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA, 0xD2}


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name of the format of the file/folder at ``path``, decided by its content."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError("file not found", path=str(p), hint="Check the path")
    if p.is_dir():
        if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
            return "savedmodel"
        raise UnsupportedFormatError(
            "folder is not a TensorFlow SavedModel (no saved_model.pb)", path=str(p)
        )
    size = p.stat().st_size
    if size == 0:
        raise ModelLoadError("file is empty (0 bytes)", path=str(p),
                             hint="The download or save was probably interrupted")
    with open(p, "rb") as fh:
        head = fh.read(64)
    if head.startswith(_HDF5_MAGIC):
        return "keras-h5"
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _detect_zip(p)
    if len(head) >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= size - 8:
            return "safetensors"
        if header_len > 0 and not _looks_like_text(head[:8]):  # a length, not "12345678{"
            too_big = header_len >= _MAX_SAFETENSORS_HEADER
            raise ModelLoadError(
                f"safetensors header declares {header_len} bytes but the file has only "
                f"{size - 8} after the length ({'corrupt' if too_big else 'truncated'})",
                path=str(p), hint="Re-download or re-save the weights")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "state_dict"  # legacy (non-zip) torch.save pickle; loaded weights_only
    if text_pickle_globals(p) is not None:
        return "state_dict"  # a protocol 0/1 pickle: the torch loader says what it holds
    if head[0] in _ONNX_FIRST_BYTES:
        return "onnx"
    what = "text" if _looks_like_text(head) else "unrecognised binary data"
    raise UnsupportedFormatError(
        f"content is {what}, not a model format modelconv reads", path=str(p),
        hint="Supported: " + ", ".join(sorted(n for n, f in FORMATS.items()
                                               if f.importer and n != "torch-module")),
    )


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


_PICKLE_SCAN_BYTES = 1 << 16


def text_pickle_globals(path: str | os.PathLike[str]) -> list[str] | None:
    """The globals a protocol 0/1 pickle references, or None if ``path`` is not one.

    Protocol 0/1 pickles have no PROTO header; their first 64 KiB must parse as pickle
    opcodes (the scan may stop inside a long pickle).

    Args:
        path: the file.

    Returns:
        ``module.name`` of every GLOBAL/INST opcode seen (empty for plain data), or None.
    """
    with open(path, "rb") as fh:
        data = fh.read(_PICKLE_SCAN_BYTES)
    if not data or data[:1] == b"\x80":
        return None
    return pickle_globals(data, cut=len(data) == _PICKLE_SCAN_BYTES)


def pickle_globals(data: bytes, *, cut: bool = False) -> list[str] | None:
    """``module.name`` of the globals the pickle(s) in ``data`` reference, None if no pickle.

    The opcodes are only parsed (``pickletools.genops``), never executed. Parsing stops at
    the first bytes after a complete pickle that are not one (legacy torch files: several
    pickles, then tensor data).

    Args:
        data: the bytes.
        cut: ``data`` is the start of a longer stream (a first pickle may be incomplete).

    Returns:
        The names (empty for plain data), or None when ``data`` does not start with a pickle.
    """
    import io
    import pickletools

    found: list[str] = []
    count = stops = 0
    stream = io.BytesIO(data)
    strings: list[str] = []  # STACK_GLOBAL (protocol 4+) takes module and name from strings
    try:
        while stream.tell() < len(data):
            for op, arg, _pos in pickletools.genops(stream):
                count += 1
                if op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif isinstance(arg, str):
                    strings.append(arg)
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
            stops += 1
    except (ValueError, EOFError, UnicodeDecodeError, struct.error):
        if not stops and not (cut and count >= 16):
            return None
    return found if count >= 2 else None


def _detect_zip(p: Path) -> str:
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelLoadError(f"corrupt zip archive ({exc})", path=str(p)) from exc
    base = {n.split("/")[-1] for n in names}
    if "config.json" in names and "model.weights.h5" in names:
        return "keras"
    # torch archives put everything under one top folder: <root>/<member>
    top = {tuple(n.split("/")[1:]) for n in names if "/" in n}
    if any(t in {("archive_format",), ("serialized_exported_program.json",)} for t in top) or \
            any(len(t) == 2 and t[0] == "models" and t[1].endswith(".json") for t in top):
        return "pt2"
    if "constants.pkl" in base or any(t[:1] == ("code",) for t in top):
        return "torchscript"
    if "data.pkl" in base:
        return "state_dict"
    raise UnsupportedFormatError(
        "zip archive is neither a .keras model, a torch checkpoint, TorchScript nor .pt2",
        path=str(p),
    )


def formats_for_extension(path: str | os.PathLike[str]) -> set[str]:
    """Formats whose usual extension ``path`` has (empty when unknown)."""
    suffix = Path(path).suffix.lower()
    return {f.name for f in FORMATS.values() if suffix and suffix in f.extensions}


def resolve_source_format(path: str | os.PathLike[str], declared: str | None) -> str:
    """Detect the source format and check it agrees with ``declared`` and the extension."""
    detected = detect_format(path)
    if declared is not None:
        if declared not in FORMATS:
            raise UnsupportedFormatError(f"unknown format '{declared}'",
                                         hint="See `modelconv formats`")
        # a state_dict-looking zip may be given as safetensors etc.; content must agree
        compatible = {declared} | ({"state_dict", "torchscript"} if declared in
                                   {"state_dict", "torchscript"} else set())
        if detected not in compatible:
            raise UnsupportedFormatError(
                f"declared format '{declared}' but the content is '{detected}'", path=str(path)
            )
        return detected if declared in {"state_dict", "torchscript"} else declared
    by_ext = formats_for_extension(path)
    if by_ext and detected not in by_ext:
        raise UnsupportedFormatError(
            f"file extension '{Path(path).suffix}' says {'/'.join(sorted(by_ext))} but the "
            f"content is '{detected}' ({FORMATS[detected].description})",
            path=str(path),
            hint=f"Rename the file or pass --from {detected} if the content is what you meant",
        )
    return detected


def resolve_target_format(path: str | os.PathLike[str], declared: str | None) -> str:
    """The output format from ``declared`` or the output file's extension."""
    name = declared
    if name is None:
        matches = [n for n in formats_for_extension(path) if FORMATS[n].exporter]
        if not matches:
            raise UnsupportedFormatError(
                f"cannot tell the output format from '{Path(path).name}'",
                hint="Use a .onnx or .tflite extension or pass --to",
            )
        name = matches[0]
    if name not in FORMATS or FORMATS[name].exporter is None:
        writable = sorted(n for n, f in FORMATS.items() if f.exporter)
        raise UnsupportedFormatError(
            f"modelconv cannot write '{name}'", hint="It writes: " + ", ".join(writable)
        )
    return name
