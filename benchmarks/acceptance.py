"""Everything only a GPU can show, in one command, against the targets, in under 500 s.

``python -m benchmarks.acceptance [--quick] [--device cuda|cpu] [--out DIR] [--fashion-gz DIR]``

Runs, each part in its own process under its own time budget (in this order):

* ``throughput``: images/s, MFU and peak memory of WRN-28-10 and WRN-16-8 on the model-only,
  gpu and seed-baseline paths (``benchmarks/throughput.py``), and each recipe's trial start to
  first optimiser step;
* ``memory``: memory over 20 consecutive WRN-28-10 mini trials;
* ``checkpoint``: extra epoch time from checkpointing every epoch (WRN-28-10);
* ``real_data``: WRN-16-8 trained on Fashion-MNIST, test accuracy;
* ``kill_resume``: a ``study.run`` worker SIGKILLed mid-trial and restarted; trials lost and
  whether the retry's per-epoch values equal uninterrupted runs';
* ``compiled``: the gpu rows again with torch.compile.

A part that fails or overruns is recorded under ``errors`` and the next one runs; the JSON
(``<date>-<device>-acceptance.json``) and its markdown table are rewritten after every part.
``--quick`` runs every part with tiny stand-ins (WRN-10-1 and the like, a few hundred images,
1-4 epochs) in about a minute on two CPU cores; its numbers only show the code works.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from benchmarks import acceptance_parts as parts
from benchmarks.acceptance_report import REPORT_KEYS, merge, write_report
from benchmarks.throughput_core import RESULTS_DIR, device_name
from wrn.config import ConfigError, parse_assignments

# the whole run: a device call runs at most 600 s, the wheels' install and start-up included
BUDGET_S = 500
# each part's own limit (s, H100/H200); estimates: throughput 70 (its augmentation compiles
# cold), memory 25, checkpoint 55, real_data 85, kill_resume 85, plus ~8 s to start each
# process; compiled (no target) gets what is left
PART_BUDGET_S = {
    "throughput": 120,
    "memory": 45,
    "checkpoint": 90,
    "real_data": 110,
    "kill_resume": 110,
    "compiled": 120,
}
QUICK_PART_BUDGET_S = 150  # per part on two shared CPU cores: a safety net only
MIN_PART_S = 10  # a part with less time left than this is skipped


# ------------------------------------------------------------------------ running parts


def run_part(name: str, argv: Sequence[str], timeout: float) -> tuple[dict[str, Any], str | None]:
    """Run one part in a child process (its own session, killed whole at the budget)."""
    with tempfile.TemporaryDirectory(prefix="acceptance-part-") as tmp:
        out = Path(tmp) / "part.json"
        command = [sys.executable, "-m", "benchmarks.acceptance", *argv]
        command += ["--part", name, "--part-out", str(out)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        child = subprocess.Popen(command, env=env, cwd=parts.ROOT, start_new_session=True)
        error = None
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            error = f"over its {timeout:.4g} s budget: stopped"
        finally:
            # the part and anything it started and left behind (its session is its own)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        saved = json.loads(out.read_text()) if out.is_file() else {}
    error = error or saved.get("error")
    if error is None and child.returncode != 0:
        error = f"exited with status {child.returncode}"
    return saved.get("result", {}), error


def child_main(args: argparse.Namespace, opts: parts.Options) -> int:
    """In a part's process: run it, saving what it emits (atomically) to --part-out."""
    saved: dict[str, Any] = {"result": {}, "error": None}
    out: Path = args.part_out

    def save() -> None:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(saved, default=str))
        tmp.replace(out)

    def emit(result: dict[str, Any]) -> None:
        saved["result"].update(result)
        save()

    try:
        parts.PARTS[args.part](opts, emit)
    except (Exception, SystemExit) as e:
        traceback.print_exc()
        saved["error"] = f"{type(e).__name__}: {e}".strip().splitlines()[0][:500]
        save()
        return 1
    return 0


