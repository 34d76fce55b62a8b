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

import sys
from collections.abc import Sequence
from typing import Any

import optuna

from study.cli import (
    Parser,
    add_artifact_flag,
    add_checkpoint_flags,
    add_output_flags,
    add_retrain_flags,
    int_at_least,
    run_command,
)
from study.errors import UsageError
from study.records import (
    RerunRun,
    RerunSettings,
    RerunSummary,
    SearchSettings,
    StudyKind,
    derived_name,
    mark_study,
    record_command,
    recorded_epochs,
    require_study,
    rerun_run_key,
    top_trials,
)
from study.records import TrialAttrs as A
from study.storage import default_checkpoint_dir, open_storage


def build_parser() -> Parser:
    p = Parser(
        prog="python -m study.rerun",
        description=__doc__.splitlines()[0],
        examples=[line for line in __doc__.splitlines()[2:5] if line.startswith("python")],
    )
    p.add_argument("--study-name", required=True, help="the search study whose trials to retrain")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int_at_least(0), help="trial number (default: the best)")
    which.add_argument("--top", type=int_at_least(1), metavar="K", help="the K best trials")
    p.add_argument(
        "--epochs",
        type=int_at_least(1),
        help="default: the recipe's full length (200 for wrn28_10, 85 for light)",
    )
    p.add_argument(
        "--seeds",
        type=int_at_least(1),
        default=1,
        help="independent training runs, seeds 0..K-1 offset by the study's seed",
    )
    add_retrain_flags(p)
    add_checkpoint_flags(p)
    add_artifact_flag(p)
    add_output_flags(p)
    return p


def pick_trials(
    study: optuna.Study, number: int | None, top: int | None
) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials(deepcopy=False)
    if number is None:
        chosen = top_trials(trials, top or 1)
        if not chosen:
            raise UsageError(f"study {study.study_name!r} has no complete trial to rerun")
        return chosen
    match = [t for t in trials if t.number == number]
    if not match:
        raise UsageError(
            f"--trial {number}: study {study.study_name!r} has trials 0..{len(trials) - 1}"
        )
    if A.CONFIG not in match[0].user_attrs:
        raise UsageError(f"--trial {number}: trial has no recorded config")
    return match


def base_config(source: optuna.trial.FrozenTrial, epochs: int, args: Any) -> Any:
    from wrn.config import ConfigError, TrainConfig

    recorded = source.user_attrs[A.CONFIG]
    try:
        return TrainConfig.from_flat(recorded).replace(
            epochs=epochs,
            eval_split="test",  # the only place the test set is used
            dataset=args.dataset or recorded["dataset"],
            data_dir=args.data_dir,
            device=args.device,
            checkpoint_every=args.checkpoint_every,
        )
    except ConfigError as e:
        raise UsageError(f"trial {source.number}'s recorded config is not usable: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines instead
    storage = open_storage(args.storage, create=False, heartbeat_interval=args.heartbeat)
    require_study(storage, args.study_name)
    study = optuna.load_study(study_name=args.study_name, storage=storage)
    sources = pick_trials(study, args.trial, args.top)
    settings = SearchSettings.of(study.user_attrs)
    recipe_epochs = None if settings is None else settings.recipe_epochs
    epochs = args.epochs or recipe_epochs or recorded_epochs(sources[0])
    bases = {s.number: base_config(s, epochs, args) for s in sources}
    import torch  # after the input is checked: --help and bad flags answer without it

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    from pathlib import Path

    from study.dashboard import artifact_store, default_artifact_dir, name_metric
    from study.lifecycle import Lifecycle, PlannedRun, run_planned, splits_loader
    from study.progress import Progress

    # the study's seed: what the search split with (rerun seeds only change the training)
    splits_for = splits_loader(next(iter(bases.values())).run.seed)
    for cfg in bases.values():  # a bad data directory fails here, before anything is written
        splits_for(cfg)
    store = artifact_store(args.artifact_dir or default_artifact_dir(args.storage))
    checkpoints = args.checkpoint_dir or default_checkpoint_dir(args.storage)

    rerun = optuna.create_study(
        storage=storage,
        study_name=derived_name(args.study_name, StudyKind.RERUN),
        direction="maximize",
        load_if_exists=True,
    )
    mark_study(rerun, RerunSettings(args.study_name))
    name_metric(rerun, StudyKind.RERUN.value)  # "test_acc" in optuna-dashboard
    record_command(rerun, "study.rerun", argv)

    runs: list[PlannedRun] = []
    for source in sources:
        base = bases[source.number]
        for k in range(args.seeds):
            seed = base.run.seed + k
            runs.append(
                PlannedRun(
                    key=rerun_run_key(source.number, seed, epochs),
                    cfg=base.replace(seed=seed),
                    params=dict(source.params),
                    attrs={A.SOURCE_TRIAL: source.number, A.SEED: seed},
                    value_attr=A.TEST_ACC,
                )
            )
    distributions: dict[str, Any] = {}
    for source in sources:
        distributions.update(source.distributions)
    from study.lifecycle import completed_runs

    progress = Progress(quiet=args.quiet)
    done = completed_runs(rerun.get_trials(deepcopy=False))
    finished = [done[r.key].value for r in runs if r.key in done]
    progress.study_start(
        rerun.study_name,
        total=len(runs),
        finished=len(finished),
        best=max(finished, default=None),  # read from the storage: a resumed rerun shows it
        epochs=epochs,
        unit="run",
        metric="test_acc",
    )
    shown = ", ".join(f"{s.number} (val_acc {s.value:.4f})" for s in sources)
    progress.message(
        f"rerunning trial(s) {shown} of {args.study_name!r} for {epochs} epochs, "
        f"{args.seeds} seed(s) each"
    )
    life = Lifecycle(
        checkpoint_dir=Path(checkpoints),
        keep_checkpoints=True,  # the final weights are what a rerun is for
        artifact_store=store,
        eval_name="test",
        progress=progress,
    )

    def saved(trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            progress.message(
                f"run {trial.number} (trial {trial.user_attrs[A.SOURCE_TRIAL]} seed "
                f"{trial.user_attrs[A.SEED]}): checkpoint {trial.user_attrs.get(A.CHECKPOINT)}"
            )

    try:
        run_planned(rerun, storage, runs, distributions, splits_for, life, after_trial=saved)
    finally:
        progress.close()
    recorded = completed_runs(rerun.get_trials(deepcopy=False))
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
        summary.record(study)
        print(
            f"trial {source.number}: test accuracy: {summary.mean:.4f} ± {summary.std:.4f} "
            f"over {len(mine)} seed(s)"
        )
    return 0


if __name__ == "__main__":
    run_command("python -m study.rerun", main)
