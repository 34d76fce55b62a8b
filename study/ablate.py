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
The seeds are the first after the study's that no search trial trained with, so the base is not
a replay of the trial that won the search; each factor is compared with the base seed by seed
(paired t) and called significant only after Holm's correction across the factors.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

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
from study.jobs import AblationJob, RetrainJob
from study.progress import Progress
from study.records import (
    AblationSettings,
    SearchSettings,
    StudyKind,
    ablation_run_key,
    best_trial,
    derived_name,
    is_path_variant,
    record_ablation_path,
    recorded_config,
)
from study.records import TrialAttrs as A
from study.retrain import Retrain, Started
from study.sqlite_file import checkpoint_wal
from study.storage import redact, storage_flags

if TYPE_CHECKING:
    from study.ablation.plan import Plan
    from study.ablation.runner import Runner
    from wrn.config import TrainConfig


def build_parser() -> Parser:
    p = command_parser("study.ablate", __doc__)
    p.add_argument(
        "--study-name", type=study_name_type, required=True, help="the search study to ablate"
    )
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
        help="training runs per variant, on the seeds after the study's that the search never "
        "trained with",
    )
    p.add_argument("--epochs", type=epochs_type, help="default: the study's epochs per trial")
    p.add_argument(
        "--path",
        action="store_true",
        help="also the ablation path from the recipe to the best configuration",
    )
    add_retrain_flags(p)
    return p


def ablation_job(args: argparse.Namespace, argv: Sequence[str]) -> AblationJob:
    check_study_name(args.study_name, derived_name(args.study_name, StudyKind.ABLATION))
    retrain = RetrainJob(
        "study.ablate", run_flags(args), tuple(argv), args.study_name, args.epochs, args.seeds
    )
    return AblationJob(retrain, base=args.base, path=args.path)


def search_settings(source: optuna.Study) -> SearchSettings:
    settings = SearchSettings.of(source.user_attrs)
    if settings is None:
        raise UsageError(
            f"study {source.study_name!r} is not a search study made by python -m study.run"
        )
    return settings


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return best_trial(t for t in trials if recorded_config(t))


@dataclass(frozen=True)
class Ends:
    """The configurations an ablation starts from: the recipe (with the study's ``--set``
    values) and the best trial's, both with this command's run values."""

    recipe: TrainConfig
    best: FrozenTrial | None
    best_cfg: TrainConfig | None
    run_values: dict[str, Any]


def read_ends(job: AblationJob, source: optuna.Study, settings: SearchSettings) -> Ends:
    from study.ablation.plan import make_config

    fixed, flags = settings.fixed, job.retrain.flags
    run_values = {
        **flags.execution(),
        "epochs": job.retrain.epochs or fixed.get("epochs") or settings.epochs,
        "dataset": flags.dataset or fixed.get("dataset") or settings.dataset,
        "eval_split": "val",  # an ablation is part of the search: never the test set
    }
    recipe_values = {"val_size": settings.val_size, "seed": settings.seed, **fixed, **run_values}
    recipe = make_config(
        {**settings.space.recipe, **recipe_values}, "the recipe with the study's --set values"
    )
    best = _best_trial(source)
    if best is None and (job.base == "best" or job.path):
        need = "--base best" if job.base == "best" else "--path"
        raise UsageError(
            f"study {source.study_name!r} has no complete trial yet, which {need} needs "
            "(--base recipe ablates the recipe)"
        )
    best_cfg = None
    if best is not None:
        best_cfg = make_config({**recorded_config(best), **run_values}, f"trial {best.number}")
    return Ends(recipe, best, best_cfg, run_values)


@dataclass(frozen=True)
class Base:
    """What the ablation varies from, and where its path goes."""

    cfg: TrainConfig
    trial: int | None  # the search trial it is (None: the recipe)
    target: TrainConfig | None  # the path's end
    target_trial: int | None
    seeds: tuple[int, ...] = ()  # seeds an earlier run of this ablation recorded


