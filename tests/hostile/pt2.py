"""Hostile torch.export (.pt2) archives: one per field torch evaluates, runs or unpickles.

Every payload only tries to create ``MARKER`` in the case folder. ``LIVE`` lists the payloads
that plain torch really runs (``torch.export.load`` + ``module()`` + a call), so a test can
show the corpus is not toothless; the others are refused before torch could reach them.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.hostile.corpus import MARKER, Case, _RunsCode, convert_args, zip_bytes

PT2_CASES: list[Case] = []
#: case name -> how to call the loaded program so that plain torch runs the payload
LIVE: dict[str, Callable[[Any], Any]] = {}

Program = dict[str, Any]


def _touch(d: Path) -> str:
    return f"__import__('os').system('touch {d / MARKER}')"


def base_pt2(d: Path, name: str = "m.pt2") -> Path:
    """A small exported Linear + ReLU (dynamic batch, so it has symbolic sizes)."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    batch = torch.export.Dim("batch", min=2, max=64)
    program = torch.export.export(net, (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(d / name))
    return d / name


def edit_pt2(src: Path, dst: Path, edit: Callable[[Program], None] | None = None,
             extra: Callable[[dict[str, bytes]], None] | None = None) -> Path:
    """Copy ``src`` to ``dst`` with its program JSON edited and/or its members changed."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    for name in members:
        if "/models/" in name and edit is not None:
            program = json.loads(members[name])
            edit(program)
            members[name] = json.dumps(program).encode()
    if extra is not None:
        extra(members)
    dst.write_bytes(zip_bytes(members, compress=False))
    return dst


def _user_input(program: Program) -> str:
    specs = program["graph_module"]["signature"]["input_specs"]
    return next(s["user_input"]["arg"]["as_tensor"]["name"] for s in specs  # type: ignore
                if "user_input" in s)


def _nodes(program: Program) -> list[dict[str, Any]]:
    return program["graph_module"]["graph"]["nodes"]  # type: ignore[no-any-return]


def pt2_case(name: str, error: str, live: Callable[[Any], Any] | None = None) -> Callable[
        [Callable[[Path], Path]], Callable[[Path], Path]]:
    """Register a builder that writes a hostile .pt2 and returns its path."""

    def deco(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        def build(d: Path) -> list[str]:
            return convert_args(fn(d), d)

        PT2_CASES.append(Case(f"pt2-{name}", build, error, needs=("torch",)))
        BUILDERS[f"pt2-{name}"] = fn
        if live is not None:
            LIVE[f"pt2-{name}"] = live
        return fn

    return deco


BUILDERS: dict[str, Callable[[Path], Path]] = {}


def _call(program: Any) -> Any:
    import torch

    return program.module()(torch.randn(2, 4))


@pt2_case("guards-code", "UnsafeModelError", live=_call)
def _guards(d: Path) -> Path:
    def edit(p: Program) -> None:
        p["guards_code"] = [f"{_touch(d)} or True"]

    return edit_pt2(base_pt2(d, "base.pt2"), d / "guards.pt2", edit)


@pt2_case("sympy-expr-str", "UnsafeModelError", live=lambda program: program)
def _expr(d: Path) -> Path:
    def edit(p: Program) -> None:
        sizes = p["graph_module"]["graph"]["tensor_values"][_user_input(p)]["sizes"]
        sizes[0] = {"as_expr": {"expr_str": _touch(d), "hint": {"as_int": 2}}}

    return edit_pt2(base_pt2(d, "base.pt2"), d / "expr.pt2", edit)


@pt2_case("sympy-sym-int-value", "UnsafeModelError")
def _sym_int(d: Path) -> Path:
    def edit(p: Program) -> None:
        p["graph_module"]["graph"]["sym_int_values"]["evil"] = {
            "as_expr": {"expr_str": f"Symbol('s0') + {_touch(d)}", "hint": None}}

    return edit_pt2(base_pt2(d, "base.pt2"), d / "symint.pt2", edit)


@pt2_case("node-name-injection", "UnsafeModelError")
def _node_name(d: Path) -> Path:
    def edit(p: Program) -> None:
        text = json.dumps(p).replace('"relu"', json.dumps(f"relu = {_touch(d)}; relu"))
        p.clear()
        p.update(json.loads(text))

    return edit_pt2(base_pt2(d, "base.pt2"), d / "name.pt2", edit)


@pt2_case("forward-arg-names", "UnsafeModelError")
def _forward_args(d: Path) -> Path:
    def edit(p: Program) -> None:
        signature = p["graph_module"]["module_call_graph"][0]["signature"]
        signature["forward_arg_names"] = [f"x=({_touch(d)})"]

    return edit_pt2(base_pt2(d, "base.pt2"), d / "fwd.pt2", edit)


@pt2_case("parameter-fqn-injection", "UnsafeModelError")
def _fqn(d: Path) -> Path:
    evil = f'0")({_touch(d)}'

    def edit(p: Program) -> None:
        for spec in p["graph_module"]["signature"]["input_specs"]:
            if "parameter" in spec:
                spec["parameter"]["parameter_name"] = evil

    return edit_pt2(base_pt2(d, "base.pt2"), d / "fqn.pt2", edit)


@pt2_case("target-python-callable", "UnsafeModelError")
def _target(d: Path) -> Path:
    def edit(p: Program) -> None:
        node = _nodes(p)[-1]
        node["target"] = "torch.serialization.os.system"
        node["inputs"] = [{"name": "command", "arg": {"as_string": f"touch {d / MARKER}"},
                           "kind": 1}]

    return edit_pt2(base_pt2(d, "base.pt2"), d / "target.pt2", edit)


@pt2_case("target-namespace-attribute", "UnsafeModelError")
def _namespace_attr(d: Path) -> Path:
    def edit(p: Program) -> None:
        _nodes(p)[-1]["target"] = "torch.ops.aten.__class__"  # a type: callable, not an op

    return edit_pt2(base_pt2(d, "base.pt2"), d / "attr.pt2", edit)


@pt2_case("target-aten-save", "UnsafeModelError")
def _aten_save(d: Path) -> Path:
    def edit(p: Program) -> None:
        node = _nodes(p)[-1]
        node["target"] = "torch.ops.aten.save.default"
        node["inputs"].append({"name": "filename", "arg": {"as_string": str(d / MARKER)},
                               "kind": 1})

    return edit_pt2(base_pt2(d, "base.pt2"), d / "save.pt2", edit)


@pt2_case("hop-keyword-name", "UnsafeModelError")
def _kwarg_name(d: Path) -> Path:
    def edit(p: Program) -> None:
        _nodes(p)[-1]["inputs"][0]["name"] = f"x=({_touch(d)})"

    return edit_pt2(base_pt2(d, "base.pt2"), d / "kwarg.pt2", edit)


@pt2_case("custom-namespace-op", "UnsupportedOpsError")
def _custom_op(d: Path) -> Path:
    def edit(p: Program) -> None:
        _nodes(p)[-1]["target"] = "torch.ops.evil_corp.run.default"

    return edit_pt2(base_pt2(d, "base.pt2"), d / "custom.pt2", edit)


def _replace_weight(members: dict[str, bytes], d: Path) -> None:
    import io

    import torch

    for name in list(members):
        if name.endswith("weights_config.json"):
            config = json.loads(members[name])
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            members[name] = json.dumps(config).encode()
            folder = name.rsplit("/", 1)[0]
            buf = io.BytesIO()
            torch.save(_RunsCode(d), buf)
            members[f"{folder}/{first['path_name']}"] = buf.getvalue()


@pt2_case("pickled-weight", "UnsafeModelError")
def _pickled_weight(d: Path) -> Path:
    return edit_pt2(base_pt2(d, "base.pt2"), d / "pw.pt2",
                    extra=lambda m: _replace_weight(m, d))


@pt2_case("pickled-sample-inputs", "UnsafeModelError")
def _pickled_inputs(d: Path) -> Path:
    def extra(members: dict[str, bytes]) -> None:
        for name in members:
            if "/sample_inputs/" in name:
                members[name] = pickle.dumps(_RunsCode(d), protocol=2)

    return edit_pt2(base_pt2(d, "base.pt2"), d / "si.pt2", extra=extra)


@pt2_case("opaque-object-constant", "UnsafeModelError")
def _opaque(d: Path) -> Path:
    def extra(members: dict[str, bytes]) -> None:
        for name in list(members):
            if name.endswith("constants_config.json"):
                members[name] = json.dumps({"config": {"evil": {
                    "path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                    "tensor_meta": None}}}).encode()
                members[name.rsplit("/", 1)[0] + "/opaque_obj_0"] = pickle.dumps(_RunsCode(d))

    return edit_pt2(base_pt2(d, "base.pt2"), d / "opaque.pt2", extra=extra)


@pt2_case("empty-weight-declares-huge-tensor", "ModelLoadError")
def _zero_bytes(d: Path) -> Path:
    def extra(members: dict[str, bytes]) -> None:
        for name in list(members):
            if name.endswith("weights_config.json"):
                config = json.loads(members[name])
                first = next(iter(config["config"].values()))
                first["tensor_meta"]["sizes"] = [{"as_int": 1 << 20}, {"as_int": 1 << 20}]
                members[name] = json.dumps(config).encode()
                members[name.rsplit("/", 1)[0] + "/" + first["path_name"]] = b""

    return edit_pt2(base_pt2(d, "base.pt2"), d / "zeros.pt2", extra=extra)


@pt2_case("duplicate-member", "UnsafeModelError")
def _duplicate(d: Path) -> Path:
    src = base_pt2(d, "base.pt2")
    with zipfile.ZipFile(src) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    model = next(n for n, _ in members if "/models/" in n)
    out = d / "dup.pt2"
    with zipfile.ZipFile(out, "w") as zf:
        for n, data in members:
            zf.writestr(n, data)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
            zf.writestr(model, json.dumps({"guards_code": [_touch(d)]}))
    return out
