"""Recurrent layers: LSTM, GRU (reset_after both ways), SimpleRNN, Bidirectional.

Keras gate order is LSTM i,f,c,o (ONNX i,o,f,c) and GRU z,r,h (same as ONNX). Inputs are
batch-major (N, T, C); ONNX RNN ops run time-major, so one Transpose goes in and one out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelconv.importers.keras.common import (
    WEIGHT_OPTIONS,
    KTensor,
    LayerUnsupported,
    activation_name,
    keras_layer,
    layer_spec,
    major_of,
)
from modelconv.importers.keras.config import snake_case
from modelconv.importers.keras.spec import config_refusals, show
from modelconv.importers.keras.tensors import LAST, last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

#: activations an ONNX RNN op applies without alpha/beta (Keras 2 and 3 differ on
#: hard_sigmoid's slope, which the ONNX op would need per activation)
_ACT = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", None: "Identity"}
_OP = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}
_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
_I64 = np.int64


def _reorder(a: np.ndarray, kind: str, units: int) -> np.ndarray:
    """Gate blocks along the last axis from Keras order to ONNX order."""
    if kind != "LSTM":
        return a
    i, f, c, o = (a[..., k * units:(k + 1) * units] for k in range(4))
    return np.concatenate([i, o, f, c], axis=-1)


def _direction_weights(kind: str, cfg: dict[str, Any], w: LayerWeights,
                       start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(W, R, B) for one direction in ONNX layout, and the next weight index."""
    units, gates = int(cfg["units"]), _GATES[kind]
    kernel = w.get(start, [None, gates * units])
    rec = w.get(start + 1, [units, gates * units])
    zeros = np.zeros(gates * units, np.float32)
    nxt = start + 2
    wb, rb = zeros, zeros
    if cfg.get("use_bias", True):
        bias = w.get(start + 2)
        nxt += 1
        if bias.ndim == 2:  # GRU reset_after: [input bias, recurrent bias]
            wb, rb = bias[0], bias[1]
        else:
            wb = bias
    wmat = _reorder(kernel, kind, units).T
    rmat = _reorder(rec, kind, units).T
    bvec = np.concatenate([_reorder(wb, kind, units), _reorder(rb, kind, units)])
    return wmat, rmat, bvec, nxt


def _act_attrs(kind: str, cfg: dict[str, Any], ndir: int) -> dict[str, Any]:
    names = [cfg.get("activation", "tanh")]
    if kind != "SimpleRNN":
        names = [cfg.get("recurrent_activation", "sigmoid"), cfg.get("activation", "tanh")]
        if kind == "LSTM":
            names.append(cfg.get("activation", "tanh"))
    acts = []
    for spec in names:
        name = activation_name(spec)
        if name not in _ACT:
            raise LayerUnsupported(f"activation {name!r} in a recurrent layer")
        acts.append(_ACT[name])
    return {"activations": acts * ndir}


def _check_activations(cfg: Mapping[str, Any]) -> list[str]:
    """Recurrent activations the ONNX RNN ops cannot apply."""
    out = []
    for key in ("activation", "recurrent_activation"):
        if key in cfg and activation_name(cfg[key]) not in _ACT:
            out.append(f"{key}={activation_name(cfg[key])!r}")
    return out


_RNN_SPEC: dict[str, Any] = {
    "reads": ("units", "activation", "recurrent_activation", "use_bias", "return_sequences",
              "return_state", "go_backwards", "reset_after"),
    "inert": (*WEIGHT_OPTIONS, "recurrent_initializer", "recurrent_regularizer",
              "recurrent_constraint", "unit_forget_bias", "dropout", "recurrent_dropout",
              "seed", "unroll", "implementation",
              "zero_output_for_mask"),  # masks are refused: no effect without one
    "defaults": {"stateful": False, "time_major": False},
    "check": _check_activations,
}