def choose_base(job: AblationJob, retrain: Retrain, ends: Ends, progress: Progress) -> Base:
    """The base ``--base`` asks for; a resumed ablation keeps its recorded base (even if the
    search has found a better trial since) and its path target."""
    from study.ablation.plan import make_config

    number = None if ends.best is None else ends.best.number
    recipe = job.base == "recipe"
    cfg = ends.recipe if recipe else ends.best_cfg
    assert cfg is not None
    chosen = Base(cfg, None if recipe else number, ends.best_cfg, number)
    if not retrain.recorded():
        return chosen
    recorded = resumed(job, retrain, ends.run_values)
    if job.base == "best" and number is not None and number != recorded.base_trial:
        progress.message(
            f"note: {job.retrain.study_name!r}'s best is now trial {number}; this ablation "
            f"keeps its base, trial {recorded.base_trial} ({restart_hint(job)})"
        )
    target, target_trial = chosen.target, chosen.target_trial
    if job.path and recorded.path_target:
        target = make_config({**recorded.path_target, **ends.run_values}, "the path target")
        target_trial = recorded.path_target_trial
    cfg = make_config({**recorded.base_config, **ends.run_values}, "the recorded base")
    return Base(cfg, recorded.base_trial, target, target_trial, tuple(recorded.seeds))


def make_plan(job: AblationJob, retrain: Retrain, progress: Progress) -> Plan:
    """The ablation's runs, from the search's settings and best trial; UsageError if they
    cannot be planned."""
    from study.ablation import plan as planning

    settings = search_settings(retrain.source)
    ends = read_ends(job, retrain.source, settings)
    base = choose_base(job, retrain, ends, progress)
    variants, skipped = planning.plan_variants(
        base.cfg, settings.space.ablation, settings.space.params
    )
    path_keys: list[str] = []
    if job.path:
        assert base.target is not None
        order = list(settings.space.params)
        path_keys = planning.config_diff(ends.recipe.to_flat(), base.target.to_flat(), order)
        if not path_keys:
            raise UsageError(
                f"--path: the best trial of {job.retrain.study_name!r} has the recipe's "
                "configuration"
            )
    trials = retrain.source.get_trials(deepcopy=False)
    used = {settings.split_seed, *(recorded_config(t).get("seed") for t in trials)} - {None}
    seeds = planning.ablation_seeds(used, settings.split_seed, job.retrain.seeds)
    ablation = AblationSettings(
        source_study=job.retrain.study_name,
        base=job.base,
        base_trial=base.trial,
        base_config=base.cfg.to_flat(),
        epochs=ends.run_values["epochs"],
        dataset=ends.run_values["dataset"],
        data_dir=os.path.abspath(ends.run_values["data_dir"]),
        val_size=base.cfg.data.val_size,
        factors=dict(settings.space.ablation),
        skipped=list(skipped),
        skip_reasons=skipped,
        seeds=sorted((set(seeds) | set(base.seeds)) - used),
        search_seeds=sorted(used),
        path_target=None if not job.path or base.target is None else base.target.to_flat(),
        path_target_trial=base.target_trial if job.path else None,
    )
    path_ends = [ends.recipe] if base.target is None else [ends.recipe, base.target]
    distributions = planning.param_distributions(base.cfg, variants, path_ends, path_keys)
    return planning.Plan(
        ablation, settings.split_seed, seeds, ends.recipe, base.cfg, base.target, variants,
        path_keys, distributions,
    )  # fmt: skip


def restart_hint(job: AblationJob) -> str:
    name = derived_name(job.retrain.study_name, StudyKind.ABLATION)
    storage = shlex.join(storage_flags(job.retrain.flags.storage, always=True))
    return f"delete it to start over: optuna delete-study --study-name {name} {storage}"


def resumed(job: AblationJob, retrain: Retrain, run_values: dict[str, Any]) -> AblationSettings:
    """The existing ablation's settings; refuses to mix runs of another base, length or dataset
    into it."""
    source, name = job.retrain.study_name, retrain.name
    recorded = AblationSettings.of(retrain.recorded())
    if recorded is None or recorded.source_study != source:
        raise UsageError(f"study {name!r} exists but is not an ablation of {source!r}")
    for flag, was, value in (
        ("--base", recorded.base, job.base),
        ("--epochs", recorded.epochs, run_values["epochs"]),
        ("--dataset", recorded.dataset, run_values["dataset"]),
    ):
        if was is not None and was != value:
            raise UsageError(
                f"{name!r} was run with {flag} {was}; resume it with {flag} {was}, "
                f"or {restart_hint(job)}"
            )
    return recorded


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    job = ablation_job(build_parser().parse_args(argv), argv)
    progress = Progress(quiet=job.retrain.flags.quiet)
    try:
        return ablate(job, progress)
    finally:
        progress.close()


