"""``python -m study.run``: run (or finish) an Optuna study over a search space.

python -m study.run --trials 50                     # WRN-28-10 space on CIFAR-100
python -m study.run --space light --trials 50       # the light (WRN-16-8) space
python -m study.run --dataset synthetic --set depth=10 --set width=1 --trials 4 --epochs 2
"""

from __future__ import annotations

import gc
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from search_spaces import SearchSpace, list_spaces, load_space
from study.cli import (
    SEED_LIMIT,
    Parser,
    add_artifact_flag,
    add_checkpoint_flags,
    add_data_flags,
    add_device_flag,
    add_output_flags,
    add_storage_flag,
    int_at_least,
    positive_float,
    run_command,
    seed_type,
)
from study.errors import UsageError
from study.progress import Progress
from study.records import (
    SearchSettings,
    StudyAttrs,
    best_trial,
    mark_study,
    record_command,
    tally,
)
from study.storage import default_checkpoint_dir, open_storage, redact, sqlite_path
from wrn.config import ConfigError, TrainConfig, parse_assignments

WORKER_ENV = "WRN_STUDY_WORKER"  # set in the processes that --workers starts
SAMPLER_SEED_ENV = "WRN_STUDY_SAMPLER_SEED"  # the parent's sampler seed, for its workers
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
PRUNERS = ("median", "hyperband", "percentile", "patient", "none")


def build_parser() -> Parser:
    p = Parser(
        prog="python -m study.run",
        description=__doc__.splitlines()[0],
        examples=[line for line in __doc__.splitlines()[2:] if line.startswith("python")],
    )
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
    p.add_argument("--study-name", help="default: the space's name")
    p.add_argument(
        "--epochs",
        type=int_at_least(1),
        help="epochs per trial (default: the space's search budget)",
    )
    add_data_flags(p)
    p.add_argument(
        "--val-size",
        type=int_at_least(1),
        default=5000,
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
    pruner_help, warmup_help = pruner_help_texts()
    p.add_argument("--pruner", choices=PRUNERS, default="median", help=pruner_help)
    p.add_argument(
        "--pruner-startup-trials",
        type=int_at_least(0),
        default=5,
        help="trials that finish before any is pruned",
    )
    p.add_argument("--pruner-warmup-epochs", type=int_at_least(0), help=warmup_help)
    p.add_argument(
        "--sampler",
        choices=("tpe", "random"),
        default="tpe",
        help="tpe: multivariate TPE with a constant liar for parallel workers; random: uniform",
    )
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
    add_checkpoint_flags(p)
    add_artifact_flag(p)
    add_output_flags(p)
    p.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a searched or base value, e.g. --set depth=10 (repeatable)",
    )
    return p


def pruner_help_texts() -> tuple[str, str]:
    """``--pruner`` and ``--pruner-warmup-epochs`` help: the default's rule, where it first
    prunes in each built-in space, and the replay benchmark's figures that chose it.

    Reads the spaces' TOML files directly: ``load_space`` checks cost caps with torch, and
    ``--help`` must answer without it."""
    import tomllib

    from search_spaces.loader import BUILTIN, SPACES_DIR
    from study.pruning import (
        DEFAULT_EVIDENCE,
        DEFAULT_PRUNER,
        default_warmup_epochs,
        describe_default,
    )
    from wrn.config import OptimConfig

    firsts = []
    for name in BUILTIN:
        with open(SPACES_DIR / f"{name}.toml", "rb") as f:
            space = tomllib.load(f)
        epochs = space["search"]["epochs"]
        frac = space["recipe"].get("warmup_frac", OptimConfig.warmup_frac)
        firsts.append(f"{default_warmup_epochs(epochs, frac) + 1} of {epochs} ({name})")
    where = "epoch " + ", ".join(firsts)
    evidence = DEFAULT_EVIDENCE.replace("%", "%%")  # argparse %-formats help text
    rule = describe_default().replace("%", "%%")
    pruner = f"default: {DEFAULT_PRUNER}; {rule}: it may first prune at {where}; {evidence}"
    warmup = (
        "epochs every trial runs before it may be pruned (default: until its learning rate "
        f"peaks, so the first prunable epoch is {where})"
    )
    return pruner, warmup


