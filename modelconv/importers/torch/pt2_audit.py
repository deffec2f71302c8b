"""The .pt2 (torch.export archive) audit: everything torch would evaluate, run or unpickle.

``torch.export.load`` and ``ExportedProgram.module()`` turn parts of the archive into code:

- ``guards_code`` strings are pasted into a Python function and ``exec``'d when the module is
  built, then run on every call (string constants of constant inputs are pasted too);
- every ``expr_str`` (symbolic sizes, strides, SymInt/SymBool/SymFloat values) goes through
  ``sympy.sympify``, which calls ``eval``;
- value names, keyword names, attribute paths (parameter/buffer FQNs) and
  ``forward_arg_names`` are pasted into the code FX generates for the graph;
- a node's ``target`` is resolved by ``getattr`` from ``torch``/``math``/``_operator`` and called;
- weights/constants marked ``use_pickle``, custom and opaque objects, legacy ``.pt`` members
  and ``sample_inputs`` are unpickled (some with ``weights_only=False``).

This module reads the archive with zipfile/json only (torch is not asked to open it) and
refuses whatever would run code, unless ``trust_code``: guards that are more than comparisons
of input sizes, shape expressions that are more than sympy arithmetic, names that are not
Python names, targets that are not torch operators (or are file ops), pickles. Even the guards
that pass are not run: torch builds the guard function from the guards *and* the example
inputs' keys and constant values, so :func:`disarm_program` drops both from the loaded program.
With ``trust_code`` torch's own behaviour is kept.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelconv.errors import ModelLoadError, UnsafeModelError, UnsupportedOpsError

_TRUST_HINT = "Pass trust_code=True (--trust-code) only if you trust the file"
#: node targets that are plain Python callables torch itself serializes (symbolic arithmetic)
_PLAIN_TARGETS = frozenset(
    [f"_operator.{n}" for n in ("eq", "ne", "le", "ge", "lt", "gt", "neg", "pos", "mul", "add",
                                "sub", "floordiv", "mod", "pow", "truediv", "and_", "or_",
                                "lshift", "rshift", "getitem", "not_")]
    + ["math.trunc"]
    + [f"torch.sym_{n}" for n in ("not", "int", "float", "ite", "max", "min", "sqrt", "sum")])
#: operator namespaces a graph may call; other namespaces are custom ops modelconv cannot convert
_NAMESPACES = frozenset({"aten", "prims", "higher_order"})
#: aten ops that read or write files
_FILE_OPS = frozenset({"save", "from_file"})
_OP_TARGET = re.compile(r"torch\.ops\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)"
                        r"(?:\.([A-Za-z][A-Za-z0-9_]*))?")
_FQN_SEGMENT = re.compile(r"[A-Za-z0-9_\-@]+")
_SYMBOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_TEXT = re.compile(r"-?[0-9][0-9.eE+\-/]*")
_BARE_SYMBOL = re.compile(r"[a-z]{1,4}[0-9]+")
# names sympy's srepr and torch's sympy printer use for shape expressions
_SYMPY_CALLS = frozenset([
    "Symbol", "Dummy", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max",
    "Min", "Abs", "floor", "ceiling", "sqrt", "Equality", "Unequality", "StrictLessThan",
    "LessThan", "StrictGreaterThan", "GreaterThan", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And",
    "Or", "Not", "Piecewise", "ExprCondPair", "ITE", "BooleanTrue", "BooleanFalse", "Infinity",
    "NegativeInfinity", "NaN", "ComplexInfinity", "Zero", "One", "NegativeOne", "Half",
    "IntInfinity", "NegativeIntInfinity", "FloorDiv", "ModularIndexing", "Where", "PythonMod",
    "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural",
    "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
])
_SYMPY_CONSTANTS = frozenset({"oo", "zoo", "nan", "true", "false", "int_oo"})
_TORCH_FUNCTION = re.compile(r"(OpaqueUnaryFn|BitwiseFn)_[a-z_]+")
_POW_CALLS = frozenset({"Pow", "PowByNatural", "FloatPow"})
_MAX_EXPR_CHARS = 20_000
_MAX_EXPR_DEPTH = 64
_MAX_EXPONENT = 64
_MAX_RATIO = 200  # a zip member inflating more than this (and past 64 MiB) is a bomb
_FQN_KEYS = frozenset({"parameter_name", "buffer_name", "tensor_constant_name",
                       "custom_obj_name", "user_input_name", "fqn"})


@dataclass
class Pt2Audit:
    """What the audit found that the importer must act on."""

    #: number of guards_code entries in the archive (not run unless trust_code)
    guards: int = 0
    #: reasons the archive would unpickle or run code (refused unless trust_code)
    unsafe: list[str] = field(default_factory=list)


def check_pt2_archive(path: Path, trust_code: bool) -> Pt2Audit:
    """Audit a .pt2 archive before torch opens it.

    Args:
        path: the archive.
        trust_code: when True, code-carrying fields are allowed (torch runs them).

    Returns:
        The audit (how many guards the importer has to strip).

    Raises:
        UnsafeModelError: a member or field would run code (and ``trust_code`` is False),
            or member paths escape the archive.
        UnsupportedOpsError: the graph calls operators of namespaces modelconv cannot convert.
        ModelLoadError: the archive or one of its JSON members is corrupt.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"not a valid .pt2 archive ({exc})", path=str(path)) from exc
    audit = Pt2Audit()
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if any(n.startswith("/") or ".." in n.split("/") for n in names):
            raise UnsafeModelError("archive member paths escape the archive", path=str(path))
        if len(set(names)) != len(names):
            # torch's zip reader and Python's may pick different copies of a duplicate
            raise UnsafeModelError("the archive holds two members with the same name; "
                                   "refusing it (what torch reads could differ from what "
                                   "was checked)", path=str(path))
        for info in infos:
            try:
                _check_member(zf, info, path, audit)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise ModelLoadError(f"archive member {info.filename} is corrupt ({exc})",
                                     path=str(path)) from exc
    if audit.unsafe and not trust_code:
        raise UnsafeModelError(
            "loading this .pt2 would run code from the file: "
            + "; ".join(sorted(set(audit.unsafe))[:10]), path=str(path), hint=_TRUST_HINT)
    return audit