def ablate(job: AblationJob, progress: Progress) -> int:
    """The command's work, shown on ``progress``; returns the exit status."""
    retrain = Retrain(job.retrain, StudyKind.ABLATION, progress)
    job = dataclasses.replace(job, retrain=retrain.job)  # --data-dir as resolved there
    plan = make_plan(job, retrain, progress)
    started = retrain.start(
        plan.settings,
        plan.split_seed,
        [plan.base],
        keep_checkpoints=job.retrain.flags.keep_checkpoints,
    )
    runner = make_runner(plan, retrain, started)
    show_start(plan, retrain, started, runner)
    runner.evaluate_many(plan.variants)
    if job.path:
        walk_path(plan, runner, started.study, progress)
    runner.after_trial()  # the note and the figure, once more at the end
    from study.ablation.effects import compute_effects, effects_table, seeds_words

    trials = started.study.get_trials(deepcopy=False)
    effects = compute_effects(trials, plan.settings.search_seeds)
    where = redact(job.retrain.flags.storage)
    print(f"{retrain.name!r} in {where} ({runner.ran} run(s) trained now):")
    print(effects_table(effects))
    print(seeds_words(plan.settings))
    checkpoint_wal(retrain.storage)  # the .db file alone then holds the ablation
    return 0


def make_runner(plan: Plan, retrain: Retrain, started: Started) -> Runner:
    from study import dashboard
    from study.ablation.effects import (
        compute_effects,
        effects_figure,
        effects_markdown,
        seeds_words,
    )
    from study.ablation.runner import Runner

    study, storage_url = started.study, retrain.job.flags.storage

    def refresh_dashboard() -> None:
        effects = compute_effects(study.get_trials(deepcopy=False), plan.settings.search_seeds)
        markdown = f"{seeds_words(plan.settings)}\n\n{effects_markdown(effects)}"
        dashboard.write_study_note(study, storage_url, markdown)
        if any(e.diff is not None for e in effects):
            figure = effects_figure(effects, f"{study.study_name}: effects")
            dashboard.save_figure(study, figure, "effects")

    return Runner(
        study,
        retrain.storage,
        started.splits_for,
        plan.seeds,
        plan.distributions,
        started.life,
        refresh_dashboard,
    )


def show_start(plan: Plan, retrain: Retrain, started: Started, runner: Runner) -> None:
    """The display's first lines: runs done of the planned total, and what runs now."""
    from study.lifecycle import completed_runs

    seeds, variants = plan.seeds, plan.variants
    planned = {ablation_run_key(v.name, s) for v in variants for s in seeds}
    done = [
        t.value
        for key, t in completed_runs(started.study.get_trials(deepcopy=False)).items()
        if key in planned
        or (
            plan.path_keys
            and is_path_variant(t.user_attrs.get(A.VARIANT, ""))
            and t.user_attrs.get(A.SEED) in seeds
        )
    ]
    total = (len(variants) + plan.path_configs) * len(seeds)
    retrain.show_start(done, total, plan.settings.epochs or 0)
    base = plan.settings
    described = f"trial {base.base_trial} (the best when started)"
    if base.base == "recipe":
        described = "the recipe"
    missing = runner.missing(variants)
    retrain.progress.message(
        f"ablating {base.source_study!r} from {described}: {len(variants)} variants x "
        f"{len(seeds)} seed(s), {base.epochs} epoch(s) each; "
        f"{len(variants) * len(seeds) - missing} done, running {missing}"
    )
    if base.skipped:
        from study.ablation.effects import skipped_words

        retrain.progress.message(f"not ablated: {skipped_words(base)}")
    replays = [
        t
        for t in started.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get(A.SEED) in base.search_seeds
    ]
    if replays:  # an earlier version trained on the search's seed: a replay of its trials
        retrain.progress.message(
            f"left out: {len(replays)} earlier run(s) on the search's seed(s) "
            f"{', '.join(map(str, base.search_seeds))}"
        )


def walk_path(plan: Plan, runner: Runner, study: optuna.Study, progress: Progress) -> None:
    from study.ablation.runner import run_path

    assert plan.target is not None
    keys = plan.path_keys
    progress.message(
        f"ablation path over {len(keys)} parameter(s) ({', '.join(keys)}): up to "
        f"{plan.path_configs} configurations x {len(plan.seeds)} seed(s)"
    )
    path = run_path(runner, plan.recipe, plan.target, keys, plan.start_variant)
    record_ablation_path(study, path)
    print("path: " + " -> ".join(f"{s.param or 'recipe'} {s.mean:.4f}" for s in path))


if __name__ == "__main__":
    run_command("python -m study.ablate", main)