def parse_fixed(assignments: list[str]) -> dict[str, Any]:
    try:
        fixed = parse_assignments(assignments)
    except ConfigError as e:
        raise UsageError(str(e)) from None
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
        "checkpoint_every": args.checkpoint_every,
    }


def check_config(space: SearchSpace, base: dict[str, Any], fixed: dict[str, Any]) -> TrainConfig:
    """Fail before any storage is touched if the fixed values cannot make a valid config."""
    from wrn.config import ConfigError, TrainConfig

    try:
        cfg = TrainConfig.from_flat({**base, **fixed})
        for spec in space.searched(fixed):
            # every end of every range must also give a valid config with the fixed values
            for value in spec.choices or (spec.low, spec.high):
                TrainConfig.from_flat({**base, spec.name: value, **fixed})
    except ConfigError as e:
        raise UsageError(f"--set: {e}") from None
    return cfg


def make_pruner(args: Any, epochs: int, warmup_frac: float) -> optuna.pruners.BasePruner:
    from study.pruning import build_pruner

    try:
        return build_pruner(
            args.pruner,
            epochs=epochs,
            warmup_frac=warmup_frac,
            startup_trials=args.pruner_startup_trials,
            warmup_epochs=args.pruner_warmup_epochs,
        )
    except ValueError as e:
        raise UsageError(f"--pruner: {e}") from None


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar keeps parallel workers from sampling the same point
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def sampler_seed(seed: int, pinned: int | None) -> int:
    """This process's sampler seed: ``--sampler-seed`` if given, else ``--seed`` mixed with a
    fresh random salt, so that processes started together (workers, machines) draw different
    points; it is recorded on every trial, so a stream can be replayed."""
    if pinned is not None:
        return pinned
    inherited = os.environ.get(SAMPLER_SEED_ENV)
    worker = int(os.environ.get(WORKER_ENV, "0"))
    if inherited is not None:  # a --workers child: the parent's seed, offset per worker
        return (int(inherited) + 10_007 * worker) % SEED_LIMIT
    return (seed * 1_000_003 + secrets.randbelow(SEED_LIMIT)) % SEED_LIMIT


@dataclass(frozen=True)
class StudyOptions:
    """What opening or resuming a search study takes, from the command line."""

    storage: str
    name: str
    settings: SearchSettings
    sampler: str
    sampler_seed: int
    heartbeat: int


def refuse_changed(opts: StudyOptions) -> set[str]:
    """The storage's study names, after refusing to resume ``opts.name`` with other pinned
    settings; reads through a read-only connection, so a refused storage stays byte-identical."""
    path = sqlite_path(opts.storage)
    if path is not None and not path.exists():
        return set()
    storage = open_storage(opts.storage, create=False, read_only=path is not None)
    studies = {s.study_name: s for s in storage.get_all_studies()}
    if opts.name in studies:
        recorded = studies[opts.name].user_attrs.get(StudyAttrs.SETTINGS, {})
        changed = opts.settings.changed_from(recorded)
        if changed:
            raise UsageError(
                f"study {opts.name!r} was run with {changed[0]}; resume it with the same "
                "settings or start a new one with --study-name"
            )
    if hasattr(storage, "engine"):  # let go of the read-only connection before writing
        storage.engine.dispose()
    return set(studies)


