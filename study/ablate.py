"""``python -m study.ablate``: switch each regulariser off in turn, K seeds each, and measure it.

python -m study.ablate --study-name light                   # from the best trial, 3 seeds
python -m study.ablate --study-name light --base recipe     # from the recipe (plus --set values)
python -m study.ablate --study-name light --path            # and the path recipe -> best

From the base configuration, one variant per factor of the space's ``[ablation]`` table is
trained with that factor at its "off" value, plus the base itself, each with K seeds, on the
study's validation split. With ``--path``, the ablation path of Fawcett & Hoos (2016) from the
recipe to the best configuration: at each step the one remaining parameter whose change gains
most is changed. Every run is a trial of the study ``NAME-ablation`` in the same storage, tagged
with its variant and seed; rerunning the command runs only the (variant, seed) pairs missing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

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
from study.metadata import code_version, package_versions
from study.progress import Progress
from study.records import (
    StudyAttrs,
    StudyKind,
    best_trial,
    record_command,
    require_study,
)
from study.records import TrialAttrs as A
from study.storage import default_checkpoint_dir, open_storage, redact


def build_parser() -> Parser:
    p = Parser(
        prog="python -m study.ablate",
        description=__doc__.splitlines()[0],
        examples=[line for line in __doc__.splitlines()[2:5] if line.startswith("python")],
    )
    p.add_argument("--study-name", required=True, help="the search study to ablate")
    p.add_argument(
        "--base",
        choices=("best", "recipe"),
        default="best",
        help="best: the study's best trial; recipe: the space's recipe with the study's --set "
        "values",
    )
    p.add_argument(
        "--seeds",
        type=int_at_least(1),
        default=3,
        help="training runs per variant, seeds offset from the study's seed",
    )
    p.add_argument("--epochs", type=int_at_least(1), help="default: the study's epochs per trial")
    p.add_argument(
        "--path",
        action="store_true",
        help="also the ablation path from the recipe to the best configuration",
    )
    add_retrain_flags(p)
    add_checkpoint_flags(p)
    add_artifact_flag(p)
    add_output_flags(p)
    return p


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return best_trial(t for t in trials if A.CONFIG in t.user_attrs)


def _source_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    require_study(storage, name)
    source = optuna.load_study(study_name=name, storage=storage)
    if source.user_attrs.get(StudyAttrs.KIND) != StudyKind.SEARCH or not isinstance(
        source.user_attrs.get("settings"), dict
    ):
        raise UsageError(f"study {name!r} is not a search study made by python -m study.run")
    return source


def _check_resumable(recorded: dict[str, Any], args: Any, epochs: int, dataset: str) -> str:
    """Refuse to mix runs of another base, length or dataset into an existing ablation.

    Returns the hint for starting over, for messages.
    """
    name = f"{args.study_name}-ablation"
    if recorded.get("kind") != "ablation" or recorded.get("source_study") != args.study_name:
        raise UsageError(f"study {name!r} exists but is not an ablation of {args.study_name!r}")
    restart = (
        f"or delete it to start over: optuna delete-study --study-name {name} "
        f"--storage {redact(args.storage)}"
    )
    for key, flag, value in (
        ("base", "--base", args.base),
        ("epochs", "--epochs", epochs),
        ("dataset", "--dataset", dataset),
    ):
        if recorded.get(key, value) != value:
            raise UsageError(
                f"{name!r} was run with {flag} {recorded[key]}; resume it with {flag} "
                f"{recorded[key]}, {restart}"
            )
    return restart


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    progress = Progress(quiet=args.quiet)
    try:
        return ablate(args, argv, progress)
    finally:
        progress.close()


def ablate(args: Any, argv: list[str], progress: Progress) -> int:
    """The command's work, shown on ``progress``; returns the exit status."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines instead
    storage = open_storage(args.storage, create=False, heartbeat_interval=args.heartbeat)
    from study.ablation.plan import (
        config_diff,
        make_config,
        param_distributions,
        plan_variants,
    )

    name = args.study_name
    source = _source_study(storage, name)
    settings = source.user_attrs["settings"]
    space = settings["space"]
    fixed = settings.get("fixed", {})
    epochs = args.epochs or fixed.get("epochs") or settings["epochs"]
    dataset = args.dataset or fixed.get("dataset") or settings["dataset"]
    run_values = {
        "epochs": epochs,
        "dataset": dataset,
        "data_dir": args.data_dir,
        "device": args.device,
        "eval_split": "val",  # an ablation is part of the search: never the test set
        "checkpoint_every": args.checkpoint_every,
    }
    recipe = make_config(
        {
            **space["recipe"],
            "val_size": settings["val_size"],
            "seed": settings["seed"],
            **fixed,
            **run_values,
        },
        "the recipe with the study's --set values",
    )
    best = _best_trial(source)
    if best is None and (args.base == "best" or args.path):
        need = "--base best" if args.base == "best" else "--path"
        raise UsageError(
            f"study {name!r} has no complete trial yet, which {need} needs "
            "(--base recipe ablates the recipe)"
        )
    best_cfg = (
        None
        if best is None
        else make_config({**best.user_attrs["config"], **run_values}, f"trial {best.number}")
    )

    ablation_name = f"{name}-ablation"
    existing = {s.study_name: s for s in storage.get_all_studies()}
    recorded = existing[ablation_name].user_attrs if ablation_name in existing else {}
    base_trial = None if args.base == "recipe" or best is None else best.number
    base_cfg = recipe if args.base == "recipe" else best_cfg
    if recorded:
        restart = _check_resumable(recorded, args, epochs, dataset)
        # a resumed ablation keeps its base, even if the study has found a better trial since
        base_cfg = make_config({**recorded["base_config"], **run_values}, "the recorded base")
        base_trial = recorded.get("base_trial")
        if args.base == "best" and best is not None and best.number != base_trial:
            progress.message(
                f"note: {name!r}'s best is now trial {best.number}; this ablation keeps its base, "
                f"trial {base_trial} ({restart.removeprefix('or ')})"
            )
        if args.path and recorded.get("path_target"):
            best_cfg = make_config({**recorded["path_target"], **run_values}, "the path target")
    assert base_cfg is not None
    variants, skipped = plan_variants(base_cfg, space.get("ablation", {}))

    path_keys: list[str] = []
    if args.path:
        assert best_cfg is not None
        order = list(space.get("search", {}).get("params", {}))
        path_keys = config_diff(recipe.to_flat(), best_cfg.to_flat(), order)
        if not path_keys:
            raise UsageError(f"--path: the best trial of {name!r} has the recipe's configuration")
    ends = [recipe] if best_cfg is None else [recipe, best_cfg]
    distributions = param_distributions(base_cfg, variants, ends, path_keys)

    import torch  # after the input is checked: --help and bad flags answer without it

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    from pathlib import Path

    from study import dashboard
    from study.ablation.effects import (
        BASE,
        PATH_PREFIX,
        PATH_START,
        compute_effects,
        effects_figure,
        effects_markdown,
        effects_table,
    )
    from study.ablation.runner import Runner, run_key, run_path
    from study.lifecycle import Lifecycle, completed_runs, splits_loader

    # the data and the artifact folder last among the checks, before anything is written
    splits_for = splits_loader(settings["seed"])
    splits_for(base_cfg)
    seeds = [settings["seed"] + k for k in range(args.seeds)]
    store = dashboard.artifact_store(
        args.artifact_dir or dashboard.default_artifact_dir(args.storage)
    )
    checkpoints = args.checkpoint_dir or default_checkpoint_dir(args.storage)

    ablation = optuna.create_study(
        storage=storage, study_name=ablation_name, direction="maximize", load_if_exists=True
    )
    attrs: dict[str, Any] = {
        "kind": StudyKind.ABLATION.value,
        "source_study": name,
        "base": args.base,
        "base_trial": base_trial,
        "base_config": base_cfg.to_flat(),
        "epochs": epochs,
        "dataset": dataset,
        "val_size": base_cfg.data.val_size,
        "factors": dict(space.get("ablation", {})),
        "skipped": skipped,
        "seeds": sorted(set(seeds) | set(recorded.get("seeds", []))),
        "code_version": code_version(),
        "packages": package_versions(),
    }
    if args.path:
        assert best_cfg is not None
        attrs["path_target"] = best_cfg.to_flat()
        attrs["path_target_trial"] = recorded.get(
            "path_target_trial", None if best is None else best.number
        )
    for key, value in attrs.items():
        ablation.set_user_attr(key, value)
    record_command(ablation, "study.ablate", argv)  # the note's resume command repeats it

    def refresh_dashboard() -> None:
        effects = compute_effects(ablation.get_trials(deepcopy=False))
        dashboard.write_study_note(ablation, args.storage, effects_markdown(effects))
        if any(e.diff is not None for e in effects):
            dashboard.save_figure(
                ablation, effects_figure(effects, f"{ablation_name}: effects"), "effects"
            )

    life = Lifecycle(
        checkpoint_dir=Path(checkpoints),
        keep_checkpoints=args.keep_checkpoints,
        artifact_store=store,
        progress=progress,
    )
    runner = Runner(ablation, storage, splits_for, seeds, distributions, life, refresh_dashboard)
    described = (
        "the recipe" if args.base == "recipe" else f"trial {base_trial} (the best when started)"
    )
    start_variant = BASE if args.base == "recipe" else PATH_START
    n = len(path_keys)
    # the path's configurations, at most: its start (unless it is the base) and every step's
    path_configs = n * (n + 1) // 2 + (start_variant != BASE) if args.path else 0
    planned = {run_key(v.name, s) for v in variants for s in seeds}
    done = [
        t.value
        for key, t in completed_runs(ablation.get_trials(deepcopy=False)).items()
        if key in planned
        or (args.path and key.startswith(PATH_PREFIX) and t.user_attrs.get(A.SEED) in seeds)
    ]
    progress.study_start(
        ablation_name,
        total=(len(variants) + path_configs) * len(seeds),
        finished=len(done),
        best=max(done, default=None),  # read from the storage: a resumed ablation shows it
        epochs=epochs,
        unit="run",
    )
    missing = runner.missing(variants)
    progress.message(
        f"ablating {name!r} from {described}: {len(variants)} variants x {len(seeds)} seed(s), "
        f"{epochs} epoch(s) each; {len(variants) * len(seeds) - missing} done, running {missing}"
    )
    if skipped:
        progress.message(f"not ablated, already off in the base: {', '.join(skipped)}")
    runner.evaluate_many(variants)

    if args.path:
        assert best_cfg is not None
        progress.message(
            f"ablation path over {n} parameter(s) ({', '.join(path_keys)}): up to "
            f"{path_configs} configurations x {len(seeds)} seed(s)"
        )
        path = run_path(runner, recipe, best_cfg, path_keys, start_variant)
        ablation.set_user_attr("path", path)
        print("path: " + " -> ".join(f"{s['param'] or 'recipe'} {s['mean']:.4f}" for s in path))

    refresh_dashboard()
    effects = compute_effects(ablation.get_trials(deepcopy=False))
    print(f"{ablation_name!r} in {redact(args.storage)} ({runner.ran} run(s) trained now):")
    print(effects_table(effects))
    return 0


if __name__ == "__main__":
    run_command("python -m study.ablate", main)
