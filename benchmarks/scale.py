"""``python -m benchmarks scale``: GPT-2 / Llama decoders of 0.5-3 B parameters, file to file.

For each model (``benchmarks/decoders.py`` configs) the benchmark writes seeded random fp32
weights as .safetensors itself (streamed, cached in ``--cache``), then in fresh subprocesses:

- modelconv converts the file to ONNX (external data) and to TFLite, ``verify=False``;
- ``modelconv.verify`` checks each output against torch on one input (source and converted
  model run one after the other, in their own process);
- optionally (``--with-anchors``) torch.onnx (dynamo) and litert-torch from the same file.

The parent samples each child's ``RssAnon`` / ``RssFile`` from /proc/PID/status every 50 ms
(anonymous = the process's own allocations; file-backed = mapped file pages, reclaimable), and
reports peak / weights. The disk's sequential read and write speeds are measured in the same
run, so conversion time is shown against the time to read plus write the bytes. With
``--cgroup`` the ONNX and TFLite conversions of each model also run in a memory cgroup
limited to 0.5x the weights (a child of this process's own cgroup v1 memory group, when
writable).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GiB = 2**30
MODELS = ("gpt2_0p5b", "llama_0p5b", "gpt2_1p5b", "llama_1p5b", "gpt2_3b", "llama_3b")


def log(msg: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"[scale {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmRSS"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def run_job(python: str, job: str, args: dict[str, Any], timeout: float, log_file: Path,
            preexec: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run one scale_jobs job in a subprocess, sampling its memory; its result + peaks."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    peaks = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    start = time.perf_counter()
    with open(log_file, "w") as err:
        proc = subprocess.Popen([python, "-m", "benchmarks.scale_jobs", job, json.dumps(args)],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                preexec_fn=preexec)
        status = "ok"
        while proc.poll() is None:
            for key, value in _status(proc.pid).items():
                peaks[key] = max(peaks[key], value)
            if time.perf_counter() - start > timeout:
                proc.kill()
                status = "timeout"
                break
            time.sleep(0.05)
        out = proc.communicate()[0] if status == "ok" else ""
    wall = time.perf_counter() - start
    result: dict[str, Any] = {"status": status, "process_s": wall, "returncode": proc.returncode}
    for line in (out or "").splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[7:]))
    if status == "ok" and "RESULT" not in (out or "") and result.get("status") == "ok":
        result["status"] = f"crashed (exit {proc.returncode})"
    if status == "timeout":
        result["message"] = f"no result within {timeout:.0f} s"
    result.update({"peak_anon": peaks["RssAnon"], "peak_file": peaks["RssFile"],
                   "peak_rss": peaks["VmRSS"]})
    return result


def disk_speed(path: Path, size: int = 2 * GiB) -> dict[str, float]:
    """Sequential write (with fsync) and read (pages evicted first) speed in bytes/s."""
    block = os.urandom(16 * 2**20)
    t = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    write = size / (time.perf_counter() - t)
    read = read_speed(path)
    path.unlink()
    return {"write_Bps": write, "read_Bps": read}


def read_speed(path: Path) -> float:
    """Sequential read speed of ``path`` after evicting its pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        t, n = time.perf_counter(), 0
        while chunk := os.read(fd, 16 * 2**20):
            n += len(chunk)
        return n / (time.perf_counter() - t)
    finally:
        os.close(fd)