def open_study(opts: StudyOptions, pruner: optuna.pruners.BasePruner) -> tuple[Any, Any]:
    """The study (created, or resumed with the same pinned settings) and its storage."""
    existing = refuse_changed(opts)
    storage = open_storage(opts.storage, heartbeat_interval=opts.heartbeat)
    study = optuna.create_study(
        storage=storage,
        study_name=opts.name,
        direction="maximize",
        sampler=make_sampler(opts.sampler, opts.sampler_seed),
        pruner=pruner,
        load_if_exists=True,
    )
    if opts.name not in existing:
        mark_study(study, opts.settings)
    return study, storage


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.checkpoint_dir is None:
        args.checkpoint_dir = str(default_checkpoint_dir(args.storage))
    # failures and progress are reported by this module, in one line each
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(args.space)
    name = args.study_name or space.name
    fixed = parse_fixed(args.assignments)
    epochs = args.epochs or space.search_epochs
    base = base_values(space, args, epochs)
    cfg = check_config(space, base, fixed)
    pruner = make_pruner(args, epochs, cfg.optim.warmup_frac)
    # torch only now: --help and bad flags answer without it
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    from study.dashboard import artifact_store, default_artifact_dir, write_study_note
    from wrn.data import load_splits

    # loading the data before opening storage: a bad data directory changes nothing recorded
    splits = load_splits(cfg.data, cfg.model.num_classes, cfg.run.seed)
    worker = int(os.environ.get(WORKER_ENV, "0"))
    # the artifact folder is checked with the other input, before the storage is touched
    store = artifact_store(args.artifact_dir or default_artifact_dir(args.storage))
    settings = SearchSettings(
        space=space,
        fixed=fixed,
        epochs=epochs,
        recipe_epochs=space.recipe["epochs"],
        dataset=args.dataset,
        val_size=args.val_size,
        seed=args.seed,
        pruner=args.pruner,
        sampler=args.sampler,
    )
    seed = sampler_seed(args.seed, args.sampler_seed)
    opts = StudyOptions(args.storage, name, settings, args.sampler, seed, args.heartbeat)
    study, storage = open_study(opts, pruner)
    if worker == 0:
        record_command(study, "study.run", argv)  # for the note's suggested commands
        write_study_note(study, args.storage)  # the dashboard's note: space, budget, best, next
    run_args = (space, base, fixed, splits, store)
    # bars from several processes garble a terminal: with --workers, plain lines only
    progress = Progress(quiet=args.quiet, tty=False if worker or args.workers > 1 else None)
    try:
        return search(study, storage, args, argv, progress, worker, seed, epochs, run_args)
    finally:
        progress.close()


def search(
    study: optuna.Study,
    storage: Any,
    args: Any,
    argv: list[str],
    progress: Progress,
    worker: int,
    seed: int,
    epochs: int,
    run_args: tuple[Any, ...],
) -> int:
    """Show the study's state, then run its remaining trials here or in worker processes."""
    from study.lifecycle import recover_dead_trials

    recovered = recover_dead_trials(study, storage)
    if recovered:
        progress.message(f"trials {', '.join(map(str, recovered))}: worker gone, queued to resume")
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in FINISHED for t in trials)
    best = best_trial(trials)  # read from the storage: a resumed study shows its best
    best_value = None if best is None else float(best.value)
    remaining = args.trials - finished
    if worker == 0:
        progress.study_start(
            study.study_name, total=args.trials, finished=finished, best=best_value, epochs=epochs
        )
        progress.message(
            f"storage {redact(args.storage)}: running {max(remaining, 0)} trial(s)"
            + (f" with {args.workers} workers" if args.workers > 1 else "")
            + f", sampler seed {seed}"
        )
    else:
        progress.best = best_value  # each worker's lines show the study's best too
    gc.freeze()  # start-up objects stay put: the collector skips them in every trial after
    if remaining > 0 and args.workers > 1:
        from study.lifecycle.workers import run_workers

        env = {SAMPLER_SEED_ENV: str(seed)}
        code = run_workers(["-m", "study.run", *argv], args.workers, args.device, WORKER_ENV, env)
        print_summary(study)
        return code
    if remaining > 0:
        from study.lifecycle.search import optimize

        optimize(study, storage, args, *run_args, seed, progress=progress)
    if worker == 0:
        print_summary(study)
    return 0


def print_summary(study: optuna.Study) -> None:
    counts = tally(study.get_trials(deepcopy=False))
    # an interrupted attempt (queued to resume) or one a full study never ran is no failure
    print(f"study {study.study_name!r}: {counts.describe()}")
    best = counts.best
    if best is not None:
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()
        )
        print(f"best: trial {best.number}, val_acc {best.value:.4f} ({params})")


if __name__ == "__main__":
    run_command("python -m study.run", main)