def _run(b: GraphBuilder, kind: str, cfgs: list[dict[str, Any]], w: LayerWeights,
         x: KTensor, direction: str) -> tuple[Any, Any, Any]:
    """Emit the ONNX RNN op; returns (Y, Y_h, Y_c or None)."""
    ws, rs, bs, idx = [], [], [], 0
    for cfg in cfgs:
        wm, rm, bv, idx = _direction_weights(kind, cfg, w, idx)
        ws.append(wm)
        rs.append(rm)
        bs.append(bv)
    cfg = cfgs[0]
    attrs = {"hidden_size": int(cfg["units"]), "direction": direction,
             **_act_attrs(kind, cfg, len(cfgs))}
    if kind == "GRU":
        attrs["linear_before_reset"] = int(bool(cfg.get("reset_after", major_of(cfg) == 3)))
    xt = b.Transpose(last(b, x), perm=[1, 0, 2])
    inputs = [xt, weight(b, np.stack(ws), "W"), weight(b, np.stack(rs), "R"),
              weight(b, np.stack(bs), "B")]
    nout = 3 if kind == "LSTM" else 2
    outs = b.op(_OP[kind], inputs, attrs, num_outputs=nout)
    return outs[0], outs[1], outs[2] if kind == "LSTM" else None


def _seq_out(b: GraphBuilder, y: Any, ndir: int, units: int, flip: bool) -> Any:
    """(T, D, N, U) -> (N, T, D*U), forward then backward (Keras concat order)."""
    if flip:
        y = b.Slice(y, b.const(np.asarray([-1], _I64)),
                    b.const(np.asarray([np.iinfo(_I64).min], _I64)),
                    b.const(np.asarray([0], _I64)), b.const(np.asarray([-1], _I64)))
    y = b.Transpose(y, perm=[2, 0, 1, 3])  # (N, T, D, U)
    return b.Reshape(y, b.const(np.asarray([0, 0, ndir * units], _I64)))


def _state(b: GraphBuilder, h: Any) -> Any:
    return b.Squeeze(h, b.const(np.asarray([0], _I64)))


def _recurrent(b: GraphBuilder, kind: str, cfg: dict[str, Any], w: LayerWeights,
               xs: list[KTensor]) -> list[KTensor]:
    back = bool(cfg.get("go_backwards"))
    y, h, c = _run(b, kind, [cfg], w, xs[0], "reverse" if back else "forward")
    units = int(cfg["units"])
    main = (KTensor(_seq_out(b, y, 1, units, back), 3, LAST) if cfg.get("return_sequences")
            else KTensor(_state(b, h), 2, LAST))
    if not cfg.get("return_state"):
        return [main]
    states = [KTensor(_state(b, s), 2, LAST) for s in (h, c) if s is not None]
    return [main, *states]


@keras_layer("LSTM", **_RNN_SPEC)
def lstm(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
         xs: list[KTensor]) -> list[KTensor]:
    """LSTM -> ONNX LSTM."""
    return _recurrent(b, "LSTM", cfg, w, xs)


@keras_layer("GRU", **_RNN_SPEC)
def gru(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
        xs: list[KTensor]) -> list[KTensor]:
    """GRU -> ONNX GRU (reset_after -> linear_before_reset)."""
    return _recurrent(b, "GRU", cfg, w, xs)


@keras_layer("SimpleRNN", **_RNN_SPEC)
def simple_rnn(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
               xs: list[KTensor]) -> list[KTensor]:
    """SimpleRNN -> ONNX RNN."""
    return _recurrent(b, "SimpleRNN", cfg, w, xs)


_MERGE_MODES = ("concat", "sum", "ave", "mul")


