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


def _add_source_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("source")
    g.add_argument("--from", dest="source_format", metavar="FMT", help="source format")
    g.add_argument("--trust-code", action="store_true",
                   help="allow code from the file: TorchScript, pickled modules "
                        "(torch.load weights_only=False), .pt2 guards (runs it!)")
    g.add_argument("--allow-package", dest="allow_packages", action="append", metavar="PKG",
                   help="let a .keras file use the registered classes of this installed "
                   "package, e.g. keras_hub (runs that package's code, never the file's; "
                   "repeat per package)")
    g.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                   help="architecture for state_dict/.safetensors weights")
    g.add_argument("--input-shape", action="append", type=_parse_shape, metavar="SHAPE",
                   help="shape of each torch input, e.g. 1,3,224,224 (repeat per input)")
    g.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   help="dtype of each torch input (default float32)")
    g.add_argument("--dynamic-batch", action="store_true",
                   help="make dim 0 of every input symbolic (named 'batch')")
    g.add_argument("--dynamic-dim", action="append", type=_parse_dynamic_dim, default=[],
                   metavar="INPUT:AXIS=NAME[:MIN:MAX]",
                   help="make one input dim symbolic (repeatable; the same NAME ties dims "
                   "across inputs; MIN/MAX bound it), e.g. input_ids:1=seq:1:512")
    g.add_argument("--input-names", type=_parse_names, metavar="A,B,...",
                   help="names of the inputs (torch: the forward() parameters the "
                   "--input-shape entries are passed as, e.g. input_ids,token_type_ids)")
    g.add_argument("--output-names", type=_parse_names, metavar="A,B,...",
                   help="names of the converted model's outputs, in order")
    g.add_argument("--signature", default="serving_default", help="SavedModel signature")


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("verification")
    g.add_argument("--inputs", metavar="FILE", help=".npz/.npy file or folder of samples")
    g.add_argument("--reference", metavar="OUTPUTS.npz",
                   help="expected outputs for --inputs recorded elsewhere (keys = output "
                        "names or output_0...): compared instead of running the source")
    g.add_argument("--samples", type=int, metavar="N",
                   help="generated samples to verify on (default 3; plus one of batch 2 "
                        "when the batch is dynamic)")
    g.add_argument("--rtol", type=float,
                   help="relative tolerance (default: by the converted file's precision)")
    g.add_argument("--atol", type=float,
                   help="absolute tolerance (default: by the converted file's precision)")
    g.add_argument("--seed", type=int, default=0, help="seed for generated inputs")
    g.add_argument("--batch-size", type=int, default=1, help="batch size for generated inputs")
    g.add_argument("--dim", action="append", type=_parse_dim, default=[], metavar="NAME=VALUE",
                   help="value for a symbolic dimension in generated inputs")
    g.add_argument("--localize", action="store_true",
                   help="compare intermediate layers and name the first that drifts")
    g.add_argument("--report", metavar="FILE", help="write the report (.json or .html)")


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
    c.add_argument("--to", dest="target_format", metavar="FMT", help="target format")
    c.add_argument("--opset", type=int, help="ONNX opset of the output")
    c.add_argument("--external-data", action="store_true", default=None,
                   help="store ONNX weights in DST.data (automatic above 2 GiB)")
    c.add_argument("--no-verify", dest="verify", action="store_false", help="skip verification")
    c.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    c.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    c.add_argument("--fp16", action="store_true", help="TFLite: fp16 weights")
    c.add_argument("--quantize", choices=["dynamic", "int8"], help="TFLite quantization")
    c.add_argument("--calibration", metavar="DIR|FILE|random",
                   help="samples for --quantize int8 (required): a folder or .npz of real "
                        "inputs, or 'random' to accept random ranges knowingly")
    c.add_argument("--int8-io", action="store_true", help="TFLite int8: integer inputs/outputs")
    c.add_argument("--nhwc-io", action="store_true", help="TFLite: NHWC inputs/outputs")
    c.add_argument("--quiet", action="store_true", help="no progress output")
    _add_source_options(c)
    _add_verify_options(c)

    v = sub.add_parser("verify", help="compare SRC with its conversion DST",
                       epilog=EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("src")
    v.add_argument("dst")
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


class _Progress:
    """Stage progress on stderr: a bar redrawn in place on a terminal, lines otherwise."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.tty = sys.stderr.isatty()

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        if fraction <= 0.0:
            if stage not in self.started:
                self.started[stage] = now
                self._show(f"  {stage} ...", final=not self.tty)
        elif fraction >= 1.0:
            if stage in self.started:
                took = now - self.started.pop(stage)
                self._show(f"  {stage} done in {took:.2f}s", final=True)
        elif self.tty:
            filled = int(fraction * 20)
            self._show(f"  {stage} [{'#' * filled}{' ' * (20 - filled)}] {fraction:4.0%}",
                       final=False)

    def close(self) -> None:
        """Say which stage failed: a stage that started and never finished."""
        now = time.perf_counter()
        for stage, began in list(self.started.items()):
            self._show(f"  {stage} failed after {now - began:.2f}s", final=True)
        self.started.clear()

    def _show(self, text: str, *, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _write_report(report: Any, path: str | None) -> None:
    if not path or report is None:
        return
    from modelconv.fileio import atomic_write_bytes

    if path.endswith(".html"):
        from modelconv.verification.html import render_html

        atomic_write_bytes(path, render_html(report).encode("utf-8"))
    else:
        atomic_write_bytes(path, report.to_json().encode("utf-8"))
    print(f"report written to {path}")


def _cmd_convert(args: argparse.Namespace) -> int:
    from modelconv.api import convert
    from modelconv.errors import OptionsError, VerificationError

    if args.report and not args.verify:
        raise OptionsError("--report has no effect with --no-verify", hint="Remove the option")
    opts = _options(args)
    progress = None if args.quiet else _Progress()
    if progress is not None:
        opts["progress"] = progress
    from modelconv.calibration import RANDOM, check_calibration

    # the random-calibration warning is said before the run, not after; refusals (no
    # calibration, or options the route ignores) come from convert() in their order
    calibration_warning = (check_calibration(args.quantize, args.calibration)
                           if args.calibration == RANDOM else None)
    if calibration_warning:
        print(f"warning: {calibration_warning}", file=sys.stderr)
    try:
        result = convert(args.src, args.dst, **opts)
    except VerificationError as exc:
        if exc.report is not None:
            print(exc.report.to_table())
            _write_report(exc.report, args.report)
        raise
    finally:
        if progress is not None:
            progress.close()
    for out in result.outputs:
        print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    print(f"{result.source_format} -> {result.target_format} ({timing})")
    for warning in result.warnings:
        if warning != calibration_warning:
            print(f"warning: {warning}")
    if result.report is not None:
        print(result.report.to_table())
        _write_report(result.report, args.report)
    if args.verify and (result.report is None or result.report.skipped):
        return _not_verified(result.report.skip_reason if result.report else "")
    return EXIT_OK


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

    report = verify(args.src, args.dst, **_options(args))
    print(report.to_table())
    _write_report(report, args.report)
    if report.skipped:
        return _not_verified(report.skip_reason)
    return EXIT_OK if report.passed else EXIT_NOT_EQUIVALENT


def _cmd_inspect(args: argparse.Namespace) -> int:
    from modelconv.api import inspect

    info = inspect(args.path, **_options(args))
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return EXIT_OK
    print(f"{info.path}: {info.format}" + (f", opset {info.opset}" if info.opset else ""))
    for title, specs in (("inputs", info.inputs), ("outputs", info.outputs)):
        print(f"{title}:")
        for s in specs:
            print(f"  {s.name}: {s.dtype} {list(s.shape)}")
    print(f"parameters: {info.num_parameters:,} ({info.parameter_bytes / 1e6:.2f} MB)")
    print("ops: " + ", ".join(f"{k} x{v}" for k, v in info.op_counts.items()))
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
