"""Keras and TensorFlow weights streamed from the source file: never copied into memory.

- Keras ``.h5`` and ``.keras``: a contiguous HDF5 dataset becomes a read-only view of the
  mapped file (``.keras`` archives store ``model.weights.h5`` uncompressed, so it is mapped
  inside the archive; a compressed member is extracted to a temporary file first).
- SavedModel variables: a tensor-bundle entry becomes a view of the mapped data shard.
- Transposed kernels (Keras/TF ``HWIO`` -> ONNX ``OIHW``) stay strided views, copied block by
  block when the output is written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelconv
from modelconv.errors import ModelLoadError
from tests.scale.helpers import anonymous_growth, initializer_homes

os.environ.setdefault("KERAS_BACKEND", "torch")  # as the Keras tests: TensorFlow stays out
keras = pytest.importorskip("keras")


def _keras_model(width: int, channels: int) -> Any:
    """Convolutions (transposed kernels) and Dense layers (kernels as stored)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((4, 4, channels))
    y = keras.layers.Conv2D(2 * channels, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(2 * channels, 3, padding="same")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(width, activation="relu")(y)
    y = keras.layers.Dense(width)(y)
    return keras.Model(x, keras.layers.Dense(16)(y))


def _weight_bytes(model: Any) -> int:
    return sum(int(np.prod(w.shape)) * 4 for w in model.weights)


@pytest.fixture(scope="module")
def small_keras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keras-small")
    model = _keras_model(512, 64)
    out = {}
    for suffix in ("h5", "keras"):
        out[suffix] = folder / f"m.{suffix}"
        model.save(out[suffix])
    return out


@pytest.mark.parametrize("suffix", ["h5", "keras"])
def test_keras_weights_are_views_of_the_file(small_keras: dict[str, Path], suffix: str) -> None:
    path = small_keras[suffix]
    source = modelconv.load(path)
    mapped, _, other = initializer_homes(source.model, path, min_size=1 << 12)
    # two conv kernels (transposed views), two Dense kernels: all pages of the file
    assert other == 0 and mapped >= 4, (mapped, other)
    result = modelconv.convert(path, path.with_suffix(f".{suffix}.onnx"))
    assert result.verified


def test_keras_archive_stores_weights_uncompressed(small_keras: dict[str, Path]) -> None:
    """The premise of mapping inside the archive: Keras writes the member stored."""
    with zipfile.ZipFile(small_keras["keras"]) as zf:
        assert zf.getinfo("model.weights.h5").compress_type == zipfile.ZIP_STORED


def _rezip(src: Path, dst: Path, compression: int) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    return dst


def test_compressed_keras_archive_converts_the_same(small_keras: dict[str, Path],
                                                    tmp_path: Path) -> None:
    deflated = _rezip(small_keras["keras"], tmp_path / "d.keras", zipfile.ZIP_DEFLATED)
    outs = []
    for src in (small_keras["keras"], deflated):
        dst = tmp_path / f"{src.stem}.onnx"
        assert modelconv.convert(src, dst).verified
        outs.append(dst.read_bytes())
    assert outs[0] == outs[1]


def test_truncated_keras_archive_is_refused(small_keras: dict[str, Path],
                                            tmp_path: Path) -> None:
    """The directory says the stored member is larger than the archive: a load error, not
    a view past the end of the mapping."""
    data = bytearray(small_keras["keras"].read_bytes())
    name = b"model.weights.h5"
    entry = data.find(b"PK\x01\x02")
    while entry >= 0 and data[entry + 46:entry + 46 + len(name)] != name:
        entry = data.find(b"PK\x01\x02", entry + 4)
    assert entry >= 0
    size = int.from_bytes(data[entry + 24:entry + 28], "little")
    for field in (20, 24):  # compressed and uncompressed sizes
        data[entry + field:entry + field + 4] = (size * 3).to_bytes(4, "little")
    bad = tmp_path / "t.keras"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="past the end"):
        modelconv.convert(bad, tmp_path / "t.onnx")


def test_truncated_h5_dataset_is_refused(small_keras: dict[str, Path], tmp_path: Path) -> None:
    data = small_keras["h5"].read_bytes()
    bad = tmp_path / "t.h5"
    bad.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(ModelLoadError):
        modelconv.convert(bad, tmp_path / "t.onnx")


