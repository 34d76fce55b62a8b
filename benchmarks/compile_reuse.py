"""Does ``compile=true`` pay across a study? Compile seconds of a trial and of the next one.

``python -m benchmarks.compile_reuse [--device cpu|cuda] [--depth 10] [--width 1] [--out F]``

Trial 2 has the same depth and width as trial 1 but another dropout, stem dropout and label
smoothing, as the next trial of a study would. Each trial builds its ``TrainStep`` with
``compile=true`` and runs training steps and then evaluation forwards on fixed random
batches; a phase's compile seconds are its first call's time less the median of the later
calls (the steady step). Measured three ways, all with one fresh inductor cache folder:

* ``trial 1``: the first compile of a process with an empty cache (a study's first trial);
* ``trial 2, new process``: trial 2 alone in a new process whose on-disk inductor cache
  holds trial 1's graphs only (a worker's first trial, or a restart);
* ``trial 2, same process``: right after trial 1 in one process, with that same cache
  (every later trial of a study: are trial 1's graphs kept and reused?).

Prints a table and writes the figures as JSON to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# (dropout, first_dropout, label_smoothing): the light recipe's, then another trial's
TRIALS = {"1": (0.25, 0.1, 0.15), "2": (0.1, 0.05, 0.2)}
TIMED_CALLS = 4  # calls after the first, whose median is the steady time


def _seconds(call: Any, sync: Any) -> tuple[float, float]:
    """First call's time and the median of the next TIMED_CALLS."""
    times = []
    for _ in range(1 + TIMED_CALLS):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def run_trial(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One trial in this process: compile seconds of its training step and evaluation."""
    import torch

    from search_spaces.loader import load_space
    from wrn.step import TrainStep

    dropout, first_dropout, smoothing = TRIALS[name]
    device = torch.device(args.device)
    cfg = load_space("light").recipe_config(
        depth=args.depth, width=args.width, batch_size=args.batch_size, device=args.device,
        compile=True, dropout=dropout, first_dropout=first_dropout, label_smoothing=smoothing,
    )  # fmt: skip
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    torch.manual_seed(0)
    step = TrainStep(cfg, device, total_steps=10**6)
    images = torch.randn(args.batch_size, 3, 32, 32, device=device)
    labels = torch.randint(cfg.model.num_classes, (args.batch_size,), device=device)
    train_first, train_steady = _seconds(lambda: step(images, labels), sync)
    step.step_model.eval()

    def evaluate() -> None:
        with torch.inference_mode():
            step.step_model(images)

    eval_first, eval_steady = _seconds(evaluate, sync)
    train_s, eval_s = train_first - train_steady, eval_first - eval_steady
    return {
        "trial": name,
        "dropout": dropout,
        "first_dropout": first_dropout,
        "label_smoothing": smoothing,
        "compile_s": train_s + eval_s,
        "train_compile_s": train_s,
        "eval_compile_s": eval_s,
        "train_step_s": train_steady,
    }


def _child(trials: str, args: argparse.Namespace, cache: Path) -> list[dict[str, Any]]:
    """Run ``trials`` (e.g. "12") in a new process sharing the inductor cache ``cache``."""
    command = [sys.executable, "-m", "benchmarks.compile_reuse", "--trials", trials]
    command += ["--device", args.device, "--depth", str(args.depth), "--width", str(args.width)]
    command += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SystemExit(f"compile_reuse: the trial process failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compile_reuse", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--depth", type=int, default=10, help="6n+4 (10: WRN-10-1 on CPU)")
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, help="write the figures here as JSON")
    p.add_argument("--trials", help=argparse.SUPPRESS)  # in a trial process: which to run
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.trials is not None:  # a trial process: one JSON line of its trials
        print(json.dumps([run_trial(name, args) for name in args.trials]))
        return 0
    with tempfile.TemporaryDirectory(prefix="compile-reuse-") as tmp:
        cache, copy = Path(tmp) / "cache", Path(tmp) / "copy"
        (first,) = _child("1", args, cache)  # cold: an empty cache
        shutil.copytree(cache, copy)  # trial 1's graphs only, for each of the two below
        (fresh,) = _child("2", args, cache)
        _, same = _child("12", args, copy)
    result = {
        "device": args.device,
        "net": f"WRN-{args.depth}-{args.width}",
        "batch_size": args.batch_size,
        "trial_1": first,
        "trial_2_same_process": same,
        "trial_2_new_process": fresh,
    }
    print(f"compile seconds, {result['net']} batch {args.batch_size} on {args.device}:")
    for label, trial in (("trial 1", first), ("trial 2, same process", same)):
        print(f"  {label:24s} {trial['compile_s']:8.2f}")
    print(f"  {'trial 2, new process':24s} {fresh['compile_s']:8.2f}")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
