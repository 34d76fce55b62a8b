"""``python -m study.run``: run (or finish) an Optuna study over a search space.

python -m study.run --trials 50                     # WRN-28-10 space on CIFAR-100
python -m study.run --space light --trials 50       # the light (WRN-16-8) space
python -m study.run --dataset synthetic --set depth=10 --set width=1 --trials 4 --epochs 2
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import optuna
import torch

from search_spaces import SearchSpace, list_spaces, load_space
from study.cli import (
    Parser,
    StudyStoppedError,
    UsageError,
    int_at_least,
    positive_float,
    run_command,
)
from study.dashboard import artifact_store, default_artifact_dir, note_callback, write_study_note
from study.metadata import code_version, package_versions
from study.objective import Objective, TrialFailedError, searched_params, worker_alive
from study.progress import Progress
from study.storage import DEFAULT_STORAGE, open_storage, redact, retry_callback
from wrn.config import ConfigError, TrainConfig, parse_assignment
from wrn.data import load_splits

WORKER_ENV = "WRN_STUDY_WORKER"  # set in the processes that --workers starts
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# settings that change what a study's trials mean; a resumed study must keep them
_PINNED = ("space", "fixed", "epochs", "dataset", "val_size", "seed")


def build_parser() -> Parser:
    p = Parser(prog="python -m study.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--space",
        default="wrn28_10",
        help=f"search space: a built-in name ({', '.join(list_spaces())}) or a .toml path",
    )
    p.add_argument(
        "--trials",
        type=int_at_least(1),
        default=50,
        help="the study's total number of finished trials (a rerun finishes the rest)",
    )
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna RDB storage URL")
    p.add_argument("--study-name", help="default: the space's name")
    p.add_argument(
        "--epochs",
        type=int_at_least(1),
        help="epochs per trial (default: the space's search budget)",
    )
    p.add_argument("--data-dir", default="./data", help="holds (or receives) cifar-100-python/")
    p.add_argument("--dataset", choices=("cifar100", "synthetic"), default="cifar100")
    p.add_argument(
        "--val-size",
        type=int_at_least(1),
        default=5000,
        help="validation images held out of the training set, stratified",
    )
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="training seed of every trial, validation split and sampler",
    )
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    p.add_argument(
        "--pruner-startup-trials",
        type=int_at_least(0),
        default=5,
        help="median pruner: trials that finish before any is pruned",
    )
    p.add_argument(
        "--pruner-warmup-epochs",
        type=int_at_least(0),
        help="median pruner: epochs every trial runs before it may be pruned "
        "(default: a sixth of the epochs)",
    )
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after this many s")
    p.add_argument(
        "--workers",
        type=int_at_least(1),
        default=1,
        help="worker processes on this machine, spread over the visible GPUs",
    )
    p.add_argument(
        "--max-failures",
        type=int_at_least(1),
        default=5,
        help="stop after this many failed trials in a row",
    )
    p.add_argument(
        "--checkpoint-dir",
        default="studies/checkpoints",
        help="per-trial checkpoints, saved every epoch; a retried trial resumes there",
    )
    p.add_argument(
        "--keep-checkpoints", action="store_true", help="keep the checkpoints of finished trials"
    )
    p.add_argument(
        "--artifact-dir",
        help="per-trial learning curves (and kept checkpoints) for optuna-dashboard "
        "(default: artifacts/ beside a SQLite storage, else studies/artifacts)",
    )
    p.add_argument(
        "--heartbeat",
        type=int_at_least(1),
        default=60,
        help="seconds between a running trial's heartbeats; silent for 3 = dead",
    )
    p.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a searched or base value, e.g. --set depth=10 (repeatable)",
    )
    return p


def parse_fixed(assignments: list[str]) -> dict[str, Any]:
    fixed: dict[str, Any] = {}
    for text in assignments:
        try:
            key, value = parse_assignment(text)
        except ConfigError as e:
            raise UsageError(f"--set {text}: {e}") from None
        fixed[key] = value
    if fixed.get("eval_split", "val") != "val":
        raise UsageError("--set eval_split: a search never scores on the test set")
    return fixed


def base_values(space: SearchSpace, args: Any, epochs: int) -> dict[str, Any]:
    return {
        **space.recipe,
        "epochs": epochs,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "val_size": args.val_size,
        "eval_split": "val",
        "device": args.device,
        "seed": args.seed,
    }


def check_config(space: SearchSpace, base: dict[str, Any], fixed: dict[str, Any]) -> TrainConfig:
    """Fail before any storage is touched if the fixed values cannot make a valid config."""
    try:
        cfg = TrainConfig.from_flat({**base, **fixed})
        for spec in searched_params(space, fixed):
            # every end of every range must also give a valid config with the fixed values
            for value in spec.choices or (spec.low, spec.high):
                TrainConfig.from_flat({**base, spec.name: value, **fixed})
    except ConfigError as e:
        raise UsageError(f"--set: {e}") from None
    return cfg


def make_pruner(args: Any, epochs: int) -> optuna.pruners.BasePruner:
    if args.pruner == "median":
        warmup = args.pruner_warmup_epochs
        return optuna.pruners.MedianPruner(
            n_startup_trials=args.pruner_startup_trials,
            # steps are epochs counted from 1, and a step below n_warmup_steps is never pruned
            n_warmup_steps=1 + (max(1, epochs // 6) if warmup is None else warmup),
        )
    if args.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    return optuna.pruners.NopPruner()


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar keeps parallel workers from sampling the same point
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def study_settings(space: SearchSpace, fixed: dict[str, Any], args: Any, epochs: int) -> dict:
    return {
        "space": space.to_dict(),
        "fixed": fixed,
        "epochs": epochs,
        "recipe_epochs": space.recipe["epochs"],
        "dataset": args.dataset,
        "val_size": args.val_size,
        "seed": args.seed,
        "pruner": args.pruner,
        "sampler": args.sampler,
    }


def open_study(args: Any, name: str, settings: dict, epochs: int, worker: int = 0) -> optuna.Study:
    storage = open_storage(args.storage, heartbeat_interval=args.heartbeat)
    existing = {s.study_name: s for s in storage.get_all_studies()}
    if name in existing:
        recorded = existing[name].user_attrs.get("settings", {})
        changed = [k for k in _PINNED if k in recorded and recorded[k] != settings[k]]
        if changed:
            raise UsageError(
                f"study {name!r} was run with other {', '.join(changed)}; resume it with the "
                "same settings or start a new one with --study-name"
            )
    # the sampler's seed moves on with the study, so a resumed study does not replay old draws
    done = (
        len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
        if name in existing
        else 0
    )
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        # workers of one study each draw their own stream
        sampler=make_sampler(args.sampler, args.seed + done + 10_007 * worker),
        pruner=make_pruner(args, epochs),
        load_if_exists=True,
    )
    if name not in existing:
        study.set_user_attr("kind", "search")
        study.set_user_attr("settings", settings)
        study.set_user_attr("created", datetime.datetime.now(datetime.UTC).isoformat())
        study.set_user_attr("code_version", code_version())
        study.set_user_attr("packages", package_versions())
    return study


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # failures and progress are reported by this module, in one line each
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(args.space)
    name = args.study_name or space.name
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    fixed = parse_fixed(args.assignments)
    epochs = args.epochs or space.search_epochs
    base = base_values(space, args, epochs)
    cfg = check_config(space, base, fixed)
    # loading the data before opening storage: a bad data directory changes nothing recorded
    splits = load_splits(cfg.data, cfg.model.num_classes, cfg.run.seed)

    worker = int(os.environ.get(WORKER_ENV, "0"))
    # the artifact folder is checked with the other input, before the storage is touched
    store = artifact_store(args.artifact_dir or default_artifact_dir(args.storage))
    study = open_study(args, name, study_settings(space, fixed, args, epochs), epochs, worker)
    if worker == 0:
        write_study_note(study, args.storage)  # the dashboard's note: space, budget, best, next
    recovered = recover_dead_trials(study)
    if recovered:
        print(f"trials {', '.join(map(str, recovered))}: worker gone, queued to resume")
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = args.trials - finished
    if worker == 0:
        print(
            f"study {name!r} in {redact(args.storage)}: {finished} of {args.trials} trials "
            f"finished, running {max(remaining, 0)}"
            + (f" with {args.workers} workers" if args.workers > 1 else "")
        )
    if remaining > 0 and args.workers > 1:
        code = run_workers(argv, args.workers, args.device)
        print_summary(study)
        return code
    if remaining > 0:
        optimize(study, args, space, base, fixed, splits, store)
    if worker == 0:
        print_summary(study)
    return 0


def optimize(
    study: optuna.Study,
    args: Any,
    space: SearchSpace,
    base: dict[str, Any],
    fixed: dict[str, Any],
    splits: Any,
    store: Any,
) -> None:
    progress = Progress()
    objective = Objective(
        space,
        base,
        fixed,
        splits=splits,
        progress=progress,
        checkpoint_dir=args.checkpoint_dir,
        keep_checkpoints=args.keep_checkpoints,
        artifact_store=store,
    )
    failures = FailureGuard(args.max_failures)

    def report_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        progress.trial_end(trial.number, trial.state.name, trial.value)
        if trial.state == optuna.trial.TrialState.FAIL:
            reason = trial.user_attrs.get("fail_reason", "unknown error")
            print(f"trial {trial.number} failed: {reason}", file=sys.stderr)
        elif trial.state == optuna.trial.TrialState.PRUNED and progress.enabled:
            print(
                f"trial {trial.number} pruned: {trial.user_attrs.get('pruned_reason')}",
                file=sys.stderr,
            )

    # SIGTERM (a scheduler, `kill`) stops like Ctrl-C: the trial's last epoch stays saved
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        study.optimize(
            objective,
            # failed trials do not count towards --trials: run until the callbacks stop us
            n_trials=None,
            timeout=args.timeout,
            catch=(TrialFailedError,),
            callbacks=[
                report_end,
                failures,
                note_callback(args.storage),  # best so far, refreshed after each trial
                # with several workers on one study, stop at the study's total, not each's;
                # trials running elsewhere count, so the workers together do not overshoot
                optuna.study.MaxTrialsCallback(
                    args.trials, states=(*FINISHED, optuna.trial.TrialState.RUNNING)
                ),
            ],
            gc_after_trial=True,
        )
    except KeyboardInterrupt:
        if objective.interrupted_trial is not None:
            queue_interrupted(study, objective.interrupted_trial)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failures.stopped:
        raise StudyStoppedError(
            f"stopped after {failures.in_a_row} failed trials in a row "
            f"(last: {failures.last_reason}); see the trials' fail_reason"
        )


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class FailureGuard:
    """Stops the study after ``limit`` failed trials in a row (a broken setup, not bad luck)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.stopped = False
        self.last_reason = ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != optuna.trial.TrialState.FAIL:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.last_reason = trial.user_attrs.get("fail_reason", "unknown error")
        if self.in_a_row >= self.limit:
            self.stopped = True
            study.stop()