_TF_BUILD = """
import sys
import numpy as np
import tensorflow as tf

folder, width, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)


def var(*shape):
    return tf.Variable(rng.standard_normal(shape).astype(np.float32) * 0.05)


class Net(tf.Module):
    def __init__(self):
        super().__init__()
        self.f = var(3, 3, channels, 4 * channels)
        self.w = [var(4 * channels, width), var(width, width), var(width, 16)]

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, channels], tf.float32)])
    def __call__(self, x):
        y = tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, self.f, 1, "SAME")), axis=[1, 2])
        for w in self.w:
            y = tf.matmul(tf.nn.relu(y), w)
        return y


net = Net()
tf.saved_model.save(net, folder)
print(sum(int(np.prod(v.shape)) * 4 for v in net.variables))
"""


def _tf_module(folder: Path, width: int, channels: int) -> tuple[Path, int]:
    """A tf.Module SavedModel (a 3x3 conv with an HWIO filter and three matmuls, no
    BatchNorm), built by TensorFlow in a subprocess (this process keeps torch's Keras)."""
    pytest.importorskip("tensorflow")
    from modelconv.workers.tf_worker import worker_env

    path = folder / f"tf{width}"
    run = subprocess.run([sys.executable, "-c", _TF_BUILD, str(path), str(width),
                          str(channels)], env=worker_env(), capture_output=True, text=True,
                         timeout=300, check=True)
    return path, int(run.stdout.split()[-1])


def test_savedmodel_variables_are_views_of_the_shard(tmp_path: Path) -> None:
    path, _ = _tf_module(tmp_path, 512, 64)
    shard = path / "variables" / "variables.data-00000-of-00001"
    source = modelconv.load(path)
    mapped, _, other = initializer_homes(source.model, shard, min_size=1 << 12)
    assert other == 0 and mapped >= 3, (mapped, other)
    assert modelconv.convert(path, tmp_path / "tf.onnx").verified


@pytest.mark.models
@pytest.mark.parametrize(("kind", "target"), [("h5", "onnx"), ("keras", "tflite"),
                                              ("keras", "onnx"), ("savedmodel", "onnx"),
                                              ("savedmodel", "tflite")])
def test_keras_tf_conversion_holds_no_weight_sized_anonymous_memory(
        tmp_path: Path, kind: str, target: str) -> None:
    """~180-230 MB of weights (largest tensor 151 MB): the conversion's anonymous memory
    grows by well under the weights (a copy of them would be >= 1x)."""
    if kind == "savedmodel":
        big, weights = _tf_module(tmp_path, 6144, 256)
        warm, _ = _tf_module(tmp_path, 8, 4)
    else:
        model = _keras_model(6144, 512)  # 233 MB: the ~32 MiB the route always adds < 0.3x
        weights = _weight_bytes(model)
        big, warm = tmp_path / f"big.{kind}", tmp_path / f"warm.{kind}"
        model.save(big)
        _keras_model(8, 4).save(warm)
    assert weights > 160 * 2**20
    grown = anonymous_growth(big, tmp_path / f"m.{target}", "-", warm)
    assert grown < 0.3 * weights, (grown / 2**20, weights / 2**20)
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("make", [lambda a: a.T, lambda a: a[:, ::2].T, lambda a: a.T[5:100],
                                  lambda a: a.T[:, 3:200], lambda a: a.reshape(6, 50, 700)
                                  .transpose(2, 0, 1), lambda a: a[::-1]])
def test_strided_views_are_written_in_c_order(make: Any) -> None:
    """The block writer and the tiled transpose give numpy's C-order bytes for any view,
    and a view's identity key never reads it (two views of one memory with one layout)."""
    from modelconv.ir.arrays import c_order_blocks, contiguous, view_key

    a = np.random.default_rng(0).standard_normal((300, 700)).astype(np.float32)
    view = make(a)
    want = np.ascontiguousarray(view)
    np.testing.assert_array_equal(contiguous(view), want)
    assert b"".join(bytes(b) for b in c_order_blocks(view)) == want.tobytes()
    key = view_key(view)
    assert (key is None) == view.flags.c_contiguous
    if key is not None:
        assert view_key(make(a)) == key and view_key(make(a.copy())) != key
