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

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

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
from study.cli import Parser, UsageError, add_retrain_flags, int_at_least, run_command
from study.metadata import code_version, package_versions
from study.objective import record_result, record_setup, report_epoch
from study.progress import Progress
from study.storage import open_storage, redact, study_names
from wrn.config import ConfigError, TrainConfig, coerce, key_kind
from wrn.data import Splits, load_splits
from wrn.train import EpochStats, train

# keys that change how a run executes, not what it computes: never a difference between configs
EXECUTION_KEYS = ("device", "workers", "compile", "data_dir", "download", "pipeline")
# what the path compares: the configuration itself, not the run's seed or length
_NOT_PATH_KEYS = (*EXECUTION_KEYS, "seed", "epochs")


def build_parser() -> Parser:
    p = Parser(prog="python -m study.ablate", description=__doc__.splitlines()[0])
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
    p.add_argument(
        "--artifact-dir",
        help="where learning-curve artifacts go (default: artifacts/ beside a SQLite storage)",
    )
    return p


# -- planning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    config: TrainConfig  # the seed is set per run
    changed: dict[str, list[Any]] = field(default_factory=dict)  # key -> [from, to]


def config_diff(a: dict[str, Any], b: dict[str, Any], order: Sequence[str]) -> list[str]:
    """Keys whose values differ between two flat configs, in ``order`` first, then the rest."""
    keys = [k for k in a if k not in _NOT_PATH_KEYS and a[k] != b.get(k)]
    ranked = {k: i for i, k in enumerate(order)}
    return sorted(keys, key=lambda k: (ranked.get(k, len(ranked)), k))


def make_config(flat: dict[str, Any], what: str) -> TrainConfig:
    try:
        return TrainConfig.from_flat(flat)
    except ConfigError as e:
        raise UsageError(f"{what} is not a valid config: {e}") from None


def distribution_for(key: str, values: Sequence[Any]) -> BaseDistribution | None:
    """How the dashboard shows ``key`` as a trial parameter (None: only as a user attr)."""
    kind, choices = key_kind(key)
    if kind is bool:
        return CategoricalDistribution((False, True))
    if choices is not None:  # the full Literal, so every trial of the study shares the choices
        return CategoricalDistribution(choices)
    if kind is int:
        return IntDistribution(min(values), max(values))
    if kind is float:
        return FloatDistribution(min(values), max(values))
    return None


# -- running ------------------------------------------------------------------------------------


class Runner:
    """Trains (variant, seed) runs as trials of the ablation study, skipping those done."""

    def __init__(
        self,
        study: optuna.Study,
        splits: Splits,
        seeds: Sequence[int],
        distributions: dict[str, BaseDistribution],
        store: Any,
        progress: Progress,
        after_trial: Callable[[], None],
    ) -> None:
        self.study = study
        self.splits = splits
        self.seeds = list(seeds)
        self.distributions = distributions
        self.store = store
        self.progress = progress
        self.after_trial = after_trial
        self.done: dict[tuple[str, int], float] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if "variant" in t.user_attrs and t.value is not None:
                self.done[(t.user_attrs["variant"], t.user_attrs["seed"])] = t.value
        self.ran = 0

    def missing(self, variants: Sequence[Variant]) -> int:
        return sum((v.name, s) not in self.done for v in variants for s in self.seeds)

    def evaluate(self, variant: Variant) -> list[float]:
        """The variant's final val accuracy for every seed, training the missing ones."""
        values = []
        for seed in self.seeds:
            if (variant.name, seed) not in self.done:
                self.done[(variant.name, seed)] = self.run_one(variant, seed)
                self.ran += 1
                self.after_trial()
            values.append(self.done[(variant.name, seed)])
        return values

    def run_one(self, variant: Variant, seed: int) -> float:
        cfg = variant.config.replace(seed=seed)
        flat = cfg.to_flat()
        params = {k: flat[k] for k in self.distributions}
        self.study.enqueue_trial(
            params,
            user_attrs={"variant": variant.name, "seed": seed, "changed": variant.changed},
        )
        trial = self.study.ask(fixed_distributions=self.distributions)
        if trial.user_attrs.get("variant") != variant.name:
            # ask() hands out the oldest waiting trial: another process is using this study
            self.study.tell(trial, state=TrialState.FAIL)
            raise UsageError(f"{self.study.study_name}: another process is running this ablation")
        record_setup(trial, cfg)
        epoch_seconds: list[float] = []
        history: list[EpochStats] = []

        def on_epoch_end(stats: EpochStats) -> None:
            history.append(stats)
            epoch_seconds.append(stats.seconds)
            trial.set_user_attr("epoch_seconds", epoch_seconds)
            trial.set_user_attr("images_per_s", stats.images_per_s)
            report_epoch(trial, stats)
            self.progress.epoch(
                trial.number, stats.epoch, cfg.run.epochs, stats.eval_acc, stats.seconds
            )

        try:
            try:
                result = train(cfg, on_epoch_end=on_epoch_end, splits=self.splits)
                record_result(trial, result)
            finally:  # the curve so far, for a failed or interrupted run too
                dashboard.upload_learning_curve(trial, self.store, history)
        except BaseException:
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        self.study.tell(trial, result.final_acc)
        print(
            f"{variant.name} seed {seed}: val_acc {result.final_acc:.4f} "
            f"({sum(epoch_seconds):.1f} s, trial {trial.number})",
            flush=True,
        )
        return result.final_acc


