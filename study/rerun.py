"""``python -m study.rerun``: retrain a study's best (or chosen, or K best) trials in full, tested.

python -m study.rerun --study-name light                      # the best trial, 1 seed
python -m study.rerun --study-name light --top 3 --seeds 3    # the 3 best, 3 seeds each
python -m study.rerun --study-name light --trial 12 --epochs 50

Each config is trained on the whole training set for the recipe's full length, scored on the
test set once per epoch, and recorded in the study ``NAME-rerun`` of the same storage, one trial
per (trial, seed). The source study gets a ``rerun`` summary per trial (test accuracy per seed,
mean and std). A killed or interrupted rerun resumes where it stopped, and several rerun
commands on one study share the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna

from study.cli import (
    Parser,
    add_retrain_flags,
    check_study_name,
    command_parser,
    epochs_type,
    int_at_least,
    run_command,
    run_flags,
    study_name_type,
)
from study.errors import UsageError
from study.jobs import RerunJob, RetrainJob
from study.progress import Progress
from study.records import (
    RerunRun,
    RerunSettings,
    RerunSummary,
    SearchSettings,
    StudyKind,
    derived_name,
    recorded_config,
    rerun_run_key,
    seed_result,
    top_trials,
)
from study.records import TrialAttrs as A
from study.retrain import Retrain
from study.sqlite_file import checkpoint_wal

if TYPE_CHECKING:
    from study.lifecycle import PlannedRun
    from wrn.config import TrainConfig


def build_parser() -> Parser:
    p = command_parser("study.rerun", __doc__)
    p.add_argument(
        "--study-name",
        type=study_name_type,
        required=True,
        help="the search study whose trials to retrain",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int_at_least(0), help="trial number (default: the best)")
    which.add_argument("--top", type=int_at_least(1), metavar="K", help="the K best trials")
    p.add_argument(
        "--epochs",
        type=epochs_type,
        help="default: the recipe's full length (200 for wrn28_10, 85 for light)",
    )
    p.add_argument(
        "--seeds",
        type=int_at_least(1),
        default=1,
        help="independent training runs, seeds 0..K-1 offset by the study's seed",
    )
    add_retrain_flags(p)
    return p


def rerun_job(args: argparse.Namespace, argv: Sequence[str]) -> RerunJob:
    check_study_name(args.study_name, derived_name(args.study_name, StudyKind.RERUN))
    retrain = RetrainJob(
        "study.rerun", run_flags(args), tuple(argv), args.study_name, args.epochs, args.seeds
    )
    return RerunJob(retrain, trial=args.trial, top=args.top or 1)


def pick_trials(
    study: optuna.Study, number: int | None, top: int
) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials(deepcopy=False)
    if number is None:
        chosen = top_trials(trials, top)
        if not chosen:
            raise UsageError(f"study {study.study_name!r} has no complete trial to rerun")
        return chosen
    match = [t for t in trials if t.number == number]
    if not match:
        raise UsageError(
            f"--trial {number}: study {study.study_name!r} has trials 0..{len(trials) - 1}"
        )
    if not recorded_config(match[0]):
        raise UsageError(f"--trial {number}: trial has no recorded config")
    return match


def base_config(source: optuna.trial.FrozenTrial, epochs: int, job: RerunJob) -> TrainConfig:
    from wrn.config import ConfigError, TrainConfig

    recorded = recorded_config(source)
    flags = job.retrain.flags
    try:
        return TrainConfig.from_flat(recorded).replace(
            **flags.execution(),
            epochs=epochs,
            eval_split="test",  # the only place the test set is used
            dataset=flags.dataset or recorded["dataset"],
        )
    except ConfigError as e:
        raise UsageError(f"trial {source.number}'s recorded config is not usable: {e}") from None


def planned_runs(
    sources: Sequence[optuna.trial.FrozenTrial], bases: dict[int, TrainConfig], job: RerunJob
) -> list[PlannedRun]:
    """One run per (trial, seed), seeds offset by the study's."""
    from study.lifecycle import PlannedRun

    runs = []
    for source in sources:
        base = bases[source.number]
        for k in range(job.retrain.seeds):
            seed = base.run.seed + k
            runs.append(
                PlannedRun(
                    key=rerun_run_key(source.number, seed, base.run.epochs),
                    cfg=base.replace(seed=seed),
                    params=dict(source.params),
                    attrs={A.SOURCE_TRIAL: source.number, A.SEED: seed},
                    value_attr=A.TEST_ACC,
                )
            )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    job = rerun_job(build_parser().parse_args(argv), argv)
    progress = Progress(quiet=job.retrain.flags.quiet)
    try:
        return rerun(job, progress)
    finally:
        progress.close()


