"""SavedModel importer: the tf2onnx route (TensorFlow worker subprocess) and the
TensorFlow-free route for tf.keras SavedModels (keras_metadata.pb + tensor bundle)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from modelconv.errors import ModelLoadError, UnsafeModelError, UnsupportedOpsError
from modelconv.importers.tf.tf2onnx_route import check_onnx_ops, rewrite_erfc
from modelconv.options import ConvertOptions
from modelconv.verification.runners import OnnxRuntimeRunner
from tests.paths import ROOT

FIX = ROOT / "fixtures" / "keras"
needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or
                              importlib.util.find_spec("tf2onnx") is None,
                              reason="tensorflow / tf2onnx not installed")


def _erfc_model() -> onnx.ModelProto:
    node = helper.make_node("Erfc", ["x"], ["y"], name="erfc")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_rewrite_erfc() -> None:
    proto = _erfc_model()
    with pytest.raises(UnsupportedOpsError, match="Erfc"):
        check_onnx_ops(proto, "m")
    assert rewrite_erfc(proto) == 1
    check_onnx_ops(proto, "m")
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    y = OnnxRuntimeRunner(proto.SerializeToString()).run([x])[0]
    from math import erfc

    np.testing.assert_allclose(y, [erfc(v) for v in x], atol=1e-6)


@pytest.mark.tf
@needs_tf
def test_savedmodel_fixture_converts_and_matches() -> None:
    from modelconv.importers.tf import import_savedmodel

    sm = import_savedmodel(FIX / "savedmodel", ConvertOptions())
    assert not [n for n in sm.model.graph if n.op_type == "Erfc"]
    with np.load(FIX / "savedmodel.npz") as data:
        x, want = data["in0"], data["out0"]
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run([x])[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    runner = sm.make_runner()
    np.testing.assert_allclose(runner.run([x])[0], want, atol=1e-5)


@pytest.mark.tf
@needs_tf
def test_savedmodel_unknown_signature(tmp_path: Path) -> None:
    from modelconv.errors import ModelLoadError
    from modelconv.importers.tf import import_savedmodel

    with pytest.raises(ModelLoadError, match="signature"):
        import_savedmodel(FIX / "savedmodel", ConvertOptions(signature="nope"))


@pytest.mark.tf
@needs_tf
def test_savedmodel_with_file_ops_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    from modelconv.errors import UnsafeModelError
    from modelconv.importers.tf import import_savedmodel
    from modelconv.workers.tf_worker import worker_env

    target = tmp_path / "reader"
    code = (
        "import tensorflow as tf\n"
        "class M(tf.Module):\n"
        "    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])\n"
        "    def __call__(self, p):\n"
        "        return {'y': tf.io.read_file(p)}\n"
        "m = M()\n"
        f"tf.saved_model.save(m, {str(target)!r}, signatures={{'serving_default': m.__call__}})\n"
    )
    subprocess.run([sys.executable, "-c", code], env=worker_env(), check=True, timeout=300)
    with pytest.raises(UnsafeModelError, match="ReadFile"):
        import_savedmodel(target, ConvertOptions())
    shutil.rmtree(target, ignore_errors=True)


# --------------------------------------------------------------------------------------
# tf.keras SavedModels: the TensorFlow-free route (keras_metadata.pb + tensor bundle)

K2SM = FIX / "k2_savedmodel"
TABLE_MAGIC = 0xDB4775248B80FB57


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    body, restarts, prev = b"", [], b""
    for i, (key, value) in enumerate(items):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(body))
        else:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        body += key[shared:] + value
        prev = key
    return body + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def _write_table(items: dict[bytes, bytes], restart_interval: int = 3, kind: int = 0) -> bytes:
    """A LevelDB-format table: one data block, an index block, the footer."""
    data_block = _block(sorted(items.items()), restart_interval)
    handle = _varint(0) + _varint(len(data_block))
    index_block = _block([(max(items), handle)], 1)
    out = data_block + bytes([kind]) + b"\0" * 4
    index_off = len(out)
    out += index_block + b"\0" * 5
    footer = _varint(0) + _varint(0) + _varint(index_off) + _varint(len(index_block))
    return out + footer.ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)


def _entry_bytes(entry: Any, **changes: Any) -> bytes:
    fields = {"dtype": entry.dtype, "shape": entry.shape, "shard": entry.shard,
              "offset": entry.offset, "size": entry.size, **changes}
    shape = b"".join(_field(2, _field(1, d)) for d in fields["shape"])
    return (_field(1, fields["dtype"]) + _field(2, shape) + _field(3, fields["shard"])
            + _field(4, fields["offset"]) + _field(5, fields["size"]))


def _copy_fixture(tmp_path: Path) -> Path:
    target = tmp_path / "k2sm"
    shutil.copytree(K2SM, target)
    return target


def _rewrite_index(folder: Path, *, kind: int = 0, drop: str | None = None,
                   **changes: Any) -> None:
    """Rewrite variables.index, changing the first kernel's entry by ``changes``."""
    from modelconv.importers.tf.files.bundle import TensorBundle, read_table

    index = folder / "variables" / "variables.index"
    table = read_table(index.read_bytes(), str(index))
    with TensorBundle(folder / "variables") as bundle:
        entries = bundle.entries
    kernel = min(k for k in entries if k.endswith("kernel/.ATTRIBUTES/VARIABLE_VALUE"))
    items = {k: bytes(v) for k, v in table.items() if k.decode() != drop}
    if changes:
        items[kernel.encode()] = _entry_bytes(entries[kernel], **changes)
    index.write_bytes(_write_table(items, kind=kind))


