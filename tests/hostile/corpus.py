"""Builders for hostile model files. Each case writes its files into a folder and says
which ModelconvError subclass the CLI must report.

A case's builder returns the CLI arguments (after ``modelconv``) to run. Payloads that
would execute code only ever try to create ``MARKER`` inside the case folder, so a test
can prove they never ran.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CNN = FIXTURES / "onnx" / "small_cnn.onnx"
MARKER = "PWNED"


@dataclass(frozen=True)
class Case:
    """One hostile input."""

    name: str
    build: Callable[[Path], list[str]]
    error: str  # expected ModelconvError subclass name
    needs: tuple[str, ...] = ()  # importable modules the case needs


CASES: list[Case] = []


def case(name: str, error: str, needs: tuple[str, ...] = ()) -> Callable[
        [Callable[[Path], list[str]]], Callable[[Path], list[str]]]:
    """Register a builder as a corpus case."""

    def deco(fn: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
        CASES.append(Case(name, fn, error, needs))
        return fn

    return deco


def convert_args(src: Path, d: Path, out: str = "out.onnx", *extra: str) -> list[str]:
    """CLI arguments converting ``src`` to ``d/out``."""
    return ["convert", str(src), str(d / out), "--quiet", *extra]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _random(n: int, seed: int, first: bytes = b"\xff") -> bytes:
    return first + np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


class _RunsCode:
    """Pickles into a call that would create the marker file."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.folder / MARKER}",))


# -- empty / random / truncated / text, per format ------------------------------------
for _ext in ("onnx", "h5", "keras", "pt", "safetensors", "pt2"):
    def _empty(d: Path, ext: str = _ext) -> list[str]:
        return convert_args(_write(d / f"empty.{ext}", b""), d)

    CASES.append(Case(f"empty-{_ext}", _empty, "ModelLoadError"))

for _ext in ("onnx", "pt", "pt2", "tflite"):
    def _rand(d: Path, ext: str = _ext) -> list[str]:
        return convert_args(_write(d / f"random.{ext}", _random(4096, 1)), d)

    CASES.append(Case(f"random-bytes-{_ext}", _rand, "UnsupportedFormatError"))


@case("random-after-hdf5-magic", "ModelLoadError", needs=("h5py",))
def _hdf5_random(d: Path) -> list[str]:
    return convert_args(_write(d / "m.h5", b"\x89HDF\r\n\x1a\n" + _random(4096, 2)), d)


@case("random-after-zip-magic", "ModelLoadError")
def _zip_random(d: Path) -> list[str]:
    return convert_args(_write(d / "m.keras", b"PK\x03\x04" + _random(4096, 3)), d)


