"""ONNX's backend node test suite run through modelconv: ONNX -> ONNX and ONNX -> TFLite.

The suite comes from the installed onnx package (``collect_testcases``: each case is a
one-node model with its input and expected output arrays). Every case is converted with
modelconv exactly as ``modelconv convert --no-verify`` does (import, passes, export), the
converted file runs in onnxruntime or LiteRT on the case's inputs, and its outputs are
compared with the expected ones. Outcomes:

- ``ok``: the converted model ran and matched;
- ``refused``: modelconv refused it with a typed error (the reason is kept);
- ``reference_fails``: (ONNX target) onnxruntime cannot run the *original* model either;
- ``runtime_fail``: the converted file was written but the runtime refused to run it;
- ``wrong``: it ran and gave other values;
- ``crash``: modelconv raised an internal error, or the worker process died (an abort in
  LiteRT kills only the worker, which is restarted).

Cases run in worker subprocesses (two by default) that take case indexes on stdin and
answer one JSON line each, so an abort is an outcome, not a dead suite.

``python -m tests.onnx_conformance [--write]`` runs the suite, prints the totals and with
``--write`` refreshes the committed baseline and docs/onnx-conformance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tests" / "data" / "onnx_conformance_baseline.json"
DOC = ROOT / "docs" / "onnx-conformance.md"
TARGETS = ("onnx", "tflite")
OUTCOMES = ("ok", "refused", "reference_fails", "runtime_fail", "wrong", "crash")
#: outcomes that fail CI: a wrong answer, or modelconv / the runtime falling over
FAILING = ("wrong", "crash")
#: per-case wall-clock limit in a worker
CASE_TIMEOUT = 120.0
#: the TFLite target computes in float32 kernels of its own: absolute floor on the tolerance
TFLITE_ATOL = 1e-5


@dataclass
class Outcome:
    """What happened to one test case on one target."""

    test: str
    op: str
    target: str
    outcome: str
    detail: str = ""


def load_cases() -> list[Any]:
    """The node test cases of the installed onnx package, sorted by name."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.seterr(all="ignore")
        cases = collect_testcases()
    return sorted(cases, key=lambda c: c.name)


def op_of(case: Any) -> str:
    """The operator a case tests (the op of its one node; expanded tests name the function)."""
    name = case.name.removeprefix("test_")
    nodes = list(case.model.graph.node)
    if "_expanded" in name or len(nodes) != 1:
        return name.split("_expanded")[0].split("_")[0] + " (expanded)" \
            if "_expanded" in name else (nodes[0].op_type if nodes else "?")
    return nodes[0].op_type


def as_value(x: Any) -> Any:
    """A test-data value as numpy: TensorProto and numpy scalars become arrays, sequences
    lists of arrays, optional-empty stays None."""
    from onnx import TensorProto, numpy_helper

    if isinstance(x, TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, (list, tuple)):
        return [as_value(v) for v in x]
    if x is None or isinstance(x, dict):
        return x
    return np.asarray(x)


