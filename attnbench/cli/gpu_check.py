"""`attnbench gpu-check`: the CUDA path checked in one short slot on a GPU machine.

It runs the `gpu` tests, the gpu-check suite (eager and CUDA-graph timing, float32 and bfloat16, each
module alone) and its report, writes everything to one folder and prints a one-screen summary. With
--dry-run it prints the plan and its estimated time, and needs no GPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from attnbench.cli.base import command, console, project_of
from attnbench.config import ProjectConfig, SuiteSpec, expand_grid, load_suite
from attnbench.errors import DeviceError
from attnbench.outputs import prepare_output, write_text

SUITE = "gpu-check"
TESTS_S = 90.0
"""What `pytest -m gpu` takes on an H100-class machine, worker start-ups included (estimate)."""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="gpu-check", help="folder for logs, the run, the report (default gpu-check)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time; needs no GPU")


@command("gpu-check", "check the CUDA path in minutes: gpu tests, the gpu-check suite, its report", _configure)
def cmd_gpu_check(args: argparse.Namespace) -> int:
    import torch

    from attnbench.estimate import describe, estimate_seconds

    project = project_of(args)
    suite = load_suite(SUITE, project)
    suite_s = estimate_seconds(suite, "cuda", expand_grid(suite, "cuda"))
    console.print(
        f"plan: pytest -m gpu (~{describe(TESTS_S)}), suite {SUITE} ({suite.grid.case_count} cases, at most "
        f"~{describe(suite_s)}), its report, all in {args.out}/; estimated {describe(TESTS_S + suite_s)} in all",
        soft_wrap=True,
    )
    if args.dry_run:
        return 0
    if not torch.cuda.is_available():
        raise DeviceError("gpu-check needs a CUDA GPU; accepted: a machine where torch.cuda.is_available(), or --dry-run")
    # Checked before the ~90 s of tests, whose log is the first thing written there.
    return check(suite, project, prepare_output(Path(args.out), "--out", folder=True))


def check(suite: SuiteSpec, project: ProjectConfig, out: Path) -> int:
    """The check itself, into `out`: the gpu tests (their log), the suite's run, its report, the summary;
    exit 0 when the tests passed and the run completed."""
    from attnbench.report import write_report
    from attnbench.results import read_run
    from attnbench.runner import run_suite

    started = time.perf_counter()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"], capture_output=True, text=True
    )
    write_text(out / "pytest-gpu.log", tests.stdout + tests.stderr, "--out")
    run_dir = run_suite(suite, project, out / "results")
    report = write_report(run_dir, out / "report.md")
    run = read_run(run_dir)
    console.print(summary(run, tests, time.perf_counter() - started, report), soft_wrap=True)
    return 0 if tests.returncode == 0 and run.meta.get("status") == "complete" else 1


def summary(run, tests: subprocess.CompletedProcess, seconds: float, report: Path) -> str:
    """One screen: the tests' outcome, the device, each module's overhead eager and replayed, flags."""
    from attnbench.report.tables import with_overhead

    tail = (tests.stdout.strip().splitlines() or ["no output"])[-1]
    meta = run.meta
    lines = [
        f"gpu tests: {tail} (exit {tests.returncode})",
        f"device: {meta.get('device_name')}, driver {meta.get('driver', '?')}, torch {meta.get('torch')}, "
        f"CUDA {meta.get('cuda')}; TF32 matmul {meta['tf32']['matmul']}, cuDNN {meta['tf32']['cudnn']}",
        f"run {run.run_id}: {meta.get('status')}, {int((run.cases['status'] == 'ok').sum())}/{len(run.cases)} ok, "
        f"copy bandwidth {meta.get('copy_bandwidth_gbs', float('nan')):.0f} GB/s",
    ]
    table = with_overhead(run.cases)
    if not table.empty:
        shown = table.assign(
            eager_ms=table["latency_ms_median"], overhead=table["latency_overhead_pct"],
            graph_ms=table.get("graph_ms_median"), launch_ms=table.get("launch_overhead_ms"),
            alone_ms=table.get("module_latency_ms_median"),
        )[["attention", "dtype", "batch_size", "eager_ms", "overhead", "graph_ms", "launch_ms", "alone_ms"]]
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    throttled = run.cases.get("throttled", pd.Series(dtype=object)).map(lambda v: str(v) == "True")
    if throttled.any():
        lines.append(f"throttled: {int(throttled.sum())} case(s) ran with dropped clocks (see the report)")
    lines.append(f"took {seconds / 60:.1f} min; report: {report}; logs and run: {report.parent}/")
    return "\n".join(lines)