def _evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (each conversion starts cold)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def memory_cgroup() -> Path | None:
    """This process's cgroup v1 memory directory, if a child group can be made in it."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if "memory" in controllers.split(","):
                base = Path("/sys/fs/cgroup/memory") / rel.lstrip("/")
                probe = base / f"modelconv_scale_probe_{os.getpid()}"
                probe.mkdir()
                probe.rmdir()
                return base
    except OSError:
        return None
    return None


def limited(base: Path, name: str, limit: int) -> tuple[Path, Callable[[], None]]:
    """A child memory cgroup of ``base`` limited to ``limit`` bytes, and a preexec joining it."""
    group = base / name
    group.mkdir(exist_ok=True)
    (group / "memory.limit_in_bytes").write_text(str(limit))  # page cache counts too

    def join() -> None:
        (group / "cgroup.procs").write_text(str(os.getpid()))

    return group, join


def _files_size(files: list[str]) -> int:
    return sum(Path(f).stat().st_size for f in files if Path(f).exists())


def run_model(name: str, cfg: dict[str, Any], disk: dict[str, float]) -> list[dict[str, Any]]:
    """All rows of one model."""
    cache, out, python = cfg["cache"], cfg["out"] / name, cfg["python"]
    src = cache / f"{name}.safetensors"
    if not src.exists():
        log(f"{name}: writing weights")
        res = run_job(python, "write", {"name": name, "path": str(src)}, 3600,
                      out / "write.log")
        if res["status"] != "ok":
            return [{"model": name, "route": "write", **res}]
    weights = src.stat().st_size
    rows = []
    plans: list[tuple[str, str, str, bool]] = []
    for target in cfg["targets"]:
        plans.append(("modelconv", "convert", target, False))
        if cfg["cgroup"] is not None:
            plans.append(("modelconv (cgroup 0.5x)", "convert", target, True))
        if cfg["anchors"]:
            plans.append(("torch.onnx dynamo" if target == "onnx" else "litert-torch",
                          "torch_onnx" if target == "onnx" else "litert_torch", target, False))
    for label, job, target, in_cgroup in plans:
        slug = "".join(c if c.isalnum() else "_" for c in label)
        dst = out / slug / f"model.{target}"  # one folder per row: rows never share files
        dst.parent.mkdir(parents=True, exist_ok=True)
        _evict(src)
        preexec, group = None, None
        if in_cgroup:
            group, preexec = limited(cfg["cgroup"], f"modelconv_scale_{os.getpid()}",
                                     weights // 2)
        log(f"{name}: {label} -> {target}")
        res = run_job(python, job, {"name": name, "src": str(src), "dst": str(dst)},
                      cfg["timeout"], out / f"{job}_{target}_{int(in_cgroup)}.log", preexec)
        if group is not None:
            oom = _oom_events(group)
            res["cgroup_limit"] = weights // 2
            res["cgroup_oom_kills"] = oom
            group.rmdir()
        res.update({"model": name, "label": label, "target": target, "weights": weights,
                    "size": _files_size(res.get("files") or [])})
        rw = weights / disk["read_Bps"] + res["size"] / disk["write_Bps"]
        res["read_write_s"] = rw
        if res["status"] == "ok" and label == "modelconv":
            log(f"{name}: verifying {target}")
            ver = run_job(python, "verify", {"name": name, "src": str(src), "dst": str(dst)},
                          cfg["timeout"], out / f"verify_{target}.log")
            res["verify"] = ver
        rows.append(res)
        log(f"  {res['status']} convert {res.get('convert_s')} anon "
            f"{res['peak_anon'] / GiB:.2f} GiB file {res['peak_file'] / GiB:.2f} GiB")
        if not cfg["keep"] and res["status"] == "ok" and label != "modelconv":
            for f in res.get("files") or []:
                Path(f).unlink(missing_ok=True)
    return rows


def _oom_events(group: Path) -> int | None:
    try:
        for line in (group / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def markdown(result: dict[str, Any]) -> str:
    """The scale table."""
    d = result["disk"]
    lines = ["# modelconv scale benchmark", "",
             f"Disk: sequential read {d['read_Bps'] / 2**20:.0f} MiB/s, write "
             f"{d['write_Bps'] / 2**20:.0f} MiB/s (measured in this run). Memory cgroup: "
             f"{result['cgroup_note']}. A process that only imports modelconv, torch and "
             f"onnx has {result.get('baseline_anon', 0) / GiB:.2f} GiB anonymous memory "
             "(included in the peaks below).", "",
             "| model | weights GiB | target | converter | status | convert s | read+write s "
             "| ratio | s/GB | peak anon GiB | anon / weights | peak file GiB | output GiB | "
             "max abs err | max rel err |", "|---" * 15 + "|"]
    for r in result["rows"]:
        w = r.get("weights") or 0

        def f(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, (int, float)) else "—"

        ver = r.get("verify") or {}
        status = r["status"] if r["status"] == "ok" else \
            f"{r['status']}: {' '.join(str(r.get('message', '')).split())[:120]}"
        if r.get("cgroup_limit"):
            status += f" (limit {r['cgroup_limit'] / GiB:.2f} GiB, OOM kills " \
                      f"{r.get('cgroup_oom_kills')})"
        conv = r.get("convert_s")
        lines.append(
            f"| {r['model']} | {f(w / GiB, '.2f')} | {r.get('target')} | {r.get('label')} | "
            f"{status} | {f(conv, '.0f')} | {f(r.get('read_write_s'), '.0f')} | "
            f"{f(conv / r['read_write_s'] if conv else None, '.1f')} | "
            f"{f(conv / (w / 1e9) if conv and w else None, '.1f')} | "
            f"{f(r['peak_anon'] / GiB, '.2f')} | {f(r['peak_anon'] / w if w else None, '.2f')} | "
            f"{f(r['peak_file'] / GiB, '.2f')} | {f(r.get('size', 0) / GiB, '.2f')} | "
            f"{f(ver.get('max_abs_err'), '.1e')} | {f(ver.get('max_rel_err'), '.1e')} |")
    return "\n".join(lines) + "\n"


def main_scale(out_dir: Path, python: str, targets: list[str], with_anchors: bool,
               timeout: float, rebuild: bool, runs: int, models: list[str] | None = None,
               cache: Path | None = None, cgroup: bool = False, keep: bool = False) -> int:
    """Entry point of the ``scale`` subcommand (``runs`` is unused: no latency here)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = cache or out_dir / "weights"
    cache.mkdir(parents=True, exist_ok=True)
    if rebuild:
        for f in cache.glob("*.safetensors"):
            f.unlink()
    base = memory_cgroup() if cgroup else None
    note = ("not requested" if not cgroup else
            f"child of {base} (cgroup v1), limit 0.5x weights" if base is not None else
            "requested but no writable cgroup v1 memory group for this process (see "
            "peak anon instead)")
    log("measuring disk speed")
    disk = disk_speed(cache / "disk_speed.bin")
    cfg = {"cache": cache, "out": out_dir, "python": python, "targets": targets,
           "anchors": with_anchors, "timeout": timeout, "cgroup": base, "keep": keep}
    result: dict[str, Any] = {"disk": disk, "cgroup_note": note, "rows": []}
    base_job = run_job(python, "baseline", {}, timeout, out_dir / "baseline.log")
    result["baseline_anon"] = base_job["peak_anon"]
    for name in models or list(MODELS):
        result["rows"] += run_model(name, cfg, disk)
        if not keep:  # the disk holds one model's files at a time
            shutil.rmtree(out_dir / name, ignore_errors=True)
            (cache / f"{name}.safetensors").unlink(missing_ok=True)
        (out_dir / "scale.json").write_text(json.dumps(result, indent=1, default=str))
        (out_dir / "scale.md").write_text(markdown(result))
    text = markdown(result)
    sys.stdout.write(text)
    return 0