def rerun(job: RerunJob, progress: Progress) -> int:
    """The command's work, shown on ``progress``; returns the exit status."""
    retrain = Retrain(job.retrain, StudyKind.RERUN, progress)
    job = dataclasses.replace(job, retrain=retrain.job)  # --data-dir as resolved there
    sources = pick_trials(retrain.source, job.trial, job.top)
    settings = SearchSettings.of(retrain.source.user_attrs)
    recipe_epochs = None if settings is None else settings.recipe_epochs
    epochs = job.retrain.epochs or recipe_epochs or int(recorded_config(sources[0])["epochs"])
    bases = {s.number: base_config(s, epochs, job) for s in sources}
    # the study's seed: what the search split with (rerun seeds only change the training)
    split_seed = next(iter(bases.values())).run.seed
    started = retrain.start(
        RerunSettings(job.retrain.study_name),
        split_seed,
        bases.values(),
        keep_checkpoints=True,  # the final weights are what a rerun is for
    )
    from study.lifecycle import completed_runs, run_planned

    runs = planned_runs(sources, bases, job)
    done = completed_runs(started.study.get_trials(deepcopy=False))
    finished = [done[r.key].value for r in runs if r.key in done]
    retrain.show_start(finished, len(runs), epochs, metric="test_acc")
    shown = ", ".join(f"{s.number} (val_acc {s.value:.4f})" for s in sources)
    progress.message(
        f"rerunning trial(s) {shown} of {job.retrain.study_name!r} for {epochs} epochs, "
        f"{job.retrain.seeds} seed(s) each"
    )

    def saved(trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            progress.message(
                f"run {trial.number} (trial {trial.user_attrs[A.SOURCE_TRIAL]} seed "
                f"{trial.user_attrs[A.SEED]}): checkpoint {trial.user_attrs.get(A.CHECKPOINT)}"
            )

    distributions: dict[str, Any] = {}
    for source in sources:
        distributions.update(source.distributions)
    run_planned(
        started.study,
        retrain.storage,
        runs,
        distributions,
        started.splits_for,
        started.life,
        after_trial=saved,
    )
    summarise(retrain.source, started.study, sources, runs, epochs)
    checkpoint_wal(retrain.storage)  # the .db file alone then holds the reruns
    return 0


def summarise(
    source_study: optuna.Study,
    study: optuna.Study,
    sources: Sequence[optuna.trial.FrozenTrial],
    runs: Sequence[PlannedRun],
    epochs: int,
) -> None:
    """Record each trial's rerun on the search study, and print its final-epoch test accuracy
    (mean ± std over seeds, never a maximum over epochs or seeds)."""
    from study.lifecycle import completed_runs

    recorded = completed_runs(study.get_trials(deepcopy=False))
    for source in sources:
        mine = [recorded[r.key] for r in runs if r.attrs[A.SOURCE_TRIAL] == source.number]
        summary = RerunSummary(
            source.number,
            epochs,
            tuple(
                RerunRun(t.user_attrs[A.SEED], float(t.value), t.user_attrs.get(A.CHECKPOINT))
                for t in mine
            ),
        )
        summary.record(source_study)
        accs = [r.test_acc for r in summary.runs]
        print(f"trial {source.number}: final-epoch test accuracy: {seed_result(accs)}")


if __name__ == "__main__":
    run_command("python -m study.rerun", main)
