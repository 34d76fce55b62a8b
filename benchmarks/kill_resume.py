"""``python -m benchmarks.kill_resume``: SIGKILL a worker mid-trial, restart it, count losses.

Runs a small study in a worker process (``python -m study.run``), kills the worker with SIGKILL
after chosen epochs of its running trial, restarts it each time, lets the study finish, and
prints every trial: state, which attempt it continues, and the epoch it resumed from. It then
runs the same trial uninterrupted in a fresh study (its sampled params fixed with ``--set``) and
compares the retried trial's per-epoch values with it.

Every worker runs through ``benchmarks.deterministic`` (deterministic kernels, no cuDNN
autotuning, a fixed cuBLAS workspace), so that training is exactly repeatable on CUDA as it is
on CPU (the default here: a WRN-10-1 on synthetic data): the values must be equal.
``benchmarks.acceptance`` runs the same measurement on CUDA.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from study.records import TrialAttrs
from wrn.config import comparable

# a WRN-10-1 on 600 synthetic 10-class images: about a second per epoch on one CPU core
FAST_TRIAL = [
    "--dataset", "synthetic", "--device", "cpu", "--val-size", "100", "--pruner", "none",
    "--sampler", "random", "--set", "depth=10", "--set", "width=1", "--set", "batch_size=32",
    "--set", "workers=0", "--set", "num_classes=10", "--set", "synthetic_train_size=600",
    "--set", "synthetic_test_size=50", "--set", "augmentation=basic",
    "--set", "mixup_prob=0.0", "--set", "cutmix_prob=0.0",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
STUDY = "kill"
POLL_S = 0.2  # seconds between looks at the running trial's reported epochs


class KillResumeError(RuntimeError):
    """A worker exited on its own, or a study did not end as expected."""


def running_epochs(url: str, name: str) -> int:
    """Epochs reported so far by the study's RUNNING trial (0 if none, or no study yet)."""
    try:
        trials = optuna.load_study(study_name=name, storage=url).get_trials()
    except KeyError:
        return 0
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    return max((len(t.intermediate_values) for t in running), default=0)


def study_command(study_args: Sequence[str], url: str, folder: Path, epochs: int, trials: int):
    return [
        sys.executable,
        "-m",
        "benchmarks.deterministic",  # bit-for-bit repeatable on CUDA too
        "study.run",
        *study_args,
        "--epochs",
        str(epochs),
        "--trials",
        str(trials),
        "--storage",
        url,
        "--study-name",
        STUDY,
        "--checkpoint-dir",
        str(folder / "checkpoints"),
    ]


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _run_to_end(command: list[str], env: dict[str, str], log: Path, timeout: float) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if done.returncode != 0:
        raise KillResumeError(f"study.run exited with {done.returncode}: {_tail(log)}")


def kill_and_resume(
    study_args: Sequence[str],
    folder: Path,
    epochs: int,
    trials: int,
    kill_after: Sequence[int],
    env: dict[str, str],
    timeout: float = 600.0,
) -> dict[str, Any]:
    """SIGKILL the worker once its running trial has reported each of ``kill_after`` epochs,
    restart it each time, then let the study finish. Returns the study's trials and losses."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder}/wrn.db"
    command = study_command(study_args, url, folder, epochs, trials)
    log = folder / "worker.log"
    deadline = time.monotonic() + timeout
    killed_at = []
    for after in kill_after:
        with log.open("ab") as out:
            worker = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            while running_epochs(url, STUDY) < after:
                if worker.poll() is not None:
                    raise KillResumeError(
                        f"the worker exited ({worker.returncode}) before its trial reported "
                        f"{after} epochs: {_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise KillResumeError(f"no trial reached {after} epochs in {timeout:.0f} s")
                time.sleep(POLL_S)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        killed_at.append(running_epochs(url, STUDY))
        print(f"SIGKILL after {killed_at[-1]} reported epochs of the running trial", flush=True)
    _run_to_end(command, env, log, max(1.0, deadline - time.monotonic()))
    study_trials = optuna.load_study(study_name=STUDY, storage=url).get_trials()
    complete = [t for t in study_trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {
        "url": url,
        "killed_at_epochs": killed_at,
        "trials": study_trials,
        "complete": len(complete),
        "trials_lost": trials - len(complete),
    }


def fixed(params: dict[str, Any]) -> list[str]:
    """``--set`` flags that fix a trial's sampled params (floats exactly, via repr)."""
    return [a for k, v in sorted(params.items()) for a in ("--set", f"{k}={v!r}".replace("'", ""))]