def _check_bidirectional(cfg: Mapping[str, Any]) -> list[str]:
    """The wrapped layers, checked against their own specs: a forward layer and a
    backward one of the same class (the ONNX op runs both; return_state is not merged)."""
    fwd = cfg.get("layer")
    out = [] if cfg.get("merge_mode", "concat") in _MERGE_MODES else [
        f"merge_mode={show(cfg.get('merge_mode'))}"]
    for key, sub, backwards in (("layer", fwd, False),
                                ("backward_layer", cfg.get("backward_layer"), True)):
        if sub is None and backwards:
            continue
        if not isinstance(sub, dict) or sub.get("class_name") not in _OP or \
                not isinstance(sub.get("config"), dict) or \
                (backwards and isinstance(fwd, dict) and sub["class_name"] != fwd.get(
                    "class_name")):
            cls = sub.get("class_name") if isinstance(sub, dict) else sub
            out.append(f"{key}={show(cls)}")
            continue
        inner = dict(sub["config"])
        if bool(inner.pop("go_backwards", backwards)) != backwards:
            out.append(f"{key}.go_backwards={not backwards}")
        if inner.get("return_state"):
            out.append(f"{key}.return_state=True")
        spec = layer_spec(str(sub["class_name"]))
        assert spec is not None  # one of _OP's classes, registered in this module
        out.extend(f"{key}.{label}" for label in config_refusals(spec, inner))
    return out


@keras_layer("Bidirectional", reads=("layer", "backward_layer", "merge_mode"),
             check=_check_bidirectional)
def bidirectional(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                  xs: list[KTensor]) -> list[KTensor]:
    """Bidirectional(LSTM/GRU/SimpleRNN) -> one bidirectional ONNX op, merged as Keras."""
    fwd = {**cfg["layer"]["config"], "_keras_major": cfg.get("_keras_major", 3)}
    kind = cfg["layer"]["class_name"]
    bwd_spec = cfg.get("backward_layer") or cfg["layer"]
    bwd = {**bwd_spec["config"], "_keras_major": fwd["_keras_major"]}
    y, h, _ = _run(b, kind, [fwd, bwd], w, xs[0], "bidirectional")
    units, mode = int(fwd["units"]), cfg.get("merge_mode", "concat")
    if fwd.get("return_sequences"):
        both = b.Transpose(y, perm=[2, 0, 1, 3])  # (N, T, 2, U)
        split_axis, rank = 2, 3
    else:
        both = b.Transpose(h, perm=[1, 0, 2])  # (N, 2, U)
        split_axis, rank = 1, 2
    axes = b.const(np.asarray([split_axis], _I64))
    if mode == "concat":
        shape = [0, 0, 2 * units] if rank == 3 else [0, 2 * units]
        out = b.Reshape(both, b.const(np.asarray(shape, _I64)))
    elif mode in ("sum", "ave"):
        out = b.ReduceSum(both, axes, keepdims=0)
        if mode == "ave":
            out = b.Mul(out, b.const(np.float32(0.5)))
    elif mode == "mul":
        out = b.ReduceProd(both, axes, keepdims=0)
    else:
        raise LayerUnsupported(f"merge_mode={mode!r}")
    return [KTensor(out, rank, LAST)]


#: cell class -> the layer class whose ONNX op and weight layout it shares
_CELLS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}