def _k2sm_reference() -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(FIX / "k2_savedmodel.npz") as data:
        return [data["in0"], data["in1"]], [data["out0"], data["out1"]]


def _check_outputs(onnx_path: Path, feeds: list[np.ndarray], want: list[np.ndarray]) -> None:
    got = OnnxRuntimeRunner.from_path(onnx_path, ConvertOptions()).run(feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-4 * max(1.0, float(np.abs(w).max())))


def test_k2_savedmodel_fixture_converts_without_tensorflow(tmp_path: Path) -> None:
    import modelconv

    out = tmp_path / "m.onnx"
    result = modelconv.convert(K2SM, out, verify=False)
    assert result.source_format == "savedmodel-keras"
    assert not result.warnings
    proto = onnx.load(out)
    assert [i.name for i in proto.graph.input] == ["image", "meta"]
    assert [o.name for o in proto.graph.output] == ["aux", "logits"]  # signature key order
    feeds, want = _k2sm_reference()
    _check_outputs(out, feeds, want)


def test_native_route_imports_no_framework(tmp_path: Path) -> None:
    from tests.framework_free import assert_runs_without

    assert_runs_without(
        "import modelconv\n"
        f"r = modelconv.convert({str(K2SM)!r}, {str(tmp_path / 'm.onnx')!r}, verify=False)\n"
        "assert r.source_format == 'savedmodel-keras', r.source_format",
        ("tensorflow", "keras", "tf_keras", "tf2onnx", "h5py", "torch"))


def test_rewritten_index_reads_back(tmp_path: Path) -> None:
    """The test's table writer (prefix-compressed keys, restarts every 3) round-trips."""
    import modelconv

    folder = _copy_fixture(tmp_path)
    _rewrite_index(folder)
    modelconv.convert(folder, tmp_path / "m.onnx", verify=False)
    feeds, want = _k2sm_reference()
    _check_outputs(tmp_path / "m.onnx", feeds, want)