def _flatten(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(_flatten(v))
        else:
            out.append(v)
    return out


def _compare(expected: Sequence[Any], actual: Sequence[Any], rtol: float,
             atol: float) -> str:
    """'' when ``actual`` matches ``expected``, else why not."""
    expected, actual = _flatten([as_value(e) for e in expected]), \
        _flatten([as_value(a) for a in actual])
    if len(expected) != len(actual):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for i, (exp, act) in enumerate(zip(expected, actual, strict=True)):
        exp = np.asarray(exp)
        act = np.asarray(act)
        if exp.shape != act.shape:
            if exp.size == act.size and exp.size <= 1:
                act = act.reshape(exp.shape)
            else:
                return f"output {i}: shape {list(act.shape)}, expected {list(exp.shape)}"
        if exp.dtype.kind in "OSU" or act.dtype.kind in "OSU":
            if not np.array_equal(exp.astype(str), act.astype(str)):
                return f"output {i}: strings differ"
            continue
        e = exp.astype(np.float64)
        a = act.astype(np.float64)
        if not np.array_equal(np.isnan(e), np.isnan(a)):
            return f"output {i}: NaN positions differ"
        finite = np.isfinite(e) & np.isfinite(a)
        if not np.array_equal(np.isinf(e), np.isinf(a)) or \
                not np.array_equal(e[~finite & ~np.isnan(e)], a[~finite & ~np.isnan(e)]):
            return f"output {i}: Inf positions differ"
        diff = np.abs(e[finite] - a[finite])
        bound = atol + rtol * np.abs(e[finite])
        if diff.size and np.any(diff > bound):
            worst = int(np.argmax(diff - bound))
            return (f"output {i}: max abs error {float(diff.max()):.3g} "
                    f"(at {float(e[finite][worst]):.6g} got {float(a[finite][worst]):.6g})")
    return ""


def _first_line(exc: BaseException) -> str:
    """The first line of an error, with the worker's temporary folder left out (the
    committed baseline must not change from run to run)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return re.sub(r"\S*/conformance-[^/\s]+/\d+/", "", line)[:240]


def run_case(case: Any, target: str, workdir: Path) -> Outcome:
    """Convert one case to ``target``, run it and compare (in the calling process)."""
    import onnx

    import modelconv
    from modelconv.errors import ModelconvError, RuntimeCrashError

    op = op_of(case)
    inputs, expected = case.data_sets[0]
    inputs = [as_value(x) for x in inputs]
    src = workdir / f"{case.name}.onnx"
    onnx.save(case.model, src)
    if target == "onnx":
        # the reference of "modelconv -> ONNX" is onnxruntime on the original model: a test
        # that onnxruntime itself fails or gets wrong says nothing about modelconv
        try:
            reference = _run_converted(src, "onnx", inputs)
        except Exception as exc:
            return Outcome(case.name, op, target, "reference_fails", _first_line(exc))
        why = _compare(expected, reference, case.rtol, case.atol)
        if why:
            return Outcome(case.name, op, target, "reference_fails",
                           f"onnxruntime on the original: {why}")
    dst = workdir / f"{case.name}.{target}"
    try:
        modelconv.convert(src, dst, verify=False, overwrite=True)
    except ModelconvError as exc:
        return Outcome(case.name, op, target, "refused",
                       f"{type(exc).__name__}: {_first_line(exc)}")
    except Exception as exc:
        return Outcome(case.name, op, target, "crash",
                       f"internal {type(exc).__name__}: {_first_line(exc)}")
    try:
        actual = _run_converted(dst, target, inputs)
    except RuntimeCrashError as exc:  # the LiteRT worker died on the written file
        return Outcome(case.name, op, target, "crash", _first_line(exc))
    except Exception as exc:
        return Outcome(case.name, op, target, "runtime_fail",
                       f"{type(exc).__name__}: {_first_line(exc)}")
    atol = case.atol if target == "onnx" else max(case.atol, TFLITE_ATOL)
    try:
        why = _compare(expected, actual, case.rtol, atol)
    except Exception as exc:  # values the comparison cannot read: a wrong answer
        why = f"outputs not comparable: {type(exc).__name__}: {_first_line(exc)}"
    return Outcome(case.name, op, target, "wrong" if why else "ok", why)


def _run_converted(path: Path, target: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    if target == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        feeds = {n: x for n, x in zip(names, inputs, strict=False) if x is not None}
        return list(sess.run(None, feeds))
    from modelconv.verification.runners_litert import LiteRTRunner

    if any(not isinstance(x, np.ndarray) for x in inputs):
        raise TypeError("sequence/optional inputs cannot be fed to LiteRT")
    runner = LiteRTRunner(path)
    return runner.run(list(inputs))


# -- worker processes ----------------------------------------------------------------------

def _worker_main() -> None:
    """Answer ``JOBFILE TARGET`` lines on stdin with one JSON Outcome line each.

    A job file is a pickle the parent wrote of the case (this suite's own data).
    """
    import pickle
    import warnings

    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        for n, line in enumerate(sys.stdin):
            job, target = line.split()
            case = SimpleNamespace(**pickle.loads(Path(job).read_bytes()))
            if os.environ.get("MODELCONV_CONFORMANCE_ABORT") == case.name:
                os.abort()  # test hook: a worker that dies mid-case
            workdir = Path(tmp) / str(n)
            workdir.mkdir()
            result = run_case(case, target, workdir)
            out.write(json.dumps(asdict(result)) + "\n")
            out.flush()
            for f in workdir.iterdir():
                f.unlink()
            workdir.rmdir()


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.onnx_conformance import _worker_main; "
             "_worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, cwd=ROOT, env=env)

    def ask(self, job: Path, target: str) -> dict[str, Any] | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{job} {target}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_suite(targets: Iterable[str] = TARGETS, workers: int = 2,
              only: Sequence[str] | None = None, progress: bool = False) -> list[Outcome]:
    """Every case on every target, in ``workers`` subprocesses; a dead worker is a crash."""
    import pickle
    import threading

    cases = [c for c in load_cases() if only is None or c.name in only]
    results: list[Outcome] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="conformance-jobs-") as tmp:
        jobs: list[tuple[int, Path, str]] = []
        for i, case in enumerate(cases):
            path = Path(tmp) / f"{i}.pkl"
            path.write_bytes(pickle.dumps({  # plain data: the worker needs no class
                "name": case.name, "model": case.model, "data_sets": case.data_sets,
                "rtol": case.rtol, "atol": case.atol}))
            jobs.extend((i, path, t) for t in targets)
        pending = list(reversed(jobs))
        total = len(jobs)

        def work() -> None:
            worker = _Worker()
            try:
                while True:
                    with lock:
                        if not pending:
                            return
                        index, path, target = pending.pop()
                    answer = worker.ask(path, target)
                    if answer is None:
                        code = worker.proc.wait()
                        outcome = Outcome(cases[index].name, op_of(cases[index]), target,
                                          "crash", f"the worker process died (exit {code})")
                        worker = _Worker()
                    else:
                        outcome = Outcome(**answer)
                    with lock:
                        results.append(outcome)
                        if progress and len(results) % 100 == 0:
                            print(f"  {len(results)}/{total}", file=sys.stderr, flush=True)
            finally:
                worker.close()

        threads = [threading.Thread(target=work) for _ in range(max(1, workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return sorted(results, key=lambda o: (o.test, o.target))


# -- baseline and docs ---------------------------------------------------------------------

def totals(results: Iterable[Outcome]) -> dict[str, Counter[str]]:
    """Outcome counts per target."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        out[r.target][r.outcome] += 1
    return dict(out)


def to_baseline(results: Iterable[Outcome]) -> dict[str, dict[str, list[str]]]:
    """``{target: {test: [outcome, op, detail]}}``, the committed form."""
    base: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for r in results:
        base[r.target][r.test] = [r.outcome, r.op, r.detail]
    return {t: dict(sorted(v.items())) for t, v in sorted(base.items())}


def from_baseline(base: dict[str, dict[str, list[str]]]) -> list[Outcome]:
    """The outcomes a baseline records."""
    return sorted((Outcome(test, op, target, outcome, detail)
                   for target, rows in base.items()
                   for test, (outcome, op, detail) in rows.items()),
                  key=lambda o: (o.test, o.target))


def read_baseline() -> dict[str, dict[str, list[str]]]:
    """The committed baseline (empty when there is none yet)."""
    return json.loads(BASELINE.read_text()) if BASELINE.exists() else {}


def render_doc(results: Sequence[Outcome]) -> str:
    """docs/onnx-conformance.md: totals, then per op the counts and the reasons."""
    lines = [
        "# ONNX conformance",
        "",
        "Generated by `python -m tests.onnx_conformance --write` from ONNX's own backend node",
        "test suite (`onnx.backend.test.case.node.collect_testcases` of the installed onnx",
        "package). Each test is a one-node model with inputs and expected outputs; modelconv",
        "converts it (as `modelconv convert --no-verify`), runs the result in onnxruntime",
        "(ONNX target) or LiteRT (TFLite target) and compares with the expected outputs.",
        "`refused` means modelconv stopped with a typed error naming what it cannot convert;",
        "`reference_fails` means onnxruntime cannot run the original test model, or gives",
        "other values than the expected ones (ONNX target: then it says nothing of modelconv);",
        "`runtime_fail` means the written file does not run. CI fails on any `wrong` or",
        "`crash` outcome and on any test that was `ok` in the committed baseline and is not.",
        "",
        "## Totals",
        "",
        "| target | tests | " + " | ".join(OUTCOMES) + " |",
        "|---|---|" + "---|" * len(OUTCOMES),
    ]
    counts = totals(results)
    for target in TARGETS:
        c = counts.get(target, Counter())
        lines.append(f"| {target} | {sum(c.values())} | "
                     + " | ".join(str(c.get(o, 0)) for o in OUTCOMES) + " |")
    non_expanded = [r for r in results if "_expanded" not in r.test]
    for target in TARGETS:
        rows = [r for r in non_expanded if r.target == target]
        ok = sum(r.outcome == "ok" for r in rows)
        lines.append("")
        lines.append(f"{target}: {ok} of {len(rows)} non-expanded tests ok.")
    lines += ["", "## Per operator", "",
              "| op | target | tests | ok | refused | other | why not (first reason) |",
              "|---|---|---|---|---|---|---|"]
    by_op: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for r in results:
        by_op[(r.op, r.target)].append(r)
    for (op, target), rows in sorted(by_op.items()):
        c = Counter(r.outcome for r in rows)
        other = sum(v for k, v in c.items() if k not in ("ok", "refused"))
        reasons = Counter(r.detail for r in rows if r.outcome != "ok" and r.detail)
        why = reasons.most_common(1)[0][0] if reasons else ""
        why = why.replace("|", "\\|").replace("\n", " ")[:120]
        lines.append(f"| {op} | {target} | {len(rows)} | {c.get('ok', 0)} | "
                     f"{c.get('refused', 0)} | {other} | {why} |")
    return "\n".join(lines) + "\n"


def regressions(results: Iterable[Outcome],
                baseline: dict[str, dict[str, list[str]]]) -> list[str]:
    """Failing outcomes, and tests ok in the baseline that are not ok now."""
    problems = []
    for r in results:
        was = baseline.get(r.target, {}).get(r.test, [""])[0]
        if r.outcome in FAILING:
            problems.append(f"{r.target} {r.test}: {r.outcome}: {r.detail}")
        elif was == "ok" and r.outcome != "ok":
            problems.append(f"{r.target} {r.test}: was ok, now {r.outcome}: {r.detail}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; print totals; ``--write`` refreshes the baseline and the doc."""
    parser = argparse.ArgumentParser(prog="python -m tests.onnx_conformance")
    parser.add_argument("--write", action="store_true", help="refresh baseline and docs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target", action="append", choices=TARGETS)
    parser.add_argument("--json", metavar="FILE", help="write every outcome to FILE")
    parser.add_argument("tests", nargs="*", help="only these test names")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run_suite(args.target or TARGETS, args.workers, args.tests or None,
                        progress=True)
    for target, c in totals(results).items():
        print(target, dict(c))
    print(f"{len(results)} outcomes in {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    for r in results:
        if r.outcome in FAILING:
            print(f"  {r.outcome:6} {r.target:6} {r.test}: {r.detail}")
    if args.write:
        BASELINE.parent.mkdir(parents=True, exist_ok=True)
        BASELINE.write_text(json.dumps(to_baseline(results), indent=1, sort_keys=True) + "\n")
        DOC.write_text(render_doc(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
