"""``python -m benchmarks.kill_resume``: SIGKILL a worker mid-trial, restart it, count losses.

Runs a small CPU study (WRN-10-1 on synthetic data) in a worker process, kills the worker with
SIGKILL after chosen epochs of its first trial, restarts it each time, lets the study finish,
and prints every trial: state, which attempt it continues, and the epoch it resumed from.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

# a WRN-10-1 on 600 synthetic 10-class images: about a second per epoch on one CPU core
FAST_TRIAL = [
    "--dataset", "synthetic", "--device", "cpu", "--val-size", "100", "--pruner", "none",
    "--sampler", "random", "--set", "depth=10", "--set", "width=1", "--set", "batch_size=32",
    "--set", "workers=0", "--set", "num_classes=10", "--set", "synthetic_train_size=600",
    "--set", "synthetic_test_size=50", "--set", "augmentation=basic",
    "--set", "mixup_prob=0.0", "--set", "cutmix_prob=0.0",
]  # fmt: skip


def running_epochs(url: str, name: str) -> int:
    """Epochs reported so far by the study's RUNNING trial (0 if none, or no study yet)."""
    try:
        trials = optuna.load_study(study_name=name, storage=url).get_trials()
    except KeyError:
        return 0
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    return max((len(t.intermediate_values) for t in running), default=0)


def main() -> int:
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
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    url = f"sqlite:///{folder}/wrn.db"
    command = [
        sys.executable,
        "-m",
        "study.run",
        *FAST_TRIAL,
        "--epochs",
        str(args.epochs),
        "--trials",
        str(args.trials),
        "--storage",
        url,
        "--study-name",
        "kill",
        "--checkpoint-dir",
        str(folder / "checkpoints"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for epochs in args.kill_after:
        worker = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while running_epochs(url, "kill") < epochs:
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        print(f"SIGKILL after {running_epochs(url, 'kill')} reported epochs of the running trial")
    subprocess.run(command, env=env, check=True)
    trials = optuna.load_study(study_name="kill", storage=url).get_trials()
    for t in trials:
        print(
            f"trial {t.number}: {t.state.name:8} continues trial "
            f"{t.user_attrs.get('first_attempt', t.number)}, resumed from epoch "
            f"{t.user_attrs.get('resumed_from_epoch', 0)}, "
            f"{len(t.intermediate_values)} epochs reported"
        )
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    print(f"{complete} of {args.trials} trials complete; lost: {args.trials - complete}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
