"""The ``modelconv`` command: convert, verify, inspect, formats, ops.

Exit codes: 0 success/equivalent, 1 not equivalent, 2 any other error, 3 converted but
not verified (verification was requested but could not run).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

EXIT_OK, EXIT_NOT_EQUIVALENT, EXIT_ERROR, EXIT_NOT_VERIFIED = 0, 1, 2, 3

EXIT_CODES_HELP = """exit codes:
  0  converted / equivalent (verified within tolerance)
  1  not equivalent: the converted model's outputs differ beyond tolerance
  2  error: the model could not be read, converted or run, or the two models'
     signatures do not correspond
  3  converted, not verified: verification was requested (the default) but could not
     run (e.g. the source's framework is missing or cannot load the file); verify with
     --inputs X.npz --reference OUTPUTS.npz, or pass --no-verify to skip it knowingly
"""


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad shape '{text}' (use e.g. 1,3,224,224)") from exc


def _parse_dim(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise argparse.ArgumentTypeError(f"bad --dim '{text}' (use NAME=VALUE, e.g. batch=4)")
    return name, int(value)


_DYNAMIC_DIM = re.compile(r"^(?P<input>[^:=]+):(?P<axis>-?\d+)=(?P<name>[A-Za-z_][\w]*)"
                          r"(?::(?P<min>\d*):(?P<max>\d*))?$")


def _parse_dynamic_dim(text: str) -> tuple[str, int, str, int | None, int | None]:
    m = _DYNAMIC_DIM.match(text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"bad --dynamic-dim '{text}' (use INPUT:AXIS=NAME or INPUT:AXIS=NAME:MIN:MAX, "
            "e.g. input_ids:1=seq:1:512)")
    lo = int(m["min"]) if m["min"] else None
    hi = int(m["max"]) if m["max"] else None
    if lo is not None and hi is not None and lo > hi:
        raise argparse.ArgumentTypeError(f"bad --dynamic-dim '{text}': MIN {lo} > MAX {hi}")
    return m["input"], int(m["axis"]), m["name"], lo, hi


def _parse_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"bad name list '{text}' (use a,b,c; no repeats)")
    return names


def _h(name: str) -> str:
    """The help text of ConvertOptions field ``name``: one source of truth with the API."""
    from modelconv.options import option_help

    return option_help(name)


def _add_source_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("source")
    g.add_argument("--from", dest="source_format", metavar="FMT", help=_h("source_format"))
    g.add_argument("--trust-code", action="store_true",
                   help=_h("trust_code"))
    g.add_argument("--allow-package", dest="allow_packages", action="append", metavar="PKG",
                   help=_h("allow_packages"))
    g.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                   help=_h("model"))
    g.add_argument("--input-shape", action="append", type=_parse_shape, metavar="SHAPE",
                   help=_h("input_shapes"))
    g.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   help=_h("input_dtypes"))
    g.add_argument("--dynamic-batch", action="store_true",
                   help=_h("dynamic_batch"))
    g.add_argument("--dynamic-dim", action="append", type=_parse_dynamic_dim, default=[],
                   metavar="INPUT:AXIS=NAME[:MIN:MAX]",
                   help="make one input dim symbolic (repeatable; the same NAME ties dims "
                   "across inputs; MIN/MAX bound it), e.g. input_ids:1=seq:1:512")
    g.add_argument("--input-names", type=_parse_names, metavar="A,B,...",
                   help=_h("input_names"))
    g.add_argument("--output-names", type=_parse_names, metavar="A,B,...",
                   help=_h("output_names"))
    g.add_argument("--signature", default="serving_default", help=_h("signature"))


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("verification")
    g.add_argument("--inputs", metavar="FILE", help=_h("inputs"))
    g.add_argument("--reference", metavar="OUTPUTS.npz",
                   help=_h("reference"))
    g.add_argument("--samples", type=int, metavar="N",
                   help=_h("samples"))
    g.add_argument("--rtol", type=float,
                   help=_h("rtol"))
    g.add_argument("--atol", type=float,
                   help=_h("atol"))
    g.add_argument("--seed", type=int, default=0, help=_h("seed"))
    g.add_argument("--batch-size", type=int, default=1, help=_h("batch_size"))
    g.add_argument("--dim", action="append", type=_parse_dim, default=[], metavar="NAME=VALUE",
                   help="value for a symbolic dimension in generated inputs")
    g.add_argument("--localize", action="store_true",
                   help=_h("localize"))
    g.add_argument("--report", metavar="FILE", help="write the report (.json or .html)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--quiet", action="store_true",
                   help="no progress lines on stderr (the files written and the verdict are "
                        "still printed; --json for machine output)")
    g.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout (outputs, formats, timings, "
                        "warnings, report, exit_status) and no progress")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (importing no ML framework)."""
    parser = argparse.ArgumentParser(
        prog="modelconv",
        description="Convert trained models between frameworks and verify the result.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command")

    c = sub.add_parser("convert", help="convert SRC to DST and verify it",
                       epilog=EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", dest="target_format", metavar="FMT", help=_h("target_format"))
    c.add_argument("--opset", type=int, help=_h("opset"))
    c.add_argument("--external-data", action="store_true", default=None,
                   help=_h("external_data"))
    c.add_argument("--no-verify", dest="verify", action="store_false", help="skip verification")
    c.add_argument("--overwrite", action="store_true", help=_h("overwrite"))
    c.add_argument("--timeout", type=float, metavar="SECONDS", help=_h("timeout"))
    c.add_argument("--fp16", action="store_true", help=_h("fp16"))
    c.add_argument("--quantize", choices=["dynamic", "int8"], help=_h("quantize"))
    c.add_argument("--calibration", metavar="DIR|FILE|random",
                   help=_h("calibration"))
    c.add_argument("--int8-io", action="store_true", help=_h("int8_io"))
    c.add_argument("--nhwc-io", action="store_true", help=_h("nhwc_io"))
    _add_output_options(c)
    _add_source_options(c)
    _add_verify_options(c)

    v = sub.add_parser("verify", help="compare SRC with its conversion DST",
                       epilog=EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("src")
    v.add_argument("dst")
    _add_output_options(v)
    _add_source_options(v)
    _add_verify_options(v)

    i = sub.add_parser("inspect", help="describe a model file")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    _add_source_options(i)

    sub.add_parser("formats", help="list the formats modelconv reads and writes")
    o = sub.add_parser("ops", help="list supported ops/layers per importer and exporter")
    o.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ["source_format", "target_format", "opset", "external_data", "verify", "overwrite",
            "timeout", "fp16", "quantize", "calibration", "int8_io", "nhwc_io", "trust_code",
            "model", "dynamic_batch", "signature", "inputs", "rtol", "atol", "seed",
            "batch_size", "localize", "reference", "samples"]
    opts = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    if getattr(args, "model", None) and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --model names a module of the user's project
    if getattr(args, "input_shape", None):
        opts["input_shapes"] = args.input_shape
    if getattr(args, "allow_packages", None):
        opts["allow_packages"] = args.allow_packages
    if getattr(args, "input_dtype", None):
        opts["input_dtypes"] = args.input_dtype
    if getattr(args, "dim", None):
        opts["dim_values"] = dict(args.dim)
    for key in ("input_names", "output_names"):
        if getattr(args, key, None):
            opts[key] = getattr(args, key)
    if getattr(args, "dynamic_dim", None):
        dims: dict[str, dict[int, str]] = {}
        ranges: dict[str, tuple[int | None, int | None]] = {}
        for inp, axis, name, lo, hi in args.dynamic_dim:
            dims.setdefault(inp, {})[axis] = name
            if lo is not None or hi is not None:
                if ranges.get(name, (lo, hi)) != (lo, hi):
                    from modelconv.errors import ShapeError

                    raise ShapeError(f"--dynamic-dim gives dim '{name}' two different bounds",
                                     hint="Give MIN:MAX once per NAME, or the same on each")
                ranges[name] = (lo, hi)
        opts["dynamic_dims"] = dims
        if ranges:
            opts["dim_ranges"] = ranges
    return {k: v for k, v in opts.items() if v is not None}


#: what each stage of a conversion is doing, as the progress lines say it
STAGE_TEXT = {
    "import": "importing {src} (reading the file; torch sources: capturing the graph)",
    "passes": "optimizing the graph",
    "export": "writing {dst}",
    "verify": "verifying: running the source and {dst} on the same inputs and comparing",
    # steps of a stage ("stage:step"), shown indented under it
    "import:modules": "loading the importer and its framework",
    "import:weights": "reading the weights",
    "import:architecture": "building the architecture (the --model factory; the modules "
                           "it imports load here)",
    "import:load": "loading the weights into the architecture",
    "import:capture": "capturing the graph (one recorded forward, or torch.export)",
    "import:decompose": "decomposing ops without a handler (torch re-traces the program)",
    "import:lower": "lowering the graph to the IR",
}


def use_colour(stream: Any) -> bool:
    """True when ``stream`` is a terminal that takes escape codes (not NO_COLOR/TERM=dumb).

    Args:
        stream: A text stream (``sys.stderr``).

    Returns:
        Whether colours, bars and in-place redraws may be written to it.
    """
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ \
        and os.environ.get("TERM") != "dumb"


class _Progress:
    """Stage progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, src: str = "the source", dst: str = "the output") -> None:
        self.started: dict[str, float] = {}
        self.tty = use_colour(sys.stderr)
        self.names = {"src": os.path.basename(src) or src, "dst": os.path.basename(dst) or dst}

    def _describe(self, stage: str) -> str:
        return STAGE_TEXT.get(stage, stage).format(**self.names)

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        pad = "    " if ":" in stage else "  "  # a step ("import:capture") under its stage
        if fraction <= 0.0:
            if stage not in self.started:
                self.started[stage] = now
                self._show(f"{pad}{self._describe(stage)} ...", final=not self.tty)
        elif fraction >= 1.0:
            if stage in self.started:
                took = now - self.started.pop(stage)
                label = stage.split(":", 1)[-1]
                self._show(f"{pad}{label} done in {took:.2f}s", final=True)
        elif self.tty:
            filled = int(fraction * 20)
            self._show(f"  {stage} [{'#' * filled}{' ' * (20 - filled)}] {fraction:4.0%}",
                       final=False)

    def close(self) -> None:
        """Say which stage failed: a stage that started and never finished."""
        now = time.perf_counter()
        for stage, began in reversed(list(self.started.items())):  # the step, then its stage
            pad, label = ("    ", stage.split(":", 1)[1]) if ":" in stage else ("  ", stage)
            self._show(f"{pad}{label} failed after {now - began:.2f}s", final=True)
        self.started.clear()

    def _show(self, text: str, *, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def plain(text: str) -> str:
    """``text`` without ANSI escape sequences (a framework's coloured log in a message).

    Args:
        text: A message, warning or log excerpt.

    Returns:
        The text with every escape sequence removed.
    """
    return _ANSI.sub("", text)


def _emit_json(command: str, status: int, result: Any = None, report: Any = None,
               error: BaseException | None = None, warnings: Sequence[str] = ()) -> None:
    """The ``--json`` document of convert/verify: one object on stdout."""
    doc: dict[str, Any] = {"command": command, "exit_status": status, "outputs": [],
                           "source_format": None, "target_format": None, "timings": {},
                           "warnings": [plain(w) for w in warnings], "report": None,
                           "error": None}
    if result is not None:
        doc.update(outputs=[{"path": str(p), "bytes": p.stat().st_size}
                            for p in result.outputs],
                   source_format=result.source_format, target_format=result.target_format,
                   timings=dict(result.timings),
                   warnings=[plain(w) for w in result.warnings])
        report = result.report
    if report is not None:
        doc["report"] = report.to_dict()
    if error is not None:
        doc["error"] = {"type": type(error).__name__, "message": plain(str(error))}
    print(json.dumps(doc, indent=2, default=str))


def _write_report(report: Any, path: str | None, *, quiet: bool = False) -> None:
    if not path or report is None:
        return
    from modelconv.fileio import atomic_write_bytes

    if path.endswith(".html"):
        from modelconv.verification.html import render_html

        atomic_write_bytes(path, render_html(report).encode("utf-8"))
    else:
        atomic_write_bytes(path, report.to_json().encode("utf-8"))
    if not quiet:
        print(f"report written to {path}")


def _cmd_convert(args: argparse.Namespace) -> int:
    from modelconv.api import convert
    from modelconv.errors import OptionsError, VerificationError

    if args.report and not args.verify:
        raise OptionsError("--report has no effect with --no-verify", hint="Remove the option")
    opts = _options(args)
    quiet = args.json  # --quiet drops the progress lines only; --json all human output
    progress = None if args.quiet or args.json else _Progress(args.src, args.dst)
    if progress is not None:
        opts["progress"] = progress
    from modelconv.calibration import RANDOM, check_calibration

    # the random-calibration warning is said before the run, not after; refusals (no
    # calibration, or options the route ignores) come from convert() in their order
    calibration_warning = (check_calibration(args.quantize, args.calibration)
                           if args.calibration == RANDOM else None)
    if calibration_warning:
        print(f"warning: {calibration_warning}", file=sys.stderr)
    from modelconv.errors import ModelconvError

    try:
        result = convert(args.src, args.dst, **opts)
    except VerificationError as exc:
        if exc.report is not None:
            if not quiet:
                print(exc.report.to_table())
            _write_report(exc.report, args.report, quiet=quiet)
        if args.json:
            _emit_json("convert", exc.exit_code, report=exc.report, error=exc)
        raise
    except ModelconvError as exc:
        if args.json:
            _emit_json("convert", exc.exit_code, error=exc)
        raise
    finally:
        if progress is not None:
            progress.close()
    if not quiet:
        for out in result.outputs:
            print(f"wrote {out} ({out.stat().st_size:,} bytes)")
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
        print(f"{result.source_format} -> {result.target_format} ({timing})")
    for warning in result.warnings:
        if warning != calibration_warning and not args.json:
            print(f"warning: {plain(warning)}")
    if result.report is not None:
        if not quiet:
            print(result.report.to_table())
        _write_report(result.report, args.report, quiet=quiet)
    status = EXIT_OK
    if args.verify and (result.report is None or result.report.skipped):
        status = _not_verified(result.report.skip_reason if result.report else "")
    if args.json:
        _emit_json("convert", status, result=result)
    return status


def _not_verified(reason: str) -> int:
    """Say loudly that the file was written but not verified; the exit code 3."""
    print(textwrap.fill(f"NOT VERIFIED: converted, but the verification could not run"
                        f"{': ' + reason if reason else ''}. To verify anyway, record the "
                        "source's outputs where it runs and pass --inputs X.npz --reference "
                        "OUTPUTS.npz; --no-verify skips verification (exit 0).", width=100),
          file=sys.stderr)
    return EXIT_NOT_VERIFIED


def _cmd_verify(args: argparse.Namespace) -> int:
    from modelconv.api import verify
    from modelconv.errors import ModelconvError

    quiet = args.json
    opts = _options(args)
    progress = None if args.quiet or args.json else _Progress(args.src, args.dst)
    if progress is not None:
        opts["progress"] = progress
    try:
        report = verify(args.src, args.dst, **opts)
    except ModelconvError as exc:
        if args.json:
            _emit_json("verify", exc.exit_code, error=exc)
        raise
    finally:
        if progress is not None:
            progress.close()
    if not quiet:
        print(report.to_table())
    _write_report(report, args.report, quiet=quiet)
    if report.skipped:
        status = _not_verified(report.skip_reason)
    else:
        status = EXIT_OK if report.passed else EXIT_NOT_EQUIVALENT
    if args.json:
        _emit_json("verify", status, report=report)
    return status


def _cmd_inspect(args: argparse.Namespace) -> int:
    from modelconv.api import inspect

    info = inspect(args.path, **_options(args))
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return EXIT_OK
    print(f"{info.path}: {info.format}" + (f", opset {info.opset}" if info.opset else "")
          + (f", producer: {info.producer}" if info.producer else ""))
    for title, specs in (("inputs", info.inputs), ("outputs", info.outputs)):
        if specs:
            print(f"{title}:")
        for s in specs:
            print(f"  {s.name}: {s.dtype} {list(s.shape)}")
    print(f"parameters: {info.num_parameters:,} ({info.parameter_bytes / 1e6:.2f} MB)")
    if info.op_counts:
        print("ops: " + ", ".join(f"{k} x{v}" for k, v in info.op_counts.items()))
    if info.tensors:
        print(f"tensors ({len(info.tensors)}):")
    for t in info.tensors:
        q = t.get("quantization")
        qtext = (f"  quantized: {q['scale_count']} scale(s), {q['zero_point_count']} zero "
                 f"point(s), scale {q['scale']:.3g}, zero point {q['zero_point']}"
                 if q else "")
        print(f"  {t['name']}: {t['dtype']} {t['shape']} ({t['bytes']:,} bytes){qtext}")
    return EXIT_OK


def _cmd_formats(args: argparse.Namespace) -> int:
    from modelconv.formats import FORMATS

    print(f"{'format':<14} {'read':<5} {'write':<6} {'extra':<8} description")
    for f in FORMATS.values():
        print(f"{f.name:<14} {'yes' if f.importer else '-':<5} {'yes' if f.exporter else '-':<6} "
              f"{f.extra or 'core':<8} {f.description}")
    return EXIT_OK


def _cmd_ops(args: argparse.Namespace) -> int:
    from modelconv.support import support_matrix

    matrix = support_matrix()
    if args.json:
        print(json.dumps(matrix, indent=2))
        return EXIT_OK
    for name, entry in matrix.items():
        keys = entry["supported"]
        print(f"{name} ({len(keys)}):" + (f"  [unavailable: {entry['error']}]"
                                          if entry.get("error") else ""))
        print(textwrap.fill(", ".join(keys), width=100, initial_indent="  ",
                            subsequent_indent="  "))
        for cls, why in entry.get("refused", {}).items():
            print(f"  refused: {cls}: {why}")
    return EXIT_OK


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300].rstrip(".") if lines else "(no message)"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup path (temporary output folders,
    unverified outputs) runs."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn the first SIGTERM into :class:`_Terminated`; ignore further ones during cleanup.

    Only in the main thread (signal handlers cannot be installed elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_COMMANDS = {"convert": _cmd_convert, "verify": _cmd_verify, "inspect": _cmd_inspect,
             "formats": _cmd_formats, "ops": _cmd_ops}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelconv`` command; returns the exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe fails here, not at exit
        return code
    except BrokenPipeError:  # `modelconv inspect --json m.onnx | head`: the reader is gone
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from modelconv import __version__

        print(f"modelconv {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    from modelconv.errors import ModelconvError

    _library_logs(debug=args.debug)
    try:
        with _terminate_as_interrupt():
            return _COMMANDS[args.command](args)
    except ModelconvError as exc:
        if args.debug:
            raise
        kind = type(exc).__name__
        print(textwrap.fill(f"error ({kind}): {exc}", width=100, break_on_hyphens=False,
                            break_long_words=False), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted",
              file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        raise
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError)
                                            and exc.errno == errno.ENOMEM):
            text = (f"error (out of memory): {_first_line(exc)}. The model needs more memory "
                    "than this machine has free; close other programs or convert on a bigger "
                    "machine.")
        else:
            text = (f"internal error ({type(exc).__name__}): {_first_line(exc)}. This is a bug "
                    "in modelconv, please report it (rerun with --debug to see the traceback).")
        print(textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False),
              file=sys.stderr)
        return EXIT_ERROR


class _OneLine(logging.Formatter):
    """Library log records as one line, without the traceback (that is what --debug is for)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"warning ({record.name}): {record.getMessage().strip()}"


def _library_logs(*, debug: bool) -> None:
    """Libraries (onnx_ir, torch.export) log warnings with tracebacks; show one line each."""
    root = logging.getLogger()
    if root.handlers:  # the embedding program configured logging itself
        return
    handler = logging.StreamHandler(sys.stderr)
    if not debug:
        handler.setFormatter(_OneLine())
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
