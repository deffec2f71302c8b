"""``python -m benchmarks {run,profile,scale,scaling,startup,transposes}`` (see README.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.harness import REPO, RunConfig, log, spawn
from benchmarks.routes import ROUTES

DEFAULT_OUT = REPO / "benchmarks" / "results"

#: named subsets of ``run``: (routes, models, anchors)
PRESETS = {
    "torch-capture": ("torch-onnx", "resnet50,vit_small,gpt2_small,mobilenet_v3",
                      "torch-dynamo"),
}


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="results folder (default benchmarks/results/, gitignored)")
        sp.add_argument("--python", default=sys.executable,
                        help="interpreter that runs every conversion (e.g. the venv of "
                        "benchmarks/setup_env.sh, which has torchvision and litert-torch)")
        sp.add_argument("--timeout", type=float, default=900.0,
                        help="seconds allowed per subprocess (default 900)")
        sp.add_argument("--rebuild", action="store_true", help="rebuild cached models")

    run = sub.add_parser("run", help="the benchmark: tables per route")
    common(run)
    run.add_argument("--quick", action="store_true",
                     help="one small model per route, 1 repeat, 10 latency runs")
    run.add_argument("--models", help="comma-separated model names (default: per route)")
    run.add_argument("--routes", help="comma-separated routes: " + ", ".join(ROUTES))
    run.add_argument("--converters", help="comma-separated anchor keys to run beside "
                     "modelconv (default: every anchor of the route), e.g. torch-dynamo")
    run.add_argument("--preset", choices=sorted(PRESETS),
                     help="a named subset of routes/models/anchors: torch-capture = "
                     "torch-onnx on resnet50, vit_small, gpt2_small, mobilenet_v3 against "
                     "torch.onnx dynamo (capture time and peak RSS, issue 18)")
    run.add_argument("--repeats", type=int, default=3, help="conversions per cell (median)")
    run.add_argument("--latency-runs", type=int, default=None,
                     help="timed inference runs per model (default 20, quick 5)")
    run.add_argument("--modelconv-verify", action="store_true",
                     help="let modelconv run its own verification inside the timed call")
    run.add_argument("--keep-outputs", action="store_true", help="keep converted models")
    run.add_argument("--no-startup", action="store_true", help="skip the startup timing")

    prof = sub.add_parser("profile", help="cProfile one modelconv conversion")
    common(prof)
    prof.add_argument("--model", default="resnet18")
    prof.add_argument("--route", default="torch-onnx", choices=sorted(ROUTES))
    prof.add_argument("--top", type=int, default=25)

    scale = sub.add_parser("scale", help="a > 2 GiB GPT-2 style model through modelconv")
    common(scale)
    scale.add_argument("--targets", default="onnx,tflite")
    scale.add_argument("--with-anchors", action="store_true",
                       help="also run torch.onnx / litert-torch on it")
    scale.add_argument("--latency-runs", type=int, default=3)
    scale.add_argument("--models", default=None,
                       help="decoder configs (benchmarks/decoders.py), default 0.5/1.5/3 B")
    scale.add_argument("--cache", type=Path, default=None, help="where the weights are written")
    scale.add_argument("--cgroup", action="store_true",
                       help="also convert in a memory cgroup limited to 0.5x the weights")
    scale.add_argument("--keep", action="store_true",
                       help="keep outputs and weights (default: removed after each model)")

    sc = sub.add_parser("scaling", help="time of a 10k vs a 100k node ONNX chain (linearity)")
    sc.add_argument("--python", default=sys.executable)
    sc.add_argument("--targets", default="onnx,tflite")
    sc.add_argument("--sizes", default="10000,100000", help="node counts, smallest first")
    sc.add_argument("--timeout", type=float, default=900.0, help="seconds per conversion")
    sc.add_argument("--max-ratio", type=float, default=15.0,
                    help="largest time ratio between the sizes that passes (default 15)")

    tr = sub.add_parser("transposes", help="TRANSPOSE count and LiteRT latency of timm vision "
                        "transformers: modelconv vs litert-torch")
    tr.add_argument("--python", default=sys.executable)
    tr.add_argument("--models", help="comma-separated timm model names "
                    "(default vit_tiny_patch16_224,levit_128s)")
    tr.add_argument("--runs", type=int, default=20, help="timed invocations per file (median)")
    tr.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")

    kh = sub.add_parser("keras-hub", help="keras_hub backbones: modelconv's package route "
                        "(.keras) vs tf2onnx (SavedModel)")
    kh.add_argument("--python", default=sys.executable)
    kh.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")

    st = sub.add_parser("startup", help="only the import / --help timing")
    st.add_argument("--python", default=sys.executable)
    st.add_argument("--runs", type=int, default=5)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: build, convert, evaluate, report."""
    from benchmarks.harness import run
    from benchmarks.report import write_all

    runs = args.latency_runs if args.latency_runs is not None else (10 if args.quick else 20)
    if args.preset:
        routes, models, anchors = PRESETS[args.preset]
        args.routes, args.models = args.routes or routes, args.models or models
        args.converters = args.converters or anchors
    cfg = RunConfig(out_dir=args.out, python=args.python, routes=_csv(args.routes),
                    models=_csv(args.models), converters=_csv(args.converters),
                    quick=args.quick, repeats=args.repeats,
                    latency_runs=runs, timeout=args.timeout,
                    modelconv_verify=args.modelconv_verify, rebuild=args.rebuild,
                    keep_outputs=args.keep_outputs, startup=not args.no_startup)
    results = run(cfg)
    text = write_all(results, args.out)
    sys.stdout.write(text)
    log(f"wrote {args.out / 'results.md'}, results.json, results.png")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """``profile``: cache the model, then cProfile modelconv on it in a fresh process."""
    from benchmarks.harness import build_models
    from benchmarks.zoo import get_model

    route = ROUTES[args.route]
    spec = get_model(args.model)
    if spec.family != route.family:
        raise SystemExit(f"model {spec.name} is a {spec.family} model; route {route.name} "
                         f"needs a {route.family} one")
    cfg = RunConfig(out_dir=args.out, python=args.python, timeout=args.timeout,
                    rebuild=args.rebuild)
    built = build_models(cfg, [spec])[spec.name]
    if built.get("status") != "ok":
        raise SystemExit(f"building {spec.name} failed: {built.get('message')}")
    task = {"task": "profile", "source": route.source, "target": route.target,
            "converter": "modelconv", "model": spec.to_dict(), "cache_dir": str(cfg.cache_dir),
            "out_dir": str(args.out / "work" / "profile" / route.name / spec.name),
            "top": args.top, "stats_file": str(args.out / f"profile_{route.name}_{spec.name}"
                                              ".pstats")}
    logf = args.out / "logs" / f"profile_{route.name}_{spec.name}.log"
    res, wall = spawn(task, args.python, route.family, args.timeout, logf, passthrough=True)
    if res.get("status") != "ok":
        print(f"profile failed: {res.get('message')} (log: {logf})", file=sys.stderr)
        tb = res.get("traceback")
        if tb:
            print(tb, file=sys.stderr)
        return 1
    log(f"process wall {wall:.2f} s; stats saved to {task['stats_file']}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    """``scale``: the > 2 GiB check."""
    from benchmarks.scale import main_scale

    return main_scale(args.out, args.python, _csv(args.targets), args.with_anchors,
                      args.timeout, args.rebuild, args.latency_runs,
                      models=_csv(args.models) if args.models else None, cache=args.cache,
                      cgroup=args.cgroup, keep=args.keep)


def cmd_scaling(args: argparse.Namespace) -> int:
    """``scaling``: conversion time at 10k and 100k nodes and their ratio."""
    from benchmarks.scaling import main_scaling

    return main_scaling(args.python, _csv(args.targets), [int(n) for n in _csv(args.sizes)],
                        args.timeout, args.max_ratio)


def cmd_transposes(args: argparse.Namespace) -> int:
    """``transposes``: TRANSPOSE counts and latency, modelconv vs litert-torch."""
    from benchmarks.transposes import main_transposes

    return main_transposes(_csv(args.models), args.python, args.runs, args.timeout)


def cmd_keras_hub(args: argparse.Namespace) -> int:
    """``keras-hub``: the package route against tf2onnx on keras_hub backbones."""
    from benchmarks.keras_hub_route import run_keras_hub

    sys.stdout.write(run_keras_hub(args.python, args.timeout) + "\n")
    return 0


def cmd_startup(args: argparse.Namespace) -> int:
    """``startup``: import and --help wall time."""
    from benchmarks.report import startup_table
    from benchmarks.startup import measure_startup

    res = measure_startup(args.python, args.runs)
    print(startup_table(res))
    print(json.dumps(res, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommand."""
    args = _parser().parse_args(argv)
    return {"run": cmd_run, "profile": cmd_profile, "scale": cmd_scale,
            "scaling": cmd_scaling, "startup": cmd_startup,
            "transposes": cmd_transposes, "keras-hub": cmd_keras_hub}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