def _corrupt(kind: str, folder: Path, tmp_path: Path) -> None:
    variables = folder / "variables"
    index = variables / "variables.index"
    shard = variables / "variables.data-00000-of-00001"
    if kind == "truncated_index":
        index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    elif kind == "bad_magic":
        index.write_bytes(index.read_bytes()[:-1] + b"\0")
    elif kind == "lying_offset":
        _rewrite_index(folder, offset=shard.stat().st_size + 100)
    elif kind == "huge_size":
        _rewrite_index(folder, shape=(2**20, 2**20), size=2**42)
    elif kind == "shape_mismatch":
        _rewrite_index(folder, shape=(3, 3, 3, 60))
    elif kind == "bad_shard_id":
        _rewrite_index(folder, shard=7)
    elif kind == "compressed_block":
        _rewrite_index(folder, kind=1)
    elif kind == "no_object_graph":
        _rewrite_index(folder, drop="_CHECKPOINTABLE_OBJECT_GRAPH")
    elif kind == "missing_shard":
        shard.unlink()
    elif kind == "truncated_shard":
        shard.write_bytes(shard.read_bytes()[:100])
    elif kind == "symlinked_shard":
        outside = tmp_path / "elsewhere.bin"
        shutil.copy(shard, outside)
        shard.unlink()
        shard.symlink_to(outside)
    elif kind == "hardlinked_shard":
        os.link(shard, tmp_path / "alias.bin")
    elif kind == "garbage_metadata":
        (folder / "keras_metadata.pb").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 50)
    elif kind == "garbage_saved_model":
        (folder / "saved_model.pb").write_bytes(b"\x12\x80\x80\x80\x80\x01abc")
    else:  # pragma: no cover
        raise AssertionError(kind)


