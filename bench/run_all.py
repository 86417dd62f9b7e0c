"""Run every benchmark (bench/bench_*.py) and write bench/results/latest.json and latest.md.

Each benchmark runs in its own process, so thread pools, TensorFlow and PyTorch state and peak memory of
one never colour another. The markdown table is also written into README.md between the bench markers,
so the README always shows the last measured figures and the device they were measured on.

`--gpu NAME ...` runs the named GPU benchmarks (bench/gpu_*.py, scripts/gpu_check.sh lists them) instead and
writes bench/results/gpu-<device>.json and .md, beside the CPU figures and not in the README.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from utils.fileio import atomic_open, write_json  # noqa: E402

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def discover() -> list[Path]:
    return sorted(BENCH_DIR.glob("bench_*.py"))


def run_single(path: Path, quick: bool, out: Path) -> None:
    """Import one benchmark module and write what its run() returns to `out`."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    start = time.perf_counter()
    result = module.run(quick=quick)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    write_json(out, result)


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    info["device"] = info.get("gpu") or f"CPU: {info['cpu']} ({info['cpu_count']} cores)"
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value)
    return str(value)


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    else:
        rows.append((prefix, _format(value)))


def to_markdown(results: dict[str, Any], stem: str = "latest") -> str:
    command = "make gpu-check" if stem.startswith("gpu-") else f"make bench{' QUICK=1' if results['quick'] else ''}"
    lines = [
        f"Last run {results['date']} on {results['device']['device']} "
        f"(`{command}`; each benchmark's date in its `measured` row; raw figures in bench/results/{stem}.json).",
        "",
    ]
    for name, figures in results["benchmarks"].items():
        rows: list[tuple[str, str]] = []
        _flatten("", figures, rows)
        lines += [f"**{name}**", "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in rows]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def update_readme(markdown: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    with atomic_open(readme) as handle:
        handle.write(f"{head}{README_START}\n{markdown}{README_END}{tail}")


def _kept_figures(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """The last run's figures, which --only re-measures in part: kept when that run was of the same kind
    (quick or full) on the same device, so latest.json never mixes devices."""
    if not path.exists():
        return {}
    previous = json.loads(path.read_text(encoding="utf-8"))
    if previous.get("quick") != results["quick"] or previous.get("device", {}).get("device") != results["device"]["device"]:
        return {}
    return {name: {"measured": previous["date"], **figures} for name, figures in previous["benchmarks"].items()}


def gpu_results_name(device: str) -> str:
    """bench/results file stem of a GPU run: the device's name in lower case, runs of other characters as -."""
    return "gpu-" + re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")


def measure(paths: list[Path], quick: bool, results: dict[str, Any], results_dir: Path) -> None:
    """Run each benchmark in its own process; its figures (dated) or its failure go into `results`."""
    for path in paths:
        print(f"== {path.stem}", flush=True)
        partial = results_dir / f"{path.stem}.partial"
        command = [sys.executable, __file__, "--single", str(path), "--out", str(partial)]
        if quick:
            command.append("--quick")
        proc = subprocess.run(command, cwd=ROOT)
        if proc.returncode == 0 and partial.exists():
            results["benchmarks"][path.stem] = {**json.loads(partial.read_text(encoding="utf-8")),
                                                "measured": results["date"]}
            partial.unlink()
        else:
            results["failed"][path.stem] = f"exit status {proc.returncode}"
            print(f"!! {path.stem} failed (exit status {proc.returncode})", flush=True)
    results["benchmarks"] = dict(sorted(results["benchmarks"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check, not figures to quote")
    parser.add_argument("--only", nargs="*", help="benchmark names to run (e.g. bench_nezha_model)")
    parser.add_argument("--gpu", nargs="+", metavar="NAME",
                        help="GPU benchmarks to run (e.g. gpu_nezha_training)")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        run_single(Path(args.single), args.quick, Path(args.out))
        return 0

    results_dir = BENCH_DIR / "results"
    results_dir.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "quick": args.quick,
        "device": device_info(),
        "benchmarks": {},
        "failed": {},
    }
    if args.gpu:
        measure([BENCH_DIR / f"{name}.py" for name in args.gpu], args.quick, results, results_dir)
        stem = gpu_results_name(results["device"]["device"])
    else:
        results["benchmarks"] = _kept_figures(results_dir / "latest.json", results) if args.only else {}
        measure([p for p in discover() if not args.only or p.stem in args.only], args.quick, results, results_dir)
        stem = "latest"
    write_json(results_dir / f"{stem}.json", results)
    markdown = to_markdown(results, stem)
    with atomic_open(results_dir / f"{stem}.md") as handle:
        handle.write(markdown)
    if not args.quick and not args.gpu:
        update_readme(markdown)
    print(markdown)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