def _cells(cfg: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The cell entries of a generic RNN (one, or a StackedRNNCells' list), or None."""
    cell = cfg.get("cell")
    if not isinstance(cell, dict):
        return None
    if cell.get("class_name") == "StackedRNNCells":
        inner = cell.get("config")
        cells = inner.get("cells") if isinstance(inner, dict) else None
        return cells if isinstance(cells, list) and cells else None
    return [cell]


def _check_rnn(cfg: Mapping[str, Any]) -> list[str]:
    """Each cell checked against the spec of the layer sharing its op (``cell.<key>``)."""
    cells = _cells(cfg)
    if cells is None:
        cell = cfg.get("cell")
        return [f"cell={show(cell.get('class_name') if isinstance(cell, dict) else cell)}"]
    out = []
    stacked = len(cells) > 1 or cfg["cell"].get("class_name") == "StackedRNNCells"
    for i, cell in enumerate(cells):
        where = f"cell.cells[{i}]" if stacked else "cell"
        cls = cell.get("class_name") if isinstance(cell, dict) else None
        if cls not in _CELLS or not isinstance(cell.get("config"), dict):
            out.append(f"{where}={show(cls)}")
            continue
        spec = layer_spec(_CELLS[str(cls)])
        assert spec is not None  # LSTM/GRU/SimpleRNN are registered in this module
        out.extend(f"{where}.{label}" for label in config_refusals(spec, cell["config"]))
        out.extend(f"{where}.{label}" for label in _check_activations(cell["config"]))
    return out


def _cell_keys(w: LayerWeights, cells: list[dict[str, Any]]) -> list[str]:
    """The path component holding each stacked cell's weights: in a .keras file the
    snake-cased class name numbered per class in list order (``lstm_cell``,
    ``lstm_cell_1``), in an .h5 file the cell's name."""
    if not any(n.startswith("cell/") for n in w.names):
        return [str(c["config"].get("name", "")) for c in cells]
    seen: dict[str, int] = {}
    keys = []
    for cell in cells:
        base = snake_case(str(cell["class_name"]))
        count = seen.get(base, 0)
        seen[base] = count + 1
        keys.append(base if count == 0 else f"{base}_{count}")
    return keys


def _cell_weights(w: LayerWeights, key: str) -> LayerWeights:
    """A stacked cell's weights: those whose path holds ``/<key>/``."""
    return w.subset([i for i, n in enumerate(w.names) if f"/{key}/" in f"/{n}"])


@keras_layer("RNN", reads=("cell", "return_sequences", "return_state", "go_backwards"),
             inert=("unroll", "zero_output_for_mask"),  # masks are refused
             defaults={"stateful": False, "time_major": False}, check=_check_rnn)
def rnn(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
        xs: list[KTensor]) -> list[KTensor]:
    """RNN(cell): one ONNX LSTM/GRU/RNN op per cell (StackedRNNCells run in order).

    Args:
        b: the graph builder.
        cfg: the layer config (``cell``: LSTMCell, GRUCell, SimpleRNNCell or
            StackedRNNCells of them).
        w: the cells' weights.
        xs: the input sequence (N, T, C).

    Returns:
        The output (last step, or every step with ``return_sequences``), then the states
        of every cell with ``return_state`` (h, and c for an LSTM cell).
    """
    cells = _cells(cfg)
    assert cells is not None  # _check_rnn ran first
    major = major_of(cfg)
    flags = {k: cfg.get(k, False) for k in ("return_sequences", "return_state",
                                            "go_backwards")}
    if len(cells) == 1 and cfg["cell"].get("class_name") != "StackedRNNCells":
        cell = cells[0]
        merged = {**cell["config"], **flags, "_keras_major": major}
        return _recurrent(b, _CELLS[cell["class_name"]], merged, w, xs)
    x = xs[0]
    v = last(b, x)
    if flags["go_backwards"]:  # the steps run in reverse; outputs stay in that order
        v = b.Slice(v, b.const(np.asarray([-1], _I64)),
                    b.const(np.asarray([np.iinfo(_I64).min], _I64)),
                    b.const(np.asarray([1], _I64)), b.const(np.asarray([-1], _I64)))
    states: list[KTensor] = []
    h: Any = None
    for cell, key in zip(cells, _cell_keys(w, cells), strict=True):
        kind, ccfg = _CELLS[cell["class_name"]], {**cell["config"], "_keras_major": major}
        cw = _cell_weights(w, key)
        y, h, c = _run(b, kind, [ccfg], cw, KTensor(v, 3, LAST), "forward")
        v = _seq_out(b, y, 1, int(ccfg["units"]), False)
        states += [KTensor(_state(b, s), 2, LAST) for s in (h, c) if s is not None]
    main = KTensor(v, 3, LAST) if flags["return_sequences"] else KTensor(_state(b, h), 2, LAST)
    return [main, *states] if flags["return_state"] else [main]
