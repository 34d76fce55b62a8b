"""The report's written answers: one paragraph each, at the top of the page and on stdout."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from search_spaces import BUILTIN
from study.ablation.effects import effect_words
from study.chance import trial_chance_note
from study.records import TrialAttrs, recorded_config, seed_result, tally
from study.reporting import ranking
from study.reporting.commands import command
from study.reporting.data import StudyData, comparable_hardware, time_unit
from study.reporting.part import plural
from study.reporting.results import ablation_command
from wrn.network import network_name

FEW_TRIALS = 10  # below this many complete trials the summary calls a ranking preliminary
COUNTED = ("complete", "pruned", "running", "fail")  # the states the summary counts, in order


def seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def counts(s: StudyData) -> str:
    """ "3 complete, 1 pruned": the study's trials by state."""
    return tally(s.trials).describe(COUNTED)


def network(trial: FrozenTrial) -> str:
    config = recorded_config(trial)
    size = trial.user_attrs.get(TrialAttrs.NUM_PARAMS)
    net = network_name(config["depth"], config["width"]) if "depth" in config else "network"
    return f"{net}, {size:,} parameters" if size else net


def other_space_command(s: StudyData) -> str:
    """The search of the other built-in configuration, with this study's flags."""
    space = s.space_name or s.name
    other = BUILTIN[1] if space != BUILTIN[1] else BUILTIN[0]  # the two the report compares
    finished = sum(t.state.is_finished() for t in s.trials)
    trials = ["--trials", str(finished)] if finished else []
    return command("python", "-m", "study.run", "--space", other, *trials, *s.run_flags())


def comparison(studies: Sequence[StudyData], unit: str) -> str | None:
    ranked = sorted((s for s in studies if s.best), key=lambda s: -s.best.value)
    if len(studies) == 1 and studies[0].searches_in_storage > 1:
        return None  # --studies chose one: the others are there, just not asked for
    if len(studies) == 1:
        return (
            f"Only one search study ({studies[0].name}): comparing configurations needs the "
            f"other one in the same storage: {other_space_command(studies[0])}"
        )
    if len(ranked) < 2:
        return None
    first, second = ranked[0], ranked[1]
    gap = 100 * (first.best.value - second.best.value)
    verdict = (
        "a tie"
        if first.best.value == second.best.value
        else f"{first.name} is ahead by {gap:.2f} points"
    )
    text = (
        f"{first.name} reaches {first.best.value:.4f} val acc at "
        f"{seconds(first.seconds_to_best() or 0.0)} {unit} vs {second.name} "
        f"{second.best.value:.4f} at {seconds(second.seconds_to_best() or 0.0)}: {verdict}."
    )
    spe_first, spe_second = first.seconds_per_epoch(), second.seconds_per_epoch()
    if not comparable_hardware([first, second]):
        text += (
            f" Their costs do not compare: {first.name} ran on "
            f"{', '.join(sorted(first.hardware))}, {second.name} on "
            f"{', '.join(sorted(second.hardware))}."
        )
    elif spe_first and spe_second:
        text += (
            f" An epoch of {first.name} costs {spe_first / spe_second:.2f}× one of "
            f"{second.name} ({seconds(spe_first)} vs {seconds(spe_second)} {unit}, median)."
        )
    few = [s.name for s in ranked if len(s.complete) < FEW_TRIALS]
    if few:
        text += (
            f" With fewer than {FEW_TRIALS} complete trials in {', '.join(few)}, "
            "treat this ranking as preliminary."
        )
    return text