@case("safetensors-bad-header", "ModelLoadError", needs=("torch", "safetensors"))
def _st_bad(d: Path) -> list[str]:
    header = b"{not json at all!!}"
    return convert_args(_write(d / "w.safetensors", struct.pack("<Q", len(header)) + header),
                        d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp")


@case("truncated-onnx", "ModelLoadError")
def _trunc_onnx(d: Path) -> list[str]:
    return convert_args(_write(d / "t.onnx", CNN.read_bytes()[:1500]), d)


@case("text-file-as-onnx", "UnsupportedFormatError")
def _text(d: Path) -> list[str]:
    return convert_args(_write(d / "notes.onnx", b"name: resnet\nlayers: 50\n"), d)


@case("hdf5-named-onnx", "UnsupportedFormatError")
def _wrong_ext(d: Path) -> list[str]:
    return convert_args(_write(d / "m.onnx", b"\x89HDF\r\n\x1a\n" + b"\0" * 512), d)


@case("onnx-named-h5", "UnsupportedFormatError")
def _wrong_ext2(d: Path) -> list[str]:
    return convert_args(_write(d / "m.h5", CNN.read_bytes()), d)


# -- pickles ------------------------------------------------------------------------
@case("pickle-runs-code-zip", "UnsafeModelError", needs=("torch",))
def _pickle_zip(d: Path) -> list[str]:
    import torch

    torch.save({"w": _RunsCode(d)}, d / "evil.pt")
    return convert_args(d / "evil.pt", d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp")


@case("pickle-runs-code-legacy", "UnsafeModelError", needs=("torch",))
def _pickle_legacy(d: Path) -> list[str]:
    _write(d / "evil.pt", pickle.dumps(_RunsCode(d), protocol=2))
    return convert_args(d / "evil.pt", d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp")


@case("state-dict-non-tensor-globals", "UnsafeModelError", needs=("torch",))
def _globals(d: Path) -> list[str]:
    import argparse

    import torch

    torch.save({"w": argparse.Namespace(a=1)}, d / "g.pt")
    return convert_args(d / "g.pt", d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp")


# -- ONNX -----------------------------------------------------------------------------
def external_data_model(folder: Path, location: str) -> Path:
    """An ONNX model whose one weight lives in external file ``location``."""
    tensor = numpy_helper.from_array(np.ones((4,), np.float32), "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _write(folder / "model.onnx", model.SerializeToString())


@case("onnx-external-data-parent-dir", "UnsafeModelError")
def _ext_parent(d: Path) -> list[str]:
    (d / "m").mkdir()
    _write(d / "secret.bin", b"\0" * 16)
    return convert_args(external_data_model(d / "m", "../secret.bin"), d)


@case("onnx-external-data-absolute", "UnsafeModelError")
def _ext_abs(d: Path) -> list[str]:
    return convert_args(external_data_model(d, str(d / "abs.bin")), d)


@case("onnx-external-data-symlink", "UnsafeModelError")
def _ext_symlink(d: Path) -> list[str]:
    (d / "m").mkdir()
    _write(d / "secret.bin", b"\0" * 16)
    os.symlink(d / "secret.bin", d / "m" / "data.bin")
    return convert_args(external_data_model(d / "m", "data.bin"), d)


@case("onnx-external-data-hardlink", "UnsafeModelError")
def _ext_hardlink(d: Path) -> list[str]:
    (d / "m").mkdir()
    _write(d / "secret.bin", b"\0" * 16)
    os.link(d / "secret.bin", d / "m" / "data.bin")
    return convert_args(external_data_model(d / "m", "data.bin"), d)


@case("onnx-graph-cycle", "ModelLoadError")
def _cycle(d: Path) -> list[str]:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
        "cycle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return convert_args(_write(d / "cycle.onnx", model.SerializeToString()), d)


@case("onnx-unknown-domain", "UnsupportedOpsError")
def _domain(d: Path) -> list[str]:
    graph = helper.make_graph(
        [helper.make_node("Exec", ["x"], ["y"], domain="evil.corp")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("evil.corp", 1)])
    return convert_args(_write(d / "custom.onnx", model.SerializeToString()), d)


@case("onnx-constantofshape-bomb", "ShapeError")
def _cos_bomb(d: Path) -> list[str]:
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20, 64], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"]),
         helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
         helper.make_node("Add", ["x", "s"], ["y"])], "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return convert_args(_write(d / "bomb.onnx", model.SerializeToString()), d)


@case("onnx-expand-bomb", "ShapeError")
def _expand_bomb(d: Path) -> list[str]:
    shape = numpy_helper.from_array(np.array([1 << 16, 1 << 16, 1 << 4], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"])], "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return convert_args(_write(d / "bomb.onnx", model.SerializeToString()), d)


@case("verification-dim-bomb", "ShapeError")
def _dim_bomb(d: Path) -> list[str]:
    return convert_args(CNN, d, "out.onnx", "--dim", "batch=100000000")


# -- output paths -------------------------------------------------------------------
@case("output-in-missing-folder", "ExportError")
def _missing_dir(d: Path) -> list[str]:
    return ["convert", str(CNN), str(d / "no" / "such" / "out.onnx"), "--quiet"]


@case("output-exists", "OutputExistsError")
def _exists(d: Path) -> list[str]:
    _write(d / "out.onnx", b"precious")
    return convert_args(CNN, d)


@case("corrupted-tflite-verify", "ModelLoadError", needs=("ai_edge_litert",))
def _bad_tflite(d: Path) -> list[str]:
    data = bytearray(b"\x1c\x00\x00\x00TFL3" + _random(2000, 9, b"\x00"))
    _write(d / "bad.tflite", bytes(data))
    return ["verify", str(CNN), str(d / "bad.tflite")]


def zip_bytes(members: dict[str, bytes], compress: bool = True) -> bytes:
    """A zip archive in memory."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