def _check_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path,
                  audit: Pt2Audit) -> None:
    name = info.filename
    parts = name.split("/")
    if info.file_size > 64 << 20 and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
        raise UnsafeModelError(f"archive member {name} inflates from {info.compress_size} to "
                               f"{info.file_size} bytes (a zip bomb); refused", path=str(path))
    if "aotinductor" in parts:
        audit.unsafe.append("it contains AOTInductor compiled code")
    elif "models" in parts[:-1] or parts[-1] == "serialized_exported_program.json":
        program = _read_json(zf, name, path)
        audit.guards += _check_program(program, name, path, audit)
    elif name.endswith("_config.json") and parts[-2:-1] in (["weights"], ["constants"]):
        _check_payload_config(_read_json(zf, name, path), zf, name, parts, path, audit)
    elif "sample_inputs" in parts or (parts[-1].endswith(".pt") and (
            parts[-2:-1] in (["weights"], ["constants"])
            or parts[-1].startswith("serialized_"))):
        # torch tries weights_only=True first and falls back to weights_only=False: a member
        # that loads with weights_only=True never reaches the fallback
        _check_pickle_is_weights_only(zf.read(name), name, path, audit)


def _read_json(zf: zipfile.ZipFile, name: str, path: Path) -> Any:
    try:
        return json.loads(zf.read(name))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"archive member {name} is not valid JSON ({exc})",
                             path=str(path)) from exc


def _check_payload_config(config: Any, zf: zipfile.ZipFile, name: str, parts: list[str],
                          path: Path, audit: Pt2Audit) -> None:
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    if not isinstance(entries, dict):
        raise ModelLoadError(f"archive member {name} is malformed", path=str(path))
    folder = "/".join(parts[:-1])
    sizes = {i.filename: i.file_size for i in zf.infolist()}
    for fqn, meta in entries.items():
        where = f"{name}: '{fqn}'"
        _check_fqn(fqn, where, path, audit)
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{where} is malformed", path=str(path))
        file = str(meta.get("path_name", ""))
        if meta.get("use_pickle") or file.startswith(("custom_obj", "opaque_obj")):
            audit.unsafe.append(f"'{fqn}' in {parts[-1]} is a pickled object")
            continue
        for loc, value in _walk(meta.get("tensor_meta"), where):
            _check_leaf(loc, value, path, audit)
        nbytes = sizes.get(f"{folder}/{file}")
        if nbytes == 0 and _numel(meta.get("tensor_meta"), where, path):
            # torch allocates zeros of the declared size for an empty record
            raise ModelLoadError(f"{where} declares a non-empty tensor but its data "
                                 f"member {file} is empty", path=str(path))