# ---------------------------------------------------------------------------------- main


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")  # one line, no usage block


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.acceptance", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny stand-ins (CPU by default)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None)
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    p.add_argument("--fashion-gz", type=Path, help="folder of the four Fashion-MNIST .gz files")
    p.add_argument("--fashion-epochs", type=int, help=f"default {parts.FASHION_EPOCHS}")
    p.add_argument("--fashion-train", type=int, help="train on a fixed random subset")
    p.add_argument("--fashion-test", type=int, help="test on a fixed random subset")
    p.add_argument(
        "--fashion-set", action="append", default=[], metavar="KEY=VALUE", help="recipe change"
    )
    p.add_argument("--parts", nargs="+", choices=list(parts.PARTS), default=list(parts.PARTS))
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run")
    p.add_argument("--part", choices=list(parts.PARTS), help=argparse.SUPPRESS)
    p.add_argument("--part-out", type=Path, help=argparse.SUPPRESS)
    return p


def options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> parts.Options:
    """Validated options; every mistake is one line and exit status 2."""
    name = args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    if name == "cpu" and not args.quick:
        parser.error("a full run needs a CUDA GPU; on CPU use --quick")
    for flag in ("fashion_epochs", "fashion_train", "fashion_test"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.budget <= 0:
        parser.error("--budget must be > 0")
    if args.fashion_gz is not None and not args.fashion_gz.is_dir():
        parser.error(f"--fashion-gz {args.fashion_gz}: not a directory")
    try:
        sets = parse_assignments(args.fashion_set)
        opts = parts.Options(
            torch.device(name),
            args.quick,
            args.fashion_gz,
            args.fashion_epochs,
            sets,
            args.fashion_train,
            args.fashion_test,
        )
        parts.fashion_config(opts)  # an invalid recipe change fails here, not in the part
    except ConfigError as e:
        parser.error(f"--fashion-set: {e}")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    opts = options(args, parser)
    if args.part is not None:
        if args.part_out is None:
            parser.error("--part needs --part-out")
        return child_main(args, opts)

    report: dict[str, Any] = {
        "device": device_name(opts.device),
        "device_type": opts.device.type,
        "torch": torch.__version__,
        "command": f"python -m benchmarks.acceptance {shlex.join(argv)}".strip(),
        "date": datetime.date.today().isoformat(),
        "quick": opts.quick,
        "budget_s": args.budget,
        "elapsed_s": 0.0,
        **{key: None for key in REPORT_KEYS},
        "targets": [],
        "errors": {},
        "parts": {},
    }
    try:
        json_path, md_path = write_report(report, args.out)
    except OSError as e:
        parser.error(f"--out {args.out}: {e.strerror or e}")
    start = time.monotonic()
    budgets = {
        p: QUICK_PART_BUDGET_S if opts.quick else PART_BUDGET_S[p] for p in parts.PARTS
    }
    for name in [p for p in parts.PARTS if p in args.parts]:
        left = args.budget - (time.monotonic() - start)
        timeout = min(budgets[name], left)
        part_start = time.monotonic()
        if timeout < MIN_PART_S:
            result, error = {}, f"skipped: {left:.0f} s of the run's budget left"
        else:
            print(f"== {name} (budget {timeout:.0f} s)", flush=True)
            result, error = run_part(name, argv, timeout)
        merge(report, result)
        seconds = time.monotonic() - part_start
        status = "ok" if error is None else ("skipped" if error.startswith("skipped") else "error")
        report["parts"][name] = {"seconds": seconds, "budget_s": max(timeout, 0), "status": status}
        if error is not None:
            report["errors"][name] = error
            print(f"== {name}: {error}", flush=True)
        report["elapsed_s"] = time.monotonic() - start
        write_report(report, args.out)
    passed = sum(t["passed"] is True for t in report["targets"])
    print(f"{passed} of {len(report['targets'])} targets passed; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
