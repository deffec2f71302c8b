"""Audio preprocessing layers: STFTSpectrogram and MelSpectrogram, as constant DFT kernels.

A short-time Fourier transform with static frame length and step is a strided 1-D
convolution of the signal with ``window * cos`` and ``-window * sin`` kernels (one output
channel per frequency bin), so it lowers to one Conv, which ONNX and TFLite both run.

- ``STFTSpectrogram`` stores those kernels as its weights (``real_kernel``,
  ``imag_kernel``); they are used as stored.
- ``MelSpectrogram`` computes them (``keras.ops.stft`` with ``center=True``: the signal is
  reflect-padded by ``fft_length // 2``, the periodic window of ``sequence_length`` is
  centred in ``fft_length``), then ``|X| ** mag_exp``, the HTK mel filter bank as a MatMul
  and, with ``power_to_db``, ``10 log10`` clamped at ``max - top_db`` (the maximum over
  the whole batch, as Keras takes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, keras_layer
from modelconv.importers.keras.spec import show
from modelconv.importers.keras.tensors import LAST, const_f, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_I64 = np.int64
_EPSILON = 1e-7  # keras.backend.epsilon()
_STFT_MODES = ("real", "imag", "stft", "psd", "magnitude", "log")


def _check_stft(cfg: Mapping[str, Any]) -> list[str]:
    out = []
    if cfg.get("mode", "log") not in _STFT_MODES:
        out.append(f"mode={show(cfg.get('mode'))}")
    if cfg.get("padding", "valid") not in ("valid", "same"):
        out.append(f"padding={show(cfg.get('padding'))}")
    return out


def _frames(b: GraphBuilder, signal: Any, kernel: np.ndarray, step: int,
            padding: str = "valid") -> Any:
    """(M, T) signal rows -> (M, F, frames): one Conv with ``kernel`` (F, 1, length)."""
    x = b.Unsqueeze(signal, b.const(np.asarray([1], _I64)))
    attrs: dict[str, Any] = {"strides": [step]}
    if padding == "same":
        attrs["auto_pad"] = "SAME_UPPER"
    return b.Conv(x, b.const(np.ascontiguousarray(kernel, np.float32), name="dft"), **attrs)


@keras_layer("STFTSpectrogram", reads=("mode", "frame_length", "frame_step", "padding",
                                       "expand_dims"),
             inert=("fft_length", "window", "periodic", "scaling"),  # in the stored kernels
             defaults={"data_format": "channels_last"}, check=_check_stft)
def stft_spectrogram(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """STFTSpectrogram: each input channel convolved with the stored DFT kernels.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: ``real_kernel`` and/or ``imag_kernel`` (frame_length, 1, bins).
        xs: the signal (N, T, C).

    Returns:
        (N, frames, C * bins), or (N, frames, bins, C) with ``expand_dims``
        (``2 * bins`` for ``mode="stft"``).

    Raises:
        LayerUnsupported: not a rank-3 input.
    """
    x = xs[0]
    if x.rank != 3:
        raise LayerUnsupported(f"a rank-{x.rank} input (expected N, T, C)")
    mode = cfg.get("mode", "log")
    length = int(cfg["frame_length"])
    step = int(cfg.get("frame_step") or length // 2)
    kernels, i = {}, 0
    for part in ("real", "imag"):
        if (part == "real" and mode != "imag") or (part == "imag" and mode != "real"):
            kernels[part] = np.transpose(w.get(i, [length, 1, None]), (2, 1, 0))
            i += 1
    v = b.Transpose(last(b, x), perm=[0, 2, 1])  # (N, C, T)
    rows = b.Reshape(v, b.Concat(b.const(np.asarray([-1], _I64)), b.Shape(v, start=2),
                                 axis=0))  # (N*C, T)
    outs = {k: _frames(b, rows, kern, step, cfg.get("padding", "valid"))
            for k, kern in kernels.items()}  # (N*C, F, frames)
    if mode in ("real", "imag"):
        y = outs[mode]
    elif mode == "stft":
        y = b.Concat(outs["real"], outs["imag"], axis=1)
    else:
        power = b.Add(b.Mul(outs["real"], outs["real"]), b.Mul(outs["imag"], outs["imag"]))
        if mode == "psd":
            bins = kernels["real"].shape[0]
            scale = np.full((bins, 1), 2.0, np.float32)
            scale[0] = scale[-1] = 1.0
            y = b.Mul(power, b.const(scale))
        else:
            y = b.Sqrt(b.Max(power, const_f(b, _EPSILON)))
            if mode == "log":
                y = b.Log(b.Max(y, const_f(b, _EPSILON)))
    # (N*C, F, frames) -> (N, C, F, frames) -> Keras' order
    bins = next(iter(kernels.values())).shape[0] * (2 if mode == "stft" else 1)
    full = b.Concat(b.Shape(v, end=2), b.const(np.asarray([bins, -1], _I64)), axis=0)
    y = b.Reshape(y, full)
    if cfg.get("expand_dims", False):
        return KTensor(b.Transpose(y, perm=[0, 3, 2, 1]), 4, LAST)
    y = b.Transpose(y, perm=[0, 3, 1, 2])  # (N, frames, C, F)
    return KTensor(b.Reshape(y, b.const(np.asarray([0, 0, -1], _I64))), 3, LAST)


def _window(name: Any, length: int) -> np.ndarray:
    """The periodic window ``keras.ops.stft`` uses (torch's ``periodic=True``)."""
    n = np.arange(length, dtype=np.float64)
    if name is None:
        return np.ones(length)
    if name == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * n / length)
    if name == "hamming":
        return 0.54 - 0.46 * np.cos(2 * np.pi * n / length)
    raise LayerUnsupported(f"window={show(name)}")


