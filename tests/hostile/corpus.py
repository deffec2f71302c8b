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


@case("pickle-runs-code-protocol-0", "UnsafeModelError", needs=("torch",))
def _pickle_p0(d: Path) -> list[str]:
    _write(d / "evil.pt", pickle.dumps(_RunsCode(d), protocol=0))  # no PROTO header
    return convert_args(d / "evil.pt", d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp")


@case("safetensors-header-claims-2-60-bytes", "ModelLoadError")
def _st_huge(d: Path) -> list[str]:
    return convert_args(_write(d / "w.safetensors", struct.pack("<Q", 1 << 60) + b'{"a": 1}'),
                        d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp")


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


# -- truncations of real files, per format --------------------------------------------
def _torch_files(d: Path) -> dict[str, Path]:
    import torch

    from tests.hostile.archs import tiny_mlp

    net = tiny_mlp().eval()
    torch.save(net.state_dict(), d / "w.pt")
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(d / "w.safetensors"))
    torch.export.save(torch.export.export(net, (torch.randn(1, 4),)), str(d / "m.pt2"))
    return {"pt": d / "w.pt", "safetensors": d / "w.safetensors", "pt2": d / "m.pt2"}


for _kind in ("pt", "safetensors", "pt2"):
    def _trunc_torch(d: Path, kind: str = _kind) -> list[str]:
        path = _torch_files(d)[kind]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return convert_args(path, d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp",
                            "--input-shape", "1,4")

    CASES.append(Case(f"truncated-{_kind}", _trunc_torch, "ModelLoadError",
                      needs=("torch", "safetensors")))

for _fixture in ("k3_cnn.h5", "k3_cnn.keras"):
    def _trunc_keras(d: Path, fixture: str = _fixture) -> list[str]:
        data = (FIXTURES / "keras" / fixture).read_bytes()
        return convert_args(_write(d / fixture, data[: len(data) // 2]), d)

    CASES.append(Case(f"truncated-{_fixture}", _trunc_keras, "ModelLoadError", needs=("h5py",)))


@case("state-dict-missing-and-misshaped-keys", "ModelLoadError", needs=("torch",))
def _bad_keys(d: Path) -> list[str]:
    import torch

    torch.save({"0.weight": torch.zeros(7, 7), "extra.bias": torch.zeros(3)}, d / "w.pt")
    return convert_args(d / "w.pt", d, "out.onnx", "--model", "tests.hostile.archs:tiny_mlp",
                        "--input-shape", "1,4")


@case("torchscript-without-trust-code", "UnsafeModelError", needs=("torch",))
def _torchscript(d: Path) -> list[str]:
    import torch

    from tests.hostile.archs import tiny_mlp

    torch.jit.trace(tiny_mlp().eval(), torch.randn(1, 4)).save(str(d / "ts.pt"))
    return convert_args(d / "ts.pt", d, "out.onnx", "--input-shape", "1,4")


# -- Keras ------------------------------------------------------------------------------
def _keras_with_config(d: Path, edit: Callable[[dict[str, object]], None]) -> Path:
    """k3_cnn.keras with its config.json edited by ``edit``."""
    import json

    src = FIXTURES / "keras" / "k3_cnn.keras"
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return _write(d / "edited.keras", zip_bytes(members))


def _layer(config: dict[str, object], name: str) -> dict[str, object]:
    layers = config["config"]["layers"]  # type: ignore[index]
    return next(layer for layer in layers if layer["config"]["name"] == name)  # type: ignore


@case("keras-lambda-layer", "UnsafeModelError", needs=("h5py",))
def _lambda(d: Path) -> list[str]:
    def edit(config: dict[str, object]) -> None:
        layer = _layer(config, "re_lu")
        layer["class_name"] = "Lambda"
        layer["config"] = {"name": "re_lu", "function": {
            "class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA", "defaults": None,
                                                   "closure": None}}}

    return convert_args(_keras_with_config(d, edit), d)


@case("keras-unknown-custom-layer", "UnsafeModelError", needs=("h5py",))
def _custom(d: Path) -> list[str]:
    def edit(config: dict[str, object]) -> None:
        layer = _layer(config, "re_lu")
        layer["class_name"] = "TotallyCustom"
        layer["module"] = "evil_pkg.layers"
        layer["registered_name"] = "evil_pkg>TotallyCustom"

    return convert_args(_keras_with_config(d, edit), d)


@case("keras-declared-shape-far-larger-than-data", "ModelLoadError", needs=("h5py",))
def _huge_units(d: Path) -> list[str]:
    def edit(config: dict[str, object]) -> None:
        _layer(config, "dense")["config"]["units"] = 1 << 30  # type: ignore[index]

    return convert_args(_keras_with_config(d, edit), d)


@case("hdf5-external-link", "UnsafeModelError", needs=("h5py",))
def _external_link(d: Path) -> list[str]:
    import h5py

    path = _write(d / "linked.h5", (FIXTURES / "keras" / "k3_cnn.h5").read_bytes())
    with h5py.File(d / "elsewhere.h5", "w") as other:
        other.create_dataset("kernel", data=np.zeros((3, 3), np.float32))
    with h5py.File(path, "a") as f:
        f["model_weights"]["dense"]["sneaky"] = h5py.ExternalLink("elsewhere.h5", "/kernel")
    return convert_args(path, d)


@case("keras-zip-path-traversal", "UnsafeModelError", needs=("h5py",))
def _traversal(d: Path) -> list[str]:
    with zipfile.ZipFile(FIXTURES / "keras" / "k3_cnn.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["../../escape.txt"] = b"outside"
    return convert_args(_write(d / "trav.keras", zip_bytes(members)), d)


@case("keras-zip-bomb", "UnsafeModelError", needs=("h5py",))
def _bomb(d: Path) -> list[str]:
    with zipfile.ZipFile(FIXTURES / "keras" / "k3_cnn.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["model.weights.h5"] = b"\0" * (1 << 30)  # 1 GiB of zeros, ~1 MB compressed
    return convert_args(_write(d / "bomb.keras", zip_bytes(members)), d)


@case("savedmodel-with-file-ops", "UnsafeModelError", needs=("tensorflow", "tf2onnx"))
def _tf_file_ops(d: Path) -> list[str]:
    import subprocess
    import sys

    script = (
        "import tensorflow as tf\n"
        "class M(tf.Module):\n"
        "    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])\n"
        "    def __call__(self, x):\n"
        "        data = tf.io.read_file('/etc/hostname')\n"
        "        return x + tf.cast(tf.strings.length(data), tf.float32)\n"
        f"tf.saved_model.save(M(), {str(d / 'sm')!r})\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    return convert_args(d / "sm", d)

