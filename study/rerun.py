"""``python -m study.rerun``: retrain a study's best (or chosen) trial in full and test it.

The config is trained on the whole training set for the recipe's full length, scored on the
test set once per epoch, and recorded in the study ``NAME-rerun`` of the same storage, one trial
per seed. The source study gets a ``rerun`` summary (test accuracy per seed, mean and std).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import torch

from study.cli import Parser, UsageError, add_retrain_flags, int_at_least, run_command
from study.dashboard import (
    artifact_store,
    default_artifact_dir,
    upload_checkpoint,
    upload_learning_curve,
)
from study.metadata import code_version, device_name, package_versions
from study.objective import record_result, report_epoch
from study.progress import Progress
from study.storage import open_storage, study_names
from wrn.config import ConfigError, TrainConfig
from wrn.data import load_splits
from wrn.train import EpochStats, resolve_device, train


def build_parser() -> Parser:
    p = Parser(prog="python -m study.rerun", description=__doc__.splitlines()[0])
    p.add_argument("--study-name", required=True)
    p.add_argument("--trial", type=int_at_least(0), help="trial number (default: the best)")
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
    p.add_argument(
        "--checkpoint-dir",
        default="studies/checkpoints",
        help="final checkpoints; an interrupted rerun resumes from them",
    )
    p.add_argument(
        "--artifact-dir",
        help="learning curves and checkpoints for optuna-dashboard "
        "(default: artifacts/ beside a SQLite storage)",
    )
    return p


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    if number is None:
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise UsageError(f"study {study.study_name!r} has no complete trial to rerun")
        return max(complete, key=lambda t: t.value)
    match = [t for t in trials if t.number == number]
    if not match:
        raise UsageError(
            f"--trial {number}: study {study.study_name!r} has trials 0..{len(trials) - 1}"
        )
    if "config" not in match[0].user_attrs:
        raise UsageError(f"--trial {number}: trial has no recorded config")
    return match[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines instead
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    storage = open_storage(args.storage, create=False)
    names = study_names(storage)
    if args.study_name not in names:
        raise UsageError(
            f"no study {args.study_name!r} in the storage (studies: {', '.join(names) or 'none'})"
        )
    study = optuna.load_study(study_name=args.study_name, storage=storage)
    source = pick_trial(study, args.trial)
    settings = study.user_attrs.get("settings", {})
    epochs = args.epochs or settings.get("recipe_epochs") or source.user_attrs["config"]["epochs"]
    try:
        base = TrainConfig.from_flat(source.user_attrs["config"]).replace(
            epochs=epochs,
            eval_split="test",  # the only place the test set is used
            dataset=args.dataset or source.user_attrs["config"]["dataset"],
            data_dir=args.data_dir,
            device=args.device,
        )
    except ConfigError as e:
        raise UsageError(f"trial {source.number}'s recorded config is not usable: {e}") from None
    splits = load_splits(base.data, base.model.num_classes, base.run.seed)
    store = artifact_store(args.artifact_dir or default_artifact_dir(args.storage))

    rerun = optuna.create_study(
        storage=storage,
        study_name=f"{args.study_name}-rerun",
        direction="maximize",
        load_if_exists=True,
    )
    rerun.set_user_attr("kind", "rerun")
    rerun.set_user_attr("source_study", args.study_name)
    rerun.set_user_attr("code_version", code_version())
    rerun.set_user_attr("packages", package_versions())

    print(
        f"rerunning trial {source.number} of {args.study_name!r} "
        f"(val_acc {source.value}) for {epochs} epochs, {args.seeds} seed(s)"
    )
    progress = Progress()
    accuracies: list[float] = []
    runs: list[dict[str, Any]] = []
    for k in range(args.seeds):
        cfg = base.replace(seed=base.run.seed + k)
        checkpoint = Path(args.checkpoint_dir) / (
            f"{args.study_name}-trial{source.number}-seed{cfg.run.seed}-e{epochs}.pt"
        )
        acc = rerun_one(rerun, source, cfg, splits, checkpoint, progress, store)
        accuracies.append(acc)
        runs.append({"seed": cfg.run.seed, "test_acc": acc, "checkpoint": str(checkpoint)})
        print(f"seed {cfg.run.seed}: test_acc {acc:.4f}  checkpoint {checkpoint}")

    mean = statistics.fmean(accuracies)
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    summary = {
        "trial": source.number,
        "epochs": epochs,
        "runs": runs,
        "test_acc_mean": mean,
        "test_acc_std": std,
    }
    study.set_user_attr(f"rerun_trial{source.number}_e{epochs}", summary)
    print(f"test accuracy: {mean:.4f} ± {std:.4f} over {len(accuracies)} seed(s)")
    return 0


def rerun_one(
    rerun: optuna.Study,
    source: optuna.trial.FrozenTrial,
    cfg: TrainConfig,
    splits: Any,
    checkpoint: Path,
    progress: Progress,
    store: Any,
) -> float:
    """Train one seed as a trial of the rerun study (its params are the source trial's)."""
    rerun.enqueue_trial(source.params, skip_if_exists=False)
    trial = rerun.ask(fixed_distributions=source.distributions)
    trial.set_user_attr("source_trial", source.number)
    trial.set_user_attr("seed", cfg.run.seed)
    trial.set_user_attr("config", cfg.to_flat())
    trial.set_user_attr("checkpoint", str(checkpoint))
    trial.set_user_attr("device_name", device_name(str(resolve_device(cfg.run.device))))

    reported: set[int] = set()

    def on_epoch_end(stats: EpochStats) -> None:
        report_epoch(trial, stats)
        reported.add(stats.epoch)
        progress.epoch(trial.number, stats.epoch, cfg.run.epochs, stats.eval_acc, stats.seconds)

    try:
        result = train(cfg, on_epoch_end=on_epoch_end, splits=splits, checkpoint_path=checkpoint)
    except BaseException:
        rerun.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    for stats in result.history:  # epochs restored from a checkpoint were not reported yet
        if stats.epoch not in reported:
            report_epoch(trial, stats)
    record_result(trial, result)
    trial.set_user_attr("test_acc", result.final_acc)
    upload_learning_curve(trial, store, result.history, eval_name="test")
    upload_checkpoint(trial, store, checkpoint)
    rerun.tell(trial, result.final_acc)
    return result.final_acc


if __name__ == "__main__":
    run_command("python -m study.rerun", main)
