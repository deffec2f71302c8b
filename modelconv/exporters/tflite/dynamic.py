"""Dynamic dims in a TFLite file: find every shape that follows a dynamic input dim.

The exporter lowers a graph specialised to static input shapes (shape inference and constant
folding need them), so a Reshape target, a BroadcastTo shape or a Slice end derived from the
batch is a constant like ``[1, 8]``. To write a file that runs at other sizes the exporter
lowers the model twice: at the chosen sizes (A) and at a probe where every dynamic dim is
shifted (B, :func:`.prepare.fix_input_shapes` with ``probe``). Both lowerings are the same
operator list; what differs between them follows the dynamic dims:

- a run-time tensor whose dim differs gets -1 in its ``shape_signature``;
- a constant that differs is an input derived from a dynamic dim, rewritten per consumer:
  RESHAPE targets get -1 for one dynamic entry and the others read at run time (SHAPE of the
  data input or of a graph input, GATHER, CONCATENATION); BROADCAST_TO shapes likewise
  without -1; STRIDED_SLICE ends at the end of a dynamic dim become ``end_mask`` bits or
  negative ends; SPLIT_V gets -1 for its one dynamic size.

Anything else that differs (an op's options, a folded constant whose size follows a dim, a
constant read by another kernel) cannot be expressed: :func:`generalize` returns the reason
and the exporter writes a static file (no -1) with a warning, never a file declaring dynamic
dims it cannot run at.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import Op, TflGraph


class _Rewrite:
    """New ops (inserted before op ``k``) and tensors for the run-time shapes."""

    def __init__(self, a: TflGraph, b: TflGraph):
        self.a, self.b = a, b
        self.before: dict[int, list[Op]] = {}
        self.shape_of: dict[tuple[int, int], int] = {}  # (op k, source tensor) -> SHAPE out
        self.masks: dict[int, int] = {}  # op k -> STRIDED_SLICE end_mask bits to add

    def _shape(self, k: int, src: int) -> int:
        key = (k, src)
        if key not in self.shape_of:
            t = self.a.tensors[src]
            out = self.a.add_tensor(f"{t.name}/shape", np.int32, [len(t.shape)])
            opts = s.ShapeOptionsT()
            opts.outType = s.TensorType.INT32
            self.before.setdefault(k, []).append(Op("SHAPE", [src], [out], opts))
            self.shape_of[key] = out
        return self.shape_of[key]

    def _source(self, sources: list[tuple[int, int]], va: int, vb: int) -> tuple[int, int] | None:
        """(tensor in A, axis) whose dim is ``va`` in A and ``vb`` in B."""
        for ta, tb in sources:
            sa, sb = self.a.tensors[ta].shape, self.b.tensors[tb].shape
            for ax, (da, db) in enumerate(zip(sa, sb, strict=True)):
                if da == va and db == vb:
                    return ta, ax
        return None

    def run_time_shape(self, k: int, sources: list[tuple[int, int]], va: np.ndarray,
                       vb: np.ndarray, allow_minus_one: bool) -> int | str:
        """A tensor holding the shape that is ``va`` in A and ``vb`` in B, or a reason."""
        dyn = [i for i in range(va.size) if va[i] != vb[i]]
        if allow_minus_one and len(dyn) == 1:
            vals = va.astype(np.int32).copy()
            vals[dyn[0]] = -1
            return self.a.add_const(vals, "shape_dynamic")
        found = {i: self._source(sources, int(va[i]), int(vb[i])) for i in dyn}
        unmatched = [i for i, f in found.items() if f is None]
        if len(unmatched) > (1 if allow_minus_one else 0):
            return f"shape entries {unmatched} follow the dynamic dims but no tensor dim"
        pieces: list[int] = []
        run: list[int] = []
        for i in range(va.size):
            f = found.get(i)
            if f is None:
                run.append(-1 if i in unmatched else int(va[i]))
                continue
            if run:
                pieces.append(self.a.add_const(np.asarray(run, np.int32), "shape_part"))
                run = []
            shp = self._shape(k, f[0])
            one = self.a.add_tensor(f"{self.a.tensors[shp].name}_{f[1]}", np.int32, [1])
            opts = s.GatherOptionsT()
            opts.axis = 0
            self.before.setdefault(k, []).append(Op("GATHER", [shp, self.a.add_const(
                np.asarray([f[1]], np.int32), "axis_index")], [one], opts))
            pieces.append(one)
        if run:
            pieces.append(self.a.add_const(np.asarray(run, np.int32), "shape_part"))
        if len(pieces) == 1:
            return pieces[0]
        out = self.a.add_tensor("shape_run_time", np.int32, [int(va.size)])
        opts_c = s.ConcatenationOptionsT()
        opts_c.axis = 0
        self.before.setdefault(k, []).append(Op("CONCATENATION", pieces, [out], opts_c))
        return out


def _same_options(x: Any, y: Any) -> bool:
    if x is None or y is None:
        return x is y
    if type(x) is not type(y):
        return False
    for key, vx in vars(x).items():
        vy = getattr(y, key, None)
        if isinstance(vx, np.ndarray | list) or isinstance(vy, np.ndarray | list):
            if not np.array_equal(np.asarray(vx), np.asarray(vy)):
                return False
        elif vx != vy:
            return False
    return True


def _slice_ends(rw: _Rewrite, k: int, op: Op, ta: int, tb: int) -> int | str:
    """STRIDED_SLICE ends that follow the dynamic dim: end_mask or an end counted back."""
    a, b = rw.a, rw.b
    ea, eb = a.tensors[ta].data, b.tensors[tb].data
    assert ea is not None and eb is not None
    if ea.shape != eb.shape:
        return "STRIDED_SLICE ends of another rank"
    xa, xb = a.tensors[op.inputs[0]].shape, b.tensors[op.inputs[0]].shape
    out = ea.astype(np.int32).copy()
    for i in range(ea.size):
        if ea[i] == eb[i]:
            continue
        back_a, back_b = int(ea[i]) - xa[i], int(eb[i]) - xb[i]
        if back_a != back_b:
            return "a STRIDED_SLICE end follows a dynamic dim other than its own"
        if back_a == 0:
            rw.masks[k] = rw.masks.get(k, 0) | (1 << i)
        else:
            out[i] = back_a
    return a.add_const(out, "end_dynamic")


def generalize(a: TflGraph, b: TflGraph) -> str | None:
    """Turn ``a`` (lowered at the chosen sizes) into a graph that runs at any size of the
    dynamic dims, comparing it with ``b`` (the same model lowered at the probe sizes).

    Args:
        a: the graph to write; edited in place (shape signatures, shape inputs, new ops).
        b: the probe graph (read only).

    Returns:
        None when done, else why the dims cannot stay dynamic (``a``'s operators are then
        unchanged; it may hold unused new tensors, which ``prune`` drops).
    """
    if [op.code for op in a.ops] != [op.code for op in b.ops] or len(a.inputs) != len(b.inputs):
        return "the graph lowers to different operators at other sizes"
    rw = _Rewrite(a, b)
    replace: list[tuple[Op, int, int]] = []
    sources_b = list(zip(a.inputs, b.inputs, strict=True))

    signatures: dict[int, list[int]] = {}

    def mark(ta: int, tb: int) -> None:
        sa, sb = a.tensors[ta].shape, b.tensors[tb].shape
        if len(sa) != len(sb):
            raise _Static(f"tensor '{a.tensors[ta].name}' changes rank with the dynamic dims")
        sig = signatures.get(ta) or a.tensors[ta].shape_signature or list(sa)
        sig = [-1 if x != y else g for x, y, g in zip(sa, sb, sig, strict=True)]
        if -1 in sig:
            signatures[ta] = sig

    try:
        for ta, tb in sources_b:
            mark(ta, tb)
        for k, (oa, ob) in enumerate(zip(a.ops, b.ops, strict=True)):
            if len(oa.inputs) != len(ob.inputs) or len(oa.outputs) != len(ob.outputs):
                return f"{oa.code} has other operands at other sizes"
            for ta, tb in zip(oa.outputs, ob.outputs, strict=True):
                mark(ta, tb)
            for pos, (ta, tb) in enumerate(zip(oa.inputs, ob.inputs, strict=True)):
                if ta < 0 or tb < 0:
                    continue
                da, db = a.tensors[ta].data, b.tensors[tb].data
                if da is None or db is None:
                    if (da is None) != (db is None):
                        return f"an input of {oa.code} is constant at one size only"
                    mark(ta, tb)
                    continue
                if da.shape == db.shape and np.array_equal(da, db):
                    continue
                new = _const_use(rw, k, oa, pos, ta, tb, sources_b)
                if isinstance(new, str):
                    return new
                replace.append((oa, pos, new))
            if not _same_options(oa.options, ob.options):
                return f"the options of {oa.code} follow the dynamic dims"
    except _Static as exc:
        return str(exc)
    for ta, sig in signatures.items():
        a.tensors[ta].shape_signature = sig
    for op, pos, new in replace:
        op.inputs[pos] = new
    for k, bits in rw.masks.items():
        a.ops[k].options.endMask = int(a.ops[k].options.endMask or 0) | bits
    ops: list[Op] = []
    for k, op in enumerate(a.ops):
        ops.extend(rw.before.get(k, []))
        ops.append(op)
    a.ops = ops
    return None


class _Static(Exception):
    """Internal: a difference between the two lowerings that cannot stay dynamic."""


def _const_use(rw: _Rewrite, k: int, op: Op, pos: int, ta: int, tb: int,
               sources_b: list[tuple[int, int]]) -> int | str:
    """The tensor replacing constant input ``pos`` of op ``k`` (differing between A and B)."""
    a, b = rw.a, rw.b
    da, db = a.tensors[ta].data, b.tensors[tb].data
    assert da is not None and db is not None
    what = f"a constant input {pos} of {op.code} ('{a.tensors[ta].name}') follows the dynamic dims"
    if da.shape != db.shape or da.ndim != 1 or da.dtype.kind not in "iu":
        return what
    data_in = [(op.inputs[0], b.ops[k].inputs[0])] if op.inputs and op.inputs[0] >= 0 else []
    if op.code == "RESHAPE" and pos == 1:
        return rw.run_time_shape(k, data_in + sources_b, da, db, allow_minus_one=True)
    if op.code == "BROADCAST_TO" and pos == 1:
        return rw.run_time_shape(k, data_in + sources_b, da, db, allow_minus_one=False)
    if op.code == "STRIDED_SLICE" and pos == 2:
        return _slice_ends(rw, k, op, ta, tb)
    if op.code == "SPLIT_V" and pos == 1 and int((da != db).sum()) == 1:
        vals = da.astype(np.int32).copy()
        vals[np.flatnonzero(da != db)[0]] = -1
        return a.add_const(vals, "size_splits_dynamic")
    return what


def copy_graph(graph: TflGraph) -> TflGraph:
    """A copy of ``graph`` that :func:`generalize` can edit (constant data is shared).

    Args:
        graph: the graph to copy.

    Returns:
        New tensor and operator records over the same arrays.
    """
    out = TflGraph(tensors=[dataclasses.replace(t, shape=list(t.shape)) for t in graph.tensors],
                   ops=[Op(op.code, list(op.inputs), list(op.outputs), copy.deepcopy(op.options))
                        for op in graph.ops],
                   inputs=list(graph.inputs), outputs=list(graph.outputs),
                   input_names=list(graph.input_names), output_names=list(graph.output_names))
    out._names = set(graph._names)
    out._consts = dict(graph._consts)
    return out


def make_static(graph: TflGraph) -> None:
    """Drop every shape signature: the file runs at the shapes it was lowered at only."""
    for t in graph.tensors:
        t.shape_signature = None