CORRUPTIONS = {
    "truncated_index": (ModelLoadError, "magic"), "bad_magic": (ModelLoadError, "magic"),
    "lying_offset": (ModelLoadError, "asks for bytes"),
    "huge_size": (ModelLoadError, "asks for bytes"),
    "shape_mismatch": (ModelLoadError, "declares shape"),
    "bad_shard_id": (ModelLoadError, "shard 7"),
    "compressed_block": (ModelLoadError, "compressed"),
    "no_object_graph": (ModelLoadError, "_CHECKPOINTABLE_OBJECT_GRAPH"),
    "missing_shard": (ModelLoadError, "missing"),
    "truncated_shard": (ModelLoadError, "asks for bytes"),
    "symlinked_shard": (UnsafeModelError, "link"),
    "hardlinked_shard": (UnsafeModelError, "hard link"),
    "garbage_metadata": (ModelLoadError, "metadata"),
    "garbage_saved_model": (ModelLoadError, "saved_model.pb"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_keras_savedmodel_refused(kind: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import modelconv
    from modelconv.workers import tf_worker

    # a refusal must come from the native reader, never from a tf2onnx fallback
    monkeypatch.setattr(tf_worker, "tf_available", lambda: False)
    folder = _copy_fixture(tmp_path)
    _corrupt(kind, folder, tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    error, pattern = CORRUPTIONS[kind]
    with pytest.raises(error, match=pattern):
        modelconv.convert(folder, out_dir / "m.onnx", verify=False)
    assert list(out_dir.iterdir()) == []


FUZZ_CASES = int(os.environ.get("MODELCONV_FUZZ_CASES", "15"))


@pytest.mark.parametrize("member", ["variables/variables.index", "keras_metadata.pb",
                                    "saved_model.pb", "variables/variables.data-00000-of-00001"])
def test_fuzzed_keras_savedmodel(member: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutated members convert or fail with a ModelconvError raised on purpose by the
    native reader (not a raw exception wrapped by the API as "cannot read")."""
    import modelconv
    from modelconv.errors import ModelconvError
    from modelconv.workers import tf_worker
    from tests.hostile.fuzz import mutate

    monkeypatch.setattr(tf_worker, "tf_available", lambda: False)
    rng = np.random.default_rng(0)
    original = (K2SM / member).read_bytes()
    for i in range(FUZZ_CASES):
        folder = tmp_path / f"case{i}"
        shutil.copytree(K2SM, folder)
        (folder / member).write_bytes(mutate(original, rng))
        try:
            modelconv.convert(folder, tmp_path / f"case{i}.onnx", verify=False)
        except ModelconvError as exc:
            assert "cannot read the" not in str(exc), exc
            assert not (tmp_path / f"case{i}.onnx").exists()
        shutil.rmtree(folder)


def test_native_route_is_deterministic(tmp_path: Path) -> None:
    import modelconv

    for name in ("a.onnx", "b.onnx"):
        modelconv.convert(K2SM, tmp_path / name, verify=False)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def _rewrite_metadata(folder: Path, change: Any) -> None:
    """Re-encode keras_metadata.pb with ``change(root_metadata_dict)`` applied."""
    import json

    from modelconv import protowire as pw

    path = folder / "keras_metadata.pb"
    nodes = []
    for raw in pw.get_messages(pw.parse(path.read_bytes()), 1):
        msg = pw.parse(raw)
        meta = pw.get_str(msg, 5)
        if pw.get_str(msg, 3) == "root":
            root = json.loads(meta)
            change(root)
            meta = json.dumps(root)
        body = _field(2, pw.get_int(msg, 2)) + _field(3, bytes(pw.get_bytes(msg, 3)))
        body += _field(4, bytes(pw.get_bytes(msg, 4))) + _field(5, meta.encode())
        nodes.append(_field(1, body))
    path.write_bytes(b"".join(nodes))


def test_subclassed_metadata_takes_the_graph_route(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No Keras layer graph (a subclassed model): converted from the TF graph instead, still
    without TensorFlow, and the result matches the reference."""
    from modelconv.importers.tf import import_savedmodel
    from modelconv.workers import tf_worker

    monkeypatch.setattr(tf_worker, "tf_available", lambda: False)
    folder = _copy_fixture(tmp_path)
    _rewrite_metadata(folder, lambda root: root.update(class_name="MyModel", config={}))
    sm = import_savedmodel(folder, ConvertOptions())
    assert sm.format == "savedmodel-graph"
    out = tmp_path / "m.onnx"
    ir.save(sm.model, out)
    feeds, want = _k2sm_reference()
    _check_outputs(out, feeds, want)


def test_other_signature_is_read_from_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelconv.importers.tf import import_savedmodel
    from modelconv.workers import tf_worker

    monkeypatch.setattr(tf_worker, "tf_available", lambda: False)
    with pytest.raises(ModelLoadError, match=r"no signature 'other'.*serving_default"):
        import_savedmodel(K2SM, ConvertOptions(signature="other"))
    sm = import_savedmodel(K2SM, ConvertOptions())
    assert sm.format == "savedmodel-keras"
    assert sm.make_runner is None and "TensorFlow" in (sm.runner_unavailable or "")


def test_keras_output_names() -> None:
    from modelconv.importers.tf.keras_route import keras_output_names

    assert keras_output_names(["d", "e", "d", "d"]) == ["d", "e", "d_1", "d_2"]


def test_protowire_bounds() -> None:
    from modelconv import protowire as pw

    with pytest.raises(pw.ProtoError):
        pw.read_varint(b"\xff" * 11, 0, 11)
    with pytest.raises(pw.ProtoError):
        pw.parse(b"\x0a\x05ab")  # length 5, 2 bytes left
    with pytest.raises(pw.ProtoError):
        pw.parse(b"\x0b")  # group start
    assert pw.parse(_field(1, 300) + _field(2, b"xy")) == {1: [300], 2: [memoryview(b"xy")]}
    assert pw.to_int64(2**64 - 1) == -1


def test_table_prefix_compression_and_restarts() -> None:
    from modelconv.importers.tf.files.bundle import read_table

    items = {f"layer/{i:03d}/kernel".encode(): bytes([i]) * (i % 5) for i in range(40)}
    items[b""] = b"header"
    for interval in (1, 4, 16):
        table = read_table(_write_table(items, restart_interval=interval), "t")
        assert {k: bytes(v) for k, v in table.items()} == items
    broken = bytearray(_write_table(items, restart_interval=4))
    broken[1] = 0x7F  # first entry: unshared length far past the block
    with pytest.raises(ModelLoadError):
        read_table(bytes(broken), "t")


# --------------------------------------------------------------------------------------
# tf_keras SavedModels built here (need TensorFlow + tf_keras)

_BUILD = r'''
import json, os, sys
import numpy as np
import tensorflow as tf
import tf_keras as keras

L = keras.layers
out = sys.argv[1]
rng = np.random.default_rng(0)


def randomize(model):
    values = []
    for w in model.weights:
        v = 0.3 * rng.normal(size=tuple(w.shape))
        values.append(np.abs(v) + 0.5 if "variance" in w.name else v)
    model.set_weights([v.astype(w.dtype.as_numpy_dtype) for v, w in zip(values, model.weights)])


def feeds(model):
    return [rng.integers(0, 50, [2, *t.shape[1:]]).astype("int32") if t.dtype.is_integer
            else rng.normal(size=[2, *t.shape[1:]]).astype("float32") for t in model.inputs]


def save(name, model, xs=None):
    randomize(model)
    model.save(os.path.join(out, name), save_format="tf")
    xs = xs or feeds(model)
    ys = model(xs if len(xs) > 1 else xs[0], training=False)
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    arrays = {f"in{i}": x for i, x in enumerate(xs)}
    names = model.output_names or [f"output_{i + 1}" for i in range(len(ys))]
    arrays.update({f"out:{k}": np.asarray(y) for k, y in zip(names, ys)})
    np.savez(os.path.join(out, name + ".npz"), **arrays)


# a CNN with Normalization and BatchNorm (statistics randomised)
inp = keras.Input((16, 16, 3), name="image")
norm = L.Normalization(axis=-1)  # a preprocessing layer: variables without a "variables" list
norm.adapt(rng.normal(size=(4, 16, 16, 3)).astype("float32"))
x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(norm(inp))
x = L.BatchNormalization()(x)
x = L.ReLU(6.0)(x)
x = L.DepthwiseConv2D(3, padding="same")(x)
x = L.BatchNormalization(center=False)(x)
x = L.Conv2D(8, 1, activation="swish")(x)
x = L.MaxPooling2D()(x)
x = L.Flatten()(x)
save("cnn", keras.Model(inp, L.Dense(4, activation="softmax")(x)))

# multi-input / multi-output with a nested model and a shared layer
sub_in = keras.Input((8,))
sub = keras.Model(sub_in, L.Dense(8, activation="relu")(L.LayerNormalization()(sub_in)),
                  name="block")
a, b = keras.Input((8,), name="zeta"), keras.Input((8,), name="alpha")
shared = L.Dense(8, name="shared")
ha, hb = shared(a), shared(b)
h = L.Add()([ha, hb])
h2 = L.Add(name="skip")([h, sub(h)])
save("multi", keras.Model([a, b], [L.Dense(3, name="zz_head")(h2),
                                   L.Dense(1, activation="sigmoid", name="aa_head")(
                                       L.Concatenate()([h2, ha]))]))

# text: Embedding, Bidirectional LSTM, GRU (Sequential-free functional)
tok = keras.Input((10,), dtype="int32", name="tokens")
e = L.Embedding(50, 8)(tok)
s = L.Bidirectional(L.LSTM(6, return_sequences=True))(e)
s = L.GRU(5)(s)
save("text", keras.Model(tok, L.Dense(2)(s)))

# Sequential
save("seq", keras.Sequential([L.Dense(6, input_shape=(5,), activation="relu"),
                              L.BatchNormalization(), L.Dense(2)]))


# a subclassed model (no layer graph): tf2onnx route
class Sub(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = L.Dense(2)

    def call(self, x):
        return self.d(x)


m = Sub()
m(np.zeros((1, 3), np.float32))
save("subclassed", m, [rng.normal(size=(2, 3)).astype("float32")])

# a functional model that also carries a function reading files
x = keras.Input((3,), name="x")
hostile = keras.Model(x, L.Dense(2)(x))
hostile.reader = tf.function(lambda p: tf.io.read_file(p),
                             input_signature=[tf.TensorSpec([], tf.string)])
hostile.save(os.path.join(out, "hostile"), save_format="tf")

# weight order: every layer's variables against layer.weights, many layer kinds
inp = keras.Input((8, 8, 3), name="img")
norm = L.Normalization(axis=-1)
norm.adapt(rng.normal(size=(4, 8, 8, 3)).astype("float32"))
y = L.Conv2D(4, 3, padding="same")(norm(inp))
y = L.BatchNormalization()(y)
y = L.SeparableConv2D(5, 3, padding="same")(y)
y = L.PReLU()(y)
y = L.Reshape((64, 5))(y)
y = L.Conv1D(6, 3)(y)
y = L.Bidirectional(L.GRU(3, return_sequences=True),
                    backward_layer=L.GRU(3, return_sequences=True, go_backwards=True))(y)
y = L.MultiHeadAttention(2, 4)(y, y)
y = L.SimpleRNN(5)(y)
frozen = L.Dense(3)
frozen.trainable = False
order = keras.Model(inp, sub(L.Dense(8)(frozen(y))))
randomize(order)
order.compile(optimizer="adam", loss="mse")  # optimizer slots land in the checkpoint too
order.train_on_batch(rng.normal(size=(2, 8, 8, 3)).astype("float32"),
                     rng.normal(size=(2, 8)).astype("float32"))
order.save(os.path.join(out, "order"), save_format="tf")
ref = {}
def collect(model, prefix):
    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            ref["/".join(prefix + [layer.name]) + f"#{i}"] = w.numpy()
        if isinstance(layer, keras.Model):
            collect(layer, prefix + [layer.name])
collect(order, [])
np.savez(os.path.join(out, "order_weights.npz"), **ref)
'''


@pytest.fixture(scope="module")
def tf_keras_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess
    import sys

    from modelconv.workers.tf_worker import worker_env

    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf_keras not installed")
    out = tmp_path_factory.mktemp("tfkeras")
    env = {**worker_env(), "TF_USE_LEGACY_KERAS": "1"}
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(out)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _reference(folder: Path, name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Inputs, and outputs in signature (sorted key) order."""
    with np.load(folder / f"{name}.npz") as data:
        ins = [data[f"in{i}"] for i in range(sum(k.startswith("in") for k in data.files))]
        outs = [data[k] for k in sorted(k for k in data.files if k.startswith("out:"))]
    return ins, outs


@pytest.mark.tf
@needs_tf
@pytest.mark.parametrize("name,verify", [("cnn", False), ("multi", True), ("text", True),
                                         ("seq", False)])
def test_tf_keras_savedmodel_native(name: str, verify: bool, tf_keras_models: Path,
                                    tmp_path: Path) -> None:
    import modelconv

    out = tmp_path / f"{name}.onnx"
    result = modelconv.convert(tf_keras_models / name, out, verify=verify)
    assert result.source_format == "savedmodel-keras"
    if verify:
        assert result.verified, result.report
    ins, want = _reference(tf_keras_models, name)
    _check_outputs(out, ins, want)


@pytest.mark.tf
@needs_tf
def test_tf_keras_weight_order_matches_layer_weights(tf_keras_models: Path) -> None:
    from modelconv.importers.tf.keras_route import open_keras_savedmodel

    with np.load(tf_keras_models / "order_weights.npz") as data:
        ref = {k: data[k] for k in data.files}
    layers: dict[tuple[str, ...], int] = {}
    for key in ref:
        path, _, i = key.rpartition("#")
        layers[tuple(path.split("/"))] = max(layers.get(tuple(path.split("/")), 0), int(i) + 1)
    with open_keras_savedmodel(tf_keras_models / "order") as kf:
        for path, count in layers.items():
            if path == ("block",):  # a nested model: its layers are checked one by one
                continue
            datasets, _ = kf.h5.layer_datasets(path)
            assert len(datasets) == count, path
            for i, ds in enumerate(datasets):
                np.testing.assert_array_equal(ds[()], ref["/".join(path) + f"#{i}"])


@pytest.mark.tf
@needs_tf
def test_subclassed_tf_keras_savedmodel_uses_the_graph_route(tf_keras_models: Path,
                                                             tmp_path: Path) -> None:
    import modelconv

    out = tmp_path / "sub.onnx"
    result = modelconv.convert(tf_keras_models / "subclassed", out, verify=False)
    assert result.source_format == "savedmodel-graph"
    assert not result.warnings
    ins, want = _reference(tf_keras_models, "subclassed")
    _check_outputs(out, ins, want)


@pytest.mark.tf
@needs_tf
def test_tf_keras_savedmodel_with_file_ops_refused(tf_keras_models: Path,
                                                   tmp_path: Path) -> None:
    import modelconv

    with pytest.raises(UnsafeModelError, match="ReadFile"):
        modelconv.convert(tf_keras_models / "hostile", tmp_path / "h.onnx", verify=False)
    assert not (tmp_path / "h.onnx").exists()