def dft_kernels(fft_length: int, sequence_length: int, window: Any) -> np.ndarray:
    """(2 * bins, 1, fft_length) Conv kernels: windowed cos, then -sin, per bin."""
    win = np.zeros(fft_length)
    left = (fft_length - sequence_length) // 2
    win[left:left + sequence_length] = _window(window, sequence_length)
    k = np.arange(fft_length // 2 + 1, dtype=np.float64)[:, None]
    angle = 2 * np.pi * k * np.arange(fft_length)[None, :] / fft_length
    kern = np.concatenate([np.cos(angle) * win, -np.sin(angle) * win])
    return kern[:, None, :].astype(np.float32)


def mel_matrix(bins: int, mel_bins: int, rate: float, low: float, high: float) -> np.ndarray:
    """Keras' ``linear_to_mel_weight_matrix`` (HTK, DC bin zeroed): (bins, mel_bins)."""
    def to_mel(f: Any) -> Any:
        return 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)

    freqs = to_mel(np.linspace(0.0, rate / 2.0, bins)[1:])[:, None]
    edges = np.linspace(to_mel(low), to_mel(high), mel_bins + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    slopes = np.minimum((freqs - lower) / (center - lower), (upper - freqs) / (upper - center))
    return np.pad(np.maximum(0.0, slopes), [[1, 0], [0, 0]]).astype(np.float32)


@keras_layer("MelSpectrogram",
             reads=("fft_length", "sequence_stride", "sequence_length", "window",
                    "sampling_rate", "num_mel_bins", "min_freq", "max_freq", "power_to_db",
                    "top_db", "mag_exp", "min_power", "ref_power"))
def mel_spectrogram(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                    xs: list[KTensor]) -> KTensor:
    """MelSpectrogram: reflect pad, DFT Conv, magnitude power, mel MatMul, dB scale.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: no weights.
        xs: the signal (N, T) (or (T,)).

    Returns:
        (N, num_mel_bins, frames).

    Raises:
        LayerUnsupported: a rank other than 1 or 2, a window other than hann/hamming/None,
            or ``fft_length < sequence_length``.
    """
    x = xs[0]
    if x.rank not in (1, 2):
        raise LayerUnsupported(f"a rank-{x.rank} input (expected N, T)")
    fft = int(cfg.get("fft_length", 2048))
    seq = int(cfg.get("sequence_length") or fft)
    if seq > fft:
        raise LayerUnsupported(f"sequence_length={seq} > fft_length={fft}")
    v = x.value if x.rank == 2 else b.Unsqueeze(x.value, b.const(np.asarray([0], _I64)))
    half = fft // 2
    v = b.Pad(v, b.const(np.asarray([0, half, 0, half], _I64)), mode="reflect")
    spec = _frames(b, v, dft_kernels(fft, seq, cfg.get("window", "hann")),
                   int(cfg.get("sequence_stride", 512)))  # (N, 2F, frames)
    bins = half + 1
    axis = b.const(np.asarray([1], _I64))
    real = b.Slice(spec, b.const(np.asarray([0], _I64)), b.const(np.asarray([bins], _I64)),
                   axis)
    imag = b.Slice(spec, b.const(np.asarray([bins], _I64)),
                   b.const(np.asarray([2 * bins], _I64)), axis)
    power = b.Add(b.Mul(real, real), b.Mul(imag, imag))
    exp = float(cfg.get("mag_exp", 2.0))
    mag = power if exp == 2.0 else b.Sqrt(power)
    if exp not in (1.0, 2.0):
        mag = b.Pow(mag, const_f(b, exp))
    mel = mel_matrix(bins, int(cfg.get("num_mel_bins", 128)), float(cfg.get("sampling_rate",
                     16000)), float(cfg.get("min_freq", 20.0)),
                     float(cfg.get("max_freq") or float(cfg.get("sampling_rate", 16000)) / 2))
    y = b.MatMul(b.const(np.ascontiguousarray(mel.T), name="mel"), mag)  # (N, M, frames)
    if cfg.get("power_to_db", True):
        floor = float(cfg.get("min_power", 1e-10))
        db = 10.0 / np.log(10.0)
        y = b.Mul(b.Log(b.Max(y, const_f(b, floor))), const_f(b, db))
        ref = 10.0 * np.log10(max(abs(float(cfg.get("ref_power", 1.0))), floor))
        if ref != 0.0:
            y = b.Sub(y, const_f(b, ref))
        top = cfg.get("top_db", 80.0)
        if top is not None:
            y = b.Max(y, b.Sub(b.ReduceMax(y, keepdims=0), const_f(b, float(top))))
    if x.rank == 1:
        y = b.Squeeze(y, b.const(np.asarray([0], _I64)))
    return KTensor(y, x.rank + 1, LAST)