def ablation_words(s: StudyData) -> str | None:
    a = s.ablation
    if a is None:
        return None
    effects = [e for e in a.effects if e.diff is not None]
    unfinished = a.unfinished()
    planned = len(a.planned()) - 1  # factors, the base aside
    measured = len(effects)
    if not effects:
        return (
            f"The ablation of {s.name} has no finished variant besides the base yet "
            f"(0 of {planned} factors measured); resume it with {ablation_command(s)}."
        )
    base = a.base_effect
    base_text = (
        f"the best trial ({a.settings.base_trial})" if a.settings.base == "best" else "the recipe"
    )
    words = "; ".join(effect_words(e) for e in effects)
    text = (
        f"Ablation of {s.name} from {base_text}, {plural(base.n, 'seed')} of "
        f"{plural(a.settings.epochs, 'epoch')}, base {base.mean:.4f} val acc: {words}."
        if base
        else f"Ablation of {s.name}: {words}."
    )
    significant = [e for e in effects if e.significant and e.diff < 0]
    if significant:
        text += f" The factor that matters most so far: {', '.join(significant[0].changed)}."
    if unfinished:
        text += (
            f" Partial answer: {measured} of {planned} factors measured; not yet run for every "
            f"seed: {', '.join(unfinished)} (resume: {ablation_command(s)})."
        )
    elif not significant and all(e.interval is not None for e in effects):
        text += " No factor's removal is distinguishable from noise at this budget."
    if a.path:
        gains = [
            f"{step.param} ({100 * (step.mean - prev.mean):+.2f})"
            for prev, step in zip(a.path, a.path[1:], strict=False)
        ]
        text += (
            f" The ablation path from the recipe ({a.path[0].mean:.4f}) to the best "
            f"configuration ({a.path[-1].mean:.4f}) changes, greedily by gain: "
            f"{', '.join(gains)} points."
        )
    return text


def summary(studies: Sequence[StudyData]) -> list[str]:
    """The answers in words, one paragraph each."""
    unit = time_unit(studies)
    names = (
        " and ".join(s.name for s in studies)
        if len(studies) <= 2
        else ", ".join(s.name for s in studies)
    )
    out = [
        f"{len(studies)} search {'study' if len(studies) == 1 else 'studies'}: {names}. "
        + " ".join(f"{s.name}: {counts(s)}." for s in studies)
    ]
    out += [best_words(s, unit) for s in studies]
    out.append(comparison(studies, unit))
    out += [ranking_words(s) for s in studies if s.best is not None]
    out += [ablation_words(s) for s in studies]
    out += [rerun_words(s) for s in studies]
    for s in studies:
        running = len(s.with_state(TrialState.RUNNING))
        if running:
            out.append(
                f"{s.name} is still running ({running} trial(s) in progress): this report "
                "shows what has finished so far."
            )
    return [paragraph for paragraph in out if paragraph]


def best_words(s: StudyData, unit: str) -> str:
    """The study's best trial, its network, and the cost of reaching it."""
    best = s.best
    if best is None:
        return f"{s.name} has no complete trial yet, so no best result."
    epochs = s.epochs
    budget = f", {plural(epochs, 'epoch')} per trial" if epochs else ""
    return (
        f"{s.name} reaches {best.value:.4f} val acc{trial_chance_note(best)} (trial "
        f"{best.number}, {network(best)}{budget}) at {seconds(s.seconds_to_best() or 0.0)} "
        f"{unit}, of {seconds(s.seconds)} spent so far."
    )


def ranking_words(s: StudyData) -> str:
    """Whether the search's winner holds at full length, with the rank correlations."""
    text = ranking.winner_sentence(s)
    if len(s.ranks) >= ranking.MIN_RANK_TRIALS:
        text += (
            f" Proxy against full-length rank correlation over {len(s.ranks)} trials: "
            f"{ranking.correlation_words(s.ranks)}."
        )
    return text


def rerun_words(s: StudyData) -> str | None:
    """The final-epoch test accuracies of the study's reruns (mean ± std over seeds, never a
    maximum over epochs or seeds): one trial's, or every rerun trial's, best first."""
    if len(s.reruns) == 1:
        r = s.reruns[0]
        return (
            f"{s.name} trial {r.trial} retrained for {plural(r.epochs, 'epoch')}: final-epoch "
            f"test acc {seed_result([run.test_acc for run in r.runs])}."
        )
    if not s.reruns:
        return None
    ranked = sorted(s.reruns, key=lambda r: -r.mean)
    return (
        f"{s.name} retrained on the full training set, final-epoch test acc (mean ± std over "
        "seeds): "
        + "; ".join(
            f"trial {r.trial} {seed_result([run.test_acc for run in r.runs])} "
            f"({plural(r.epochs, 'epoch')})"
            for r in ranked
        )
        + "."
    )
