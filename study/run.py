"""``python -m study.run``: run (or finish) an Optuna study over a search space.

python -m study.run --trials 50                     # WRN-28-10 space on CIFAR-100
python -m study.run --space light --trials 50       # the light (WRN-16-8) space
python -m study.run --dataset synthetic --set depth=10 --set width=1 --trials 4 --epochs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna

from search_spaces import SearchSpace, list_spaces, load_space
from study.chance import trial_chance_note
from study.cli import (
    Parser,
    add_data_flags,
    add_device_flag,
    add_run_flags,
    add_storage_flag,
    command_parser,
    epochs_type,
    int_at_least,
    positive_float,
    run_command,
    run_flags,
    seed_type,
    study_name_type,
)
from study.data_check import (
    NEW_SEARCH,
    check_same_data,
    data_record,
    recorded_data,
    with_data_dir,
)
from study.errors import UsageError
from study.gpus import use_gpus
from study.jobs import SearchJob
from study.pace import FINISHED_STATES
from study.progress import Progress
from study.pruning import (
    add_pruner_flags,
    make_pruner,
    pruner_choice,
)
from study.records import (
    SAMPLER_STARTUP_TRIALS,
    SAMPLERS,
    SearchSettings,
    StudyAttrs,
    configurations,
    dropped_text,
    mark_study,
    promotion_counts,
    record_command,
    tally,
)
from study.sampling import (
    SAMPLER_SEED_ENV,
    WORKER_ENV,
    describe_startup,
    make_sampler,
    sampler_seed,
)
from study.sqlite_file import checkpoint_wal
from study.storage import open_storage, read_study_attrs, redact, require_writable
from wrn.config import (
    ConfigError,
    DataConfig,
    TrainConfig,
    parse_assignments,
)
from wrn.epoch_plan import check_runnable, few_steps_warning

if TYPE_CHECKING:
    from study.lifecycle import Lifecycle
    from wrn.data import Splits

# the trial states that count towards --trials, named once (the display counts them too)
FINISHED = tuple(optuna.trial.TrialState[name] for name in FINISHED_STATES)


def build_parser() -> Parser:
    p = command_parser("study.run", __doc__)
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
    add_storage_flag(p)
    p.add_argument("--study-name", type=study_name_type, help="default: the space's name")
    p.add_argument(
        "--epochs",
        type=epochs_type,
        help="epochs per trial (default: the space's search budget)",
    )
    add_data_flags(p)
    p.add_argument(
        "--val-size",
        type=int_at_least(1),
        default=DataConfig.val_size,
        help="validation images held out of the training set, stratified",
    )
    add_device_flag(p)
    p.add_argument(
        "--seed",
        type=seed_type,
        default=0,
        help="training seed of every trial and of the validation split; with a fresh random "
        "salt per process, the sampler's",
    )
    p.add_argument(
        "--sampler-seed",
        type=seed_type,
        help="the sampler's seed exactly, to replay a recorded stream (each trial records its "
        "sampler_seed); default: --seed with a fresh salt, so that processes differ",
    )
    add_pruner_flags(p)
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=SAMPLERS[0],
        help="tpe: multivariate TPE with a constant liar for parallel workers; random: uniform",
    )
    p.add_argument(
        "--sampler-startup-trials",
        metavar="N",
        type=int_at_least(0),
        default=SAMPLER_STARTUP_TRIALS,
        help=describe_startup("N"),
    )
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after this many s")
    for flag, default, text in (
        ("--workers", 1, "worker processes on this machine, spread over the visible GPUs"),
        ("--max-failures", 5, "stop after this many failed trials in a row"),
    ):
        p.add_argument(flag, type=int_at_least(1), default=default, help=text)
    add_run_flags(p)
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
    try:
        fixed = parse_assignments(assignments)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if fixed.get("eval_split", "val") != "val":
        raise UsageError("--set eval_split: a search never scores on the test set")
    return fixed


def search_job(args: argparse.Namespace, argv: Sequence[str]) -> SearchJob:
    """The search the command line asks for (the space loaded, ``--set`` parsed)."""
    space = load_space(args.space)
    return SearchJob(
        flags=run_flags(args),
        argv=tuple(argv),
        name=args.study_name or space.name,
        space=space,
        fixed=parse_fixed(args.assignments),
        epochs=args.epochs or space.search_epochs,
        trials=args.trials,
        val_size=args.val_size,
        seed=args.seed,
        sampler=args.sampler,
        sampler_seed=sampler_seed(args.seed, args.sampler_seed),
        sampler_startup_trials=args.sampler_startup_trials,
        pruner=pruner_choice(
            args.pruner, args.pruner_startup_trials, args.pruner_warmup_epochs, args.reduction
        ),
        timeout=args.timeout,
        workers=args.workers,
        max_failures=args.max_failures,
        worker=int(os.environ.get(WORKER_ENV, "0")),
    )


def check_configs(
    space: SearchSpace, base: dict[str, Any], fixed: dict[str, Any]
) -> list[TrainConfig]:
    """The base config (first) and one for each end of every searched range, with the fixed
    values; fail before any storage is touched if any is not a valid config."""
    try:
        configs = [TrainConfig.from_flat({**base, **fixed})]
        for spec in space.searched(fixed):
            for value in spec.choices or (spec.low, spec.high):
                configs.append(TrainConfig.from_flat({**base, spec.name: value, **fixed}))
    except ConfigError as e:
        raise UsageError(f"--set: {e}") from None
    return configs


def search_settings(job: SearchJob) -> SearchSettings:
    return SearchSettings(
        space=job.space,
        fixed=job.fixed,
        epochs=job.epochs,
        recipe_epochs=job.space.recipe["epochs"],
        dataset=str(job.flags.dataset),
        val_size=job.val_size,
        seed=job.seed,
        pruner=job.pruner.kind,
        sampler=job.sampler,
        sampler_startup_trials=job.sampler_startup_trials,
        data=job.data,
    )


def refuse_changed(job: SearchJob) -> set[str]:
    """The storage's study names, after refusing to resume ``job.name`` with other pinned
    settings; reads through a read-only connection, so a refused storage stays byte-identical."""
    studies = read_study_attrs(job.flags.storage)
    if job.name in studies:
        recorded = studies[job.name].get(StudyAttrs.SETTINGS, {})
        changed = search_settings(job).changed_from(recorded)
        if changed:
            raise UsageError(
                f"study {job.name!r} was run with {changed[0]}; resume it with the same "
                "settings or start a new one with --study-name"
            )
        if job.data is not None:  # and the same data
            seen = recorded_data(studies[job.name])
            check_same_data(job.name, seen, job.data, str(job.flags.data_dir), NEW_SEARCH)
    return set(studies)


def open_study(job: SearchJob, pruner: Any) -> tuple[optuna.Study, Any]:
    """The study (created, or resumed with the same pinned settings) and its storage."""
    existing = refuse_changed(job)
    storage = open_storage(job.flags.storage, heartbeat_interval=job.flags.heartbeat)
    study = optuna.create_study(
        storage=storage,
        study_name=job.name,
        direction="maximize",
        sampler=make_sampler(job.sampler, job.sampler_seed, job.sampler_startup_trials),
        pruner=pruner,
        load_if_exists=True,
    )
    if job.name not in existing:
        mark_study(study, search_settings(job))
    return study, storage


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    job = search_job(build_parser().parse_args(argv), argv)
    # failures and progress are reported by this module, in one line each
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    configs = check_configs(job.space, job.base(), job.fixed)
    cfg = configs[0]
    pruner = make_pruner(job.pruner, job.epochs, cfg.optim.warmup_frac)
    if not job.worker:  # a worker's one GPU was set by its parent
        use_gpus(job.flags.gpus, job.flags.device, job.workers)
    require_writable(job.flags.storage)  # from permissions alone: a refusal reads nothing
    if job.flags.data_dir is None:  # resumed: the folder the study recorded (a read-only look)
        recorded = recorded_data(read_study_attrs(job.flags.storage).get(job.name))
        job = dataclasses.replace(job, flags=with_data_dir(job.flags, recorded))
        cfg = cfg.replace(data_dir=job.flags.data_dir)
    # torch only now: --help and bad flags answer without it
    from study.dashboard import artifact_store, default_artifact_dir, write_study_note
    from study.lifecycle import ClaimLock, Lifecycle, require_device
    from study.records import StudyKind
    from study.tensorboard import tensorboard_log
    from wrn.data import load_splits

    on_cpu = require_device(job.flags.device)
    # loading the data before opening storage: a bad data directory changes nothing recorded
    splits = load_splits(cfg.data, cfg.model.num_classes, cfg.run.seed)
    job = dataclasses.replace(job, data=data_record(cfg))  # checked against the study's later
    for each in configs:  # e.g. grad_accum beyond the epoch's batches: found before training
        check_runnable(each, len(splits.train))
    # the artifact folder is checked with the other input, before the storage is touched
    store = artifact_store(job.flags.artifact_dir or default_artifact_dir(job.flags.storage))
    study, storage = open_study(job, pruner)
    if job.worker == 0:
        record_command(study, "study.run", argv)  # for the note's suggested commands
        write_study_note(study, job.flags.storage)  # the dashboard's note: space, budget, best
    # bars from several processes garble a terminal: with --workers, plain lines only
    tty = False if job.worker or job.workers > 1 else None
    progress = Progress(quiet=job.flags.quiet, tty=tty)
    if job.worker == 0:  # said once, not per worker
        for line in (on_cpu, few_steps_warning(cfg, len(splits.train))):
            if line is not None:
                progress.message(line)
    life = Lifecycle(
        checkpoint_dir=job.flags.checkpoint_dir,
        keep_checkpoints=job.flags.keep_checkpoints,
        artifact_store=store,
        prune=True,
        progress=progress,
        claims=ClaimLock(job.flags.storage),
        tensorboard=tensorboard_log(job.flags, job.name, StudyKind.SEARCH),
    )
    try:
        return search(study, storage, job, life, splits)
    finally:
        progress.close()
        checkpoint_wal(storage)  # the .db file alone then holds the study


def search(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    job: SearchJob,
    life: Lifecycle,
    splits: Splits | None,
) -> int:
    """Show the study's state, then run its remaining trials here or in worker processes."""
    progress = life.progress
    life.recover(study, storage)
    trials = study.get_trials(deepcopy=False)
    finished = len(configurations([t for t in trials if t.state in FINISHED]))
    best = tally(trials).best  # read from the storage: a resumed study shows its best
    best_value = None if best is None else float(best.value)
    remaining = job.trials - finished
    promoting = job.pruner.kind == "promote"  # a full study may still have promotions to run
    if job.worker == 0:
        progress.study_start(
            job.name, total=job.trials, finished=finished, best=best_value, epochs=job.epochs
        )
        progress.message(
            f"storage {redact(job.flags.storage)}: running {max(remaining, 0)} trial(s)"
            + (f" with {job.workers} workers" if job.workers > 1 else "")
            + f", sampler seed {job.sampler_seed}"
        )
    else:
        progress.best = best_value  # each worker's lines show the study's best too
    gc.freeze()  # start-up objects stay put: the collector skips them in every trial after
    if (remaining > 0 or promoting) and job.workers > 1:
        from study.lifecycle.workers import run_workers

        env = {SAMPLER_SEED_ENV: str(job.sampler_seed)}
        command = ["-m", "study.run", *job.argv]
        code = run_workers(command, job.workers, job.flags.device, WORKER_ENV, env)
        print_summary(study)
        return code
    if remaining > 0 or promoting:
        from study.lifecycle.search import optimize

        optimize(study, storage, job, life, splits)
    if job.worker == 0:
        print_summary(study)
    return 0


def print_summary(study: optuna.Study) -> None:
    counts = tally(study.get_trials(deepcopy=False))
    # an interrupted attempt (queued to resume) or one a full study never ran is no failure
    dropped = dropped_text(study.user_attrs)  # by the retry limit, after lost workers
    promoted = promotion_counts(study.get_trials(deepcopy=False))  # --pruner promote
    extra = "".join(f"; {text}" for text in (promoted and promoted.describe(), dropped) if text)
    print(f"study {study.study_name!r}: {counts.describe()}{extra}")
    best = counts.best
    if best is not None:
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()
        )
        chance = trial_chance_note(best)  # " (at chance: ...)": no better than guessing
        print(f"best: trial {best.number}, val_acc {best.value:.4f}{chance} ({params})")


if __name__ == "__main__":
    run_command("python -m study.run", main)