def _numel(tensor_meta: Any, where: str, path: Path) -> int:
    count = 1
    try:
        for dim in tensor_meta["sizes"]:
            value = dim["as_int"]
            if not isinstance(value, int) or value < 0:
                raise ValueError(value)
            count *= value
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{where} has a malformed shape ({exc!r})",
                             path=str(path)) from exc
    return count


def _check_pickle_is_weights_only(data: bytes, member: str, path: Path,
                                  audit: Pt2Audit) -> None:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        audit.unsafe.append(f"archive member {member} holds pickled objects beyond tensors")
    except Exception as exc:
        raise ModelLoadError(f"archive member {member} is corrupt: {_first(exc)}",
                             path=str(path)) from exc


# -- the serialized ExportedProgram ------------------------------------------------------
def _check_program(program: Any, member: str, path: Path, audit: Pt2Audit) -> int:
    """Check one serialized program; returns its number of guards."""
    if not isinstance(program, dict):
        raise ModelLoadError(f"archive member {member} is not a serialized ExportedProgram",
                             path=str(path))
    guards = program.get("guards_code") or []
    if not isinstance(guards, list) or not all(isinstance(g, str) for g in guards):
        raise ModelLoadError(f"{member}: guards_code is malformed", path=str(path))
    for i, guard in enumerate(guards):
        _check_guard(guard, f"{member}.guards_code[{i}]", audit)
    foreign: dict[str, list[str]] = {}
    for loc, value in _walk({k: v for k, v in program.items() if k != "guards_code"}, member):
        _check_leaf(loc, value, path, audit, foreign)
    if foreign:
        raise UnsupportedOpsError(
            "torch operator", foreign, path=str(path),
            hint="The graph calls custom operators from libraries modelconv does not convert")
    return len(guards)