def run_path(
    runner: Runner,
    start: TrainConfig,
    target: TrainConfig,
    keys: Sequence[str],
    start_variant: str,
) -> list[dict[str, Any]]:
    """Fawcett & Hoos's greedy ablation path from ``start`` to ``target``.

    At each step every remaining single-parameter change is evaluated (K seeds) and the one
    with the largest mean accuracy is kept; the last step therefore lands on ``target``.
    """
    current = start.to_flat()
    goal = target.to_flat()
    values = runner.evaluate(Variant(start_variant, start))
    path = [_step(0, None, None, None, values, start_variant, {})]
    remaining = list(keys)
    step = 1
    while remaining:
        candidates: dict[str, list[float]] = {}
        for key in remaining:
            flat = {**current, key: goal[key]}
            try:
                cfg = TrainConfig.from_flat(flat)
            except ConfigError:  # an invalid intermediate combination is not a candidate
                continue
            variant = Variant(f"{PATH_PREFIX}{step}-{key}", cfg, {key: [current[key], goal[key]]})
            candidates[key] = runner.evaluate(variant)
        if not candidates:
            raise UsageError(
                f"no single change of {', '.join(remaining)} from step {step - 1} of the path "
                "gives a valid config"
            )
        # the largest mean gain; ties keep the earlier key (the space's order)
        key = max(candidates, key=lambda k: statistics.fmean(candidates[k]))
        means = {k: statistics.fmean(v) for k, v in candidates.items()}
        path.append(
            _step(
                step,
                key,
                current[key],
                goal[key],
                candidates[key],
                f"{PATH_PREFIX}{step}-{key}",
                means,
            )
        )
        current[key] = goal[key]
        remaining.remove(key)
        step += 1
    return path


def _step(
    step: int,
    key: str | None,
    old: Any,
    new: Any,
    values: Sequence[float],
    variant: str,
    candidates: dict[str, float],
) -> dict[str, Any]:
    return {
        "step": step,
        "param": key,
        "from": old,
        "to": new,
        "variant": variant,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "candidates": candidates,
    }


# -- the command --------------------------------------------------------------------------------


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and "config" in t.user_attrs
    ]
    return max(complete, key=lambda t: t.value) if complete else None


def _source_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    names = study_names(storage)
    if name not in names:
        raise UsageError(
            f"no study {name!r} in the storage (studies: {', '.join(names) or 'none'})"
        )
    source = optuna.load_study(study_name=name, storage=storage)
    if source.user_attrs.get("kind") != "search" or not isinstance(
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


def plan_variants(base: TrainConfig, factors: dict[str, Any]) -> tuple[list[Variant], list[str]]:
    """The base and one variant per factor it uses; the factors already off in it."""
    base_flat = base.to_flat()
    variants = [Variant(BASE, base)]
    skipped = []
    for key, off in factors.items():
        off = coerce(key, off)
        if base_flat[key] == off:
            skipped.append(key)
            continue
        cfg = make_config({**base_flat, key: off}, f"the base with {key}={off!r}")
        variants.append(Variant(f"{key}-off", cfg, {key: [base_flat[key], off]}))
    return variants, skipped


def param_distributions(
    base: TrainConfig,
    variants: Sequence[Variant],
    path_ends: Sequence[TrainConfig],
    path_keys: Sequence[str],
) -> dict[str, BaseDistribution]:
    """Trial parameters for the dashboard: every key an ablation or path run changes."""
    planned: dict[str, list[Any]] = {}
    for v in variants:
        for key, pair in v.changed.items():
            planned.setdefault(key, []).extend(pair)
    for key in path_keys:
        planned.setdefault(key, []).extend(cfg.to_flat()[key] for cfg in path_ends)
    base_flat = base.to_flat()
    for key, values in planned.items():
        values.append(base_flat[key])
    return {
        k: d for k, values in planned.items() if (d := distribution_for(k, values)) is not None
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines instead
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    storage = open_storage(args.storage, create=False)
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
            print(
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

    # the data and the artifact folder last among the checks, before anything is written
    splits = load_splits(base_cfg.data, base_cfg.model.num_classes, settings["seed"])
    seeds = [settings["seed"] + k for k in range(args.seeds)]
    store = dashboard.artifact_store(
        args.artifact_dir or dashboard.default_artifact_dir(args.storage)
    )

    ablation = optuna.create_study(
        storage=storage, study_name=ablation_name, direction="maximize", load_if_exists=True
    )
    attrs: dict[str, Any] = {
        "kind": "ablation",
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

    # a trial left RUNNING or WAITING was cut off (kill, power loss): it will be rerun
    stale = ablation.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    for t in stale:
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    if stale:
        print(f"marked {len(stale)} interrupted trial(s) of {ablation_name!r} as failed")

    def refresh_dashboard() -> None:
        effects = compute_effects(ablation.get_trials(deepcopy=False))
        dashboard.write_study_note(ablation, args.storage, effects_markdown(effects))
        if any(e.diff is not None for e in effects):
            dashboard.save_figure(
                ablation, effects_figure(effects, f"{ablation_name}: effects"), "effects"
            )

    runner = Runner(ablation, splits, seeds, distributions, store, Progress(), refresh_dashboard)
    described = (
        "the recipe" if args.base == "recipe" else f"trial {base_trial} (the best when started)"
    )
    missing = runner.missing(variants)
    print(
        f"ablating {name!r} from {described}: {len(variants)} variants x {len(seeds)} seed(s), "
        f"{epochs} epoch(s) each; {len(variants) * len(seeds) - missing} done, running {missing}"
    )
    if skipped:
        print(f"not ablated, already off in the base: {', '.join(skipped)}")
    for v in variants:
        runner.evaluate(v)

    if args.path:
        assert best_cfg is not None
        n = len(path_keys)
        print(
            f"ablation path over {n} parameter(s) ({', '.join(path_keys)}): up to "
            f"{n * (n + 1) // 2 + 1} configurations x {len(seeds)} seed(s)"
        )
        start_variant = BASE if args.base == "recipe" else PATH_START
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
