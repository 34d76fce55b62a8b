"""``python -m study.run``: run (or finish) an Optuna study over a search space.

python -m study.run --trials 50                     # WRN-28-10 space on CIFAR-100
python -m study.run --space light --trials 50       # the light (WRN-16-8) space
python -m study.run --dataset synthetic --set depth=10 --set width=1 --trials 4 --epochs 2
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import optuna
import torch

from search_spaces import SearchSpace, list_spaces, load_space
from study.cli import Parser, UsageError, int_at_least, positive_float, run_command
from study.metadata import code_version, package_versions
from study.objective import Objective, searched_params
from study.progress import Progress
from study.storage import DEFAULT_STORAGE, open_storage, redact
from wrn.config import ConfigError, TrainConfig, parse_assignment
from wrn.data import load_splits

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


def open_study(args: Any, name: str, settings: dict, epochs: int) -> optuna.Study:
    storage = open_storage(args.storage)
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
        sampler=make_sampler(args.sampler, args.seed + done),
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
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines instead
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
    if args.val_size >= len(splits.train) + len(splits.eval):
        raise UsageError(f"--val-size {args.val_size}: larger than the training set")

    study = open_study(args, name, study_settings(space, fixed, args, epochs), epochs)
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = args.trials - finished
    print(
        f"study {name!r} in {redact(args.storage)}: {finished} of {args.trials} trials "
        f"finished, running {max(remaining, 0)}"
    )
    if remaining > 0:
        progress = Progress()
        objective = Objective(space, base, fixed, splits=splits, progress=progress)

        def report_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            progress.trial_end(trial.number, trial.state.name, trial.value)

        study.optimize(
            objective,
            n_trials=remaining,
            timeout=args.timeout,
            callbacks=[
                report_end,
                # with several processes on one study, stop at the study's total, not each's
                optuna.study.MaxTrialsCallback(args.trials, states=FINISHED),
            ],
            gc_after_trial=True,
        )
    print_summary(study)
    return 0


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