def _walk(obj: Any, loc: str) -> Iterator[tuple[str, Any]]:
    """(location, dict) for every dict in ``obj``, iteratively (no recursion limit)."""
    stack = [(loc, obj)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            yield where, item
            stack.extend((f"{where}.{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))


def _check_leaf(loc: str, node: dict[str, Any], path: Path, audit: Pt2Audit,
                foreign: dict[str, list[str]] | None = None) -> None:
    """Check the fields of one JSON object that torch evaluates or pastes into code."""
    for key, value in node.items():
        where = f"{loc}.{key}"
        if key == "expr_str":
            _check_expr(value, where, audit)
        elif key in ("name", "as_name"):
            if not _is_identifier(value):
                audit.unsafe.append(f"{where} = {_show(value)} is not a Python name (torch "
                                    "pastes it into generated code)")
        elif key in _FQN_KEYS:
            _check_fqn(value, where, path, audit)
        elif key == "forward_arg_names" and value is not None:
            if not isinstance(value, list) or not all(_is_identifier(v) for v in value):
                audit.unsafe.append(f"{where} holds names that are not Python names")
        elif key == "target" and "inputs" in node and "outputs" in node:
            _check_target(value, where, node, audit, foreign)
        elif key in ("tensor_values", "sym_int_values", "sym_bool_values",
                     "sym_float_values", "custom_obj_values") and isinstance(value, dict):
            bad = [k for k in value if not _is_identifier(k)]
            if bad:
                audit.unsafe.append(f"{where} has value names that are not Python names "
                                    f"({_show(bad[0])})")


def _is_identifier(value: Any) -> bool:
    # a keyword (an aten argument named ``from``) can only make generated code fail to
    # compile; anything that is not an identifier could add code to it
    return value == "" or (isinstance(value, str) and value.isidentifier() and value.isascii())


def _check_fqn(value: Any, where: str, path: Path, audit: Pt2Audit | None = None) -> None:
    if isinstance(value, str) and (value == "" or all(
            _FQN_SEGMENT.fullmatch(s) for s in value.split("."))):
        return
    reason = f"{where} = {_show(value)} is not an attribute path (torch pastes it into code)"
    if audit is None:
        raise UnsafeModelError(reason, path=str(path), hint=_TRUST_HINT)
    audit.unsafe.append(reason)


def _check_target(value: Any, where: str, node: dict[str, Any], audit: Pt2Audit,
                  foreign: dict[str, list[str]] | None) -> None:
    if not isinstance(value, str):
        audit.unsafe.append(f"{where} is not an operator name")
        return
    if value in _PLAIN_TARGETS:
        return
    match = _OP_TARGET.fullmatch(value)
    if match is None or (match.group(2).startswith("__") and  # __and__ is an op, __class__ not
                         f"{match.group(1)}::{match.group(2)}" not in _dunder_ops()):
        audit.unsafe.append(f"{where} = {_show(value)} calls a Python function, not a torch "
                            "operator")
        return
    namespace, op = match.group(1), match.group(2)
    if namespace == "aten" and op in _FILE_OPS:
        audit.unsafe.append(f"{where} = {value} reads or writes files")
    elif namespace not in _NAMESPACES and foreign is not None:
        foreign.setdefault(value, []).append(str(node.get("name") or where))
    elif namespace != "higher_order" and match.group(3) is None:
        audit.unsafe.append(f"{where} = {_show(value)} names an operator without overload")


def _check_guard(code: str, where: str, audit: Pt2Audit) -> None:
    """A guard torch wrote compares input sizes; anything else is code smuggled in."""
    try:
        problem = _guard_problem(ast.parse(code, mode="eval").body, 0) \
            if len(code) <= _MAX_EXPR_CHARS else "too long"
    except (SyntaxError, ValueError, RecursionError) as exc:
        problem = f"it does not parse ({type(exc).__name__})"
    if problem:
        audit.unsafe.append(f"{where} = {_show(code)} is not a shape check ({problem}); "
                            "torch would exec it")


def _guard_problem(node: ast.AST, depth: int) -> str | None:
    """Why guard expression ``node`` is more than arithmetic on ``L[...]`` input sizes."""
    if depth > _MAX_EXPR_DEPTH:
        return "nested too deeply"
    sub = [n for n in ast.iter_child_nodes(node) if not isinstance(n, (ast.operator, ast.cmpop,
                                                                        ast.boolop, ast.unaryop,
                                                                        ast.expr_context))]
    if isinstance(node, ast.Constant):
        ok = node.value is None or isinstance(node.value, (bool, int, float))
        return None if ok else f"constant {_show(node.value)}"
    if isinstance(node, ast.Name):
        return None if node.id == "inf" else f"name {node.id!r}"
    if isinstance(node, ast.Subscript):
        index = node.slice
        if not (isinstance(index, ast.Constant) and (
                isinstance(index.value, int) or (isinstance(index.value, str)
                                                 and _FQN_SEGMENT.fullmatch(index.value)))):
            return "a subscript that is not a plain key"
        if isinstance(node.value, ast.Name) and node.value.id == "L":
            return None
        return _guard_problem(node.value, depth + 1)
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            return f"attribute {node.attr!r}"
        return _guard_problem(node.value, depth + 1)
    if isinstance(node, ast.Call):
        func = node.func
        if node.keywords or not (
                (isinstance(func, ast.Attribute) and (
                    func.attr in _GUARD_METHODS or (isinstance(func.value, ast.Name)
                                                    and func.value.id == "math"
                                                    and func.attr in _GUARD_MATH)))
                or (isinstance(func, ast.Name) and func.id in _GUARD_FUNCTIONS)):
            return f"call of {ast.unparse(func)!r}"
        if isinstance(func, ast.Attribute) and not (isinstance(func.value, ast.Name)
                                                    and func.value.id == "math"):
            sub = [func.value, *node.args]
        else:
            sub = list(node.args)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and \
            _big_exponent(node.right):
        return "exponent too large"
    elif not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp)) \
            or isinstance(getattr(node, "op", None), (ast.MatMult, ast.Invert)):
        return f"{type(node).__name__} syntax"
    return next(filter(None, (_guard_problem(n, depth + 1) for n in sub)), None)


_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_MATH = frozenset({"floor", "ceil", "trunc", "sqrt", "isnan", "log2", "inf"})
_GUARD_FUNCTIONS = frozenset({"max", "min", "abs", "int", "float", "round", "Max", "Min",
                              "Mod", "FloorDiv", "Eq", "Ne"})


def _check_expr(value: Any, where: str, audit: Pt2Audit) -> None:
    """``expr_str`` goes through sympy.sympify (eval): only shape arithmetic may pass."""
    if not isinstance(value, str) or len(value) > _MAX_EXPR_CHARS:
        audit.unsafe.append(f"{where} is not a shape expression")
        return
    try:
        tree = ast.parse(value, mode="eval")
        problem = _expr_problem(tree.body, 0)
    except (SyntaxError, ValueError, RecursionError) as exc:
        problem = f"it does not parse ({type(exc).__name__})"
    if problem:
        audit.unsafe.append(f"{where} = {_show(value)} is not a plain shape expression "
                            f"({problem}); sympy would eval it")


def _expr_problem(node: ast.AST, depth: int) -> str | None:
    """Why ``node`` is not plain shape arithmetic (None when it is)."""
    if depth > _MAX_EXPR_DEPTH:
        return "nested too deeply"
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or (isinstance(node.value, (int, float))
                                            and abs(node.value) < 2 ** 63):
            return None
        return f"constant {node.value!r}"
    if isinstance(node, ast.Name):
        ok = node.id in _SYMPY_CONSTANTS or (_BARE_SYMBOL.fullmatch(node.id) is not None
                                             and node.id not in _builtin_and_sympy_names())
        return None if ok else f"name {node.id!r}"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        return _expr_problem(node.operand, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult,
                                                            ast.Div, ast.FloorDiv, ast.Mod,
                                                            ast.Pow)):
        if isinstance(node.op, ast.Pow) and _big_exponent(node.right):
            return "exponent too large"
        return _expr_problem(node.left, depth + 1) or _expr_problem(node.right, depth + 1)
    if isinstance(node, ast.Compare):
        return next(filter(None, (_expr_problem(n, depth + 1)
                                  for n in [node.left, *node.comparators])), None)
    if isinstance(node, ast.BoolOp):
        return next(filter(None, (_expr_problem(n, depth + 1) for n in node.values)), None)
    if isinstance(node, ast.Call):
        return _call_problem(node, depth)
    return f"{type(node).__name__} syntax"