def uninterrupted_values(
    study_args: Sequence[str],
    folder: Path,
    epochs: int,
    env: dict[str, str],
    timeout: float,
    params: dict[str, Any],
) -> tuple[dict[str, Any] | None, list[float]]:
    """A fresh study's only trial, with ``params`` fixed, run without interruption: its
    resolved config and per-epoch values. (Each study.run process salts its sampler's seed,
    so a fresh study would not draw the same params again.)"""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder}/wrn.db"
    command = study_command([*study_args, *fixed(params)], url, folder, epochs, 1)
    _run_to_end(command, env, folder / "worker.log", timeout)
    (trial,) = optuna.load_study(study_name=STUDY, storage=url).get_trials()
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise KillResumeError(f"the uninterrupted trial ended {trial.state.name}")
    return trial.user_attrs.get(TrialAttrs.CONFIG), per_epoch(trial)


def per_epoch(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]


def retried_trial(trials: Sequence[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """The completed attempt that continues trial 0 (the one the worker was killed in)."""
    for t in trials:
        complete = t.state == optuna.trial.TrialState.COMPLETE
        if complete and t.user_attrs.get(TrialAttrs.FIRST_ATTEMPT) == 0:
            return t
    raise KillResumeError("no completed retry of trial 0")


def compare_values(
    resumed: Sequence[float], reference: Sequence[float], tolerance: float
) -> dict[str, Any]:
    """Exact equality, and equality within ``tolerance`` (absolute, per epoch)."""
    same_length = len(resumed) == len(reference)
    diff = (
        max((abs(a - b) for a, b in zip(resumed, reference, strict=True)), default=0.0)
        if same_length
        else None
    )
    return {
        "values_exactly_equal": same_length and list(resumed) == list(reference),
        "values_equal": same_length and diff is not None and diff <= tolerance,
        "max_abs_diff": diff,
        "tolerance": tolerance,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="epochs per trial")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument(
        "--kill-after",
        type=int,
        nargs="+",
        default=[3, 6],
        help="reported epochs of the running trial at which to SIGKILL the worker",
    )
    args = p.parse_args(argv)
    if any(k < 1 or k >= args.epochs for k in args.kill_after) or args.trials < 1:
        p.error("--kill-after values must be in [1, --epochs) and --trials >= 1")
    folder = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = kill_and_resume(
        FAST_TRIAL, folder / "killed", args.epochs, args.trials, args.kill_after, env
    )
    for t in result["trials"]:
        print(
            f"trial {t.number}: {t.state.name:8} continues trial "
            f"{t.user_attrs.get(TrialAttrs.FIRST_ATTEMPT, t.number)}, resumed from epoch "
            f"{t.user_attrs.get(TrialAttrs.RESUMED_FROM_EPOCH, 0)}, "
            f"{len(t.intermediate_values)} epochs reported"
        )
    print(f"{result['complete']} of {args.trials} trials complete; lost: {result['trials_lost']}")
    retry = retried_trial(result["trials"])
    config, reference = uninterrupted_values(
        FAST_TRIAL, folder / "reference", args.epochs, env, 600, retry.params
    )
    same = compare_values(per_epoch(retry), reference, tolerance=0.0)  # exactly repeatable
    # what the runs compute: execution keys (data_dir as a resumed study resolves it) aside
    same_config = comparable(retry.user_attrs.get(TrialAttrs.CONFIG) or {}) == comparable(
        config or {}
    )
    print(
        f"retried trial's per-epoch values equal an uninterrupted run's: "
        f"{same['values_exactly_equal']} (same config: {same_config})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