def queue_interrupted(study: optuna.Study, number: int) -> None:
    """Queue an interrupted trial to resume from its checkpoint in the next run."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if trial.state == optuna.trial.TrialState.FAIL:
        retry_callback(max_retry=None)(study, trial)


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail and requeue this host's RUNNING trials whose worker process is gone.

    Trials of other hosts are left to the heartbeat; a trial whose worker is alive is left alone.
    """
    recovered = []
    storage = study._storage
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        if worker_alive(trial.user_attrs) is not False:
            continue
        try:  # attrs first: a finished trial cannot be changed
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", "worker process died")
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recovered it first
        retry_callback()(study, storage.get_trial(trial._trial_id))
        recovered.append(trial.number)
    return recovered


def run_workers(argv: list[str], workers: int, device: str) -> int:
    """Run ``workers`` copies of this command on the study, spread over the visible GPUs."""
    gpus = list(range(torch.cuda.device_count())) if device != "cpu" else []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        gpus = [int(g) if g.isdigit() else g for g in visible.split(",") if g][: len(gpus)]
    procs = []
    for i in range(workers):
        env = {**os.environ, WORKER_ENV: str(i + 1)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(gpus[i % len(gpus)])
        procs.append(
            subprocess.Popen([sys.executable, "-m", "study.run", *argv, "--workers", "1"], env=env)
        )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:  # each worker saves and queues its trial, then exits
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return max(codes)


def print_summary(study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): 0 for s in optuna.trial.TrialState}
    for t in trials:
        states[t.state.name.lower()] += 1
    counts = ", ".join(f"{n} {s}" for s, n in states.items() if n)
    print(f"study {study.study_name!r}: {counts or 'no trials'}")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.value)
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()
        )
        print(f"best: trial {best.number}, val_acc {best.value:.4f} ({params})")


if __name__ == "__main__":
    run_command("python -m study.run", main)