def _call_problem(node: ast.Call, depth: int) -> str | None:
    func = node.func.id if isinstance(node.func, ast.Name) else None
    if func is None or not (func in _SYMPY_CALLS or _TORCH_FUNCTION.fullmatch(func)):
        return f"call of {ast.unparse(node.func)!r}"
    args = list(node.args)
    if func in ("Symbol", "Dummy", "Float", "Integer", "Rational") and args and \
            isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        pattern = _SYMBOL_NAME if func in ("Symbol", "Dummy") else _NUMBER_TEXT
        if not pattern.fullmatch(args[0].value):
            return f"{func} of {args[0].value!r}"
        args = args[1:]
    if func in _POW_CALLS and len(args) == 2 and _big_exponent(args[1]):
        return "exponent too large"
    for kw in node.keywords:
        if kw.arg is None or not (isinstance(kw.value, ast.Constant)
                                  and isinstance(kw.value.value, (bool, int))):
            return f"keyword argument of {func}"
    return next(filter(None, (_expr_problem(a, depth + 1) for a in args)), None)


def _big_exponent(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and node.args:
        node = node.args[0]
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and \
        abs(node.value) > _MAX_EXPONENT


_NAMES_CACHE: set[str] = set()
_DUNDER_OPS: set[str] = set()


def _dunder_ops() -> set[str]:
    """Registered operators whose names are dunders (``aten::__and__``)."""
    if not _DUNDER_OPS:
        import torch

        _DUNDER_OPS.update(s.name for s in torch._C._jit_get_all_schemas()
                           if "::__" in s.name)
        _DUNDER_OPS.add("")  # computed once even if there were none
    return _DUNDER_OPS


def _builtin_and_sympy_names() -> set[str]:
    if not _NAMES_CACHE:
        import builtins

        import sympy

        _NAMES_CACHE.update(dir(builtins), dir(sympy))
    return _NAMES_CACHE


def disarm_program(ep: Any) -> None:
    """Drop what ``ExportedProgram.module()`` would turn into an exec'd guard function.

    Args:
        ep: a loaded ``torch.export.ExportedProgram``; changed in place.

    torch builds the function from ``guards_code`` and from the example inputs (their keys
    and constant values are pasted into it), and skips it when there are no example inputs.
    """
    ep._guards_code = []
    ep.example_inputs = None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
