"""What the storage holds for the report: search studies with their ablation and reruns, read
through the typed records (``study.records``)."""

from __future__ import annotations

import datetime
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.ablation.effects import Effect, compute_effects
from study.errors import UsageError
from study.records import (
    BASE_VARIANT,
    AblationSettings,
    PathStep,
    RerunPoint,
    RerunSummary,
    SearchSettings,
    StudyKind,
    TrialAttrs,
    ablation_path,
    best_trial,
    compute_unit,
    derived_name,
    epoch_compute,
    rerun_points,
    study_kind,
    trial_devices,
    trial_seconds,
)
from study.reporting.commands import command, data_flags, search_flags, storage_flags
from study.storage import DEFAULT_STORAGE

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass
class AblationData:
    name: str
    settings: AblationSettings
    path: list[PathStep]
    trials: list[FrozenTrial]
    effects: list[Effect]

    @property
    def base_effect(self) -> Effect | None:
        return next((e for e in self.effects if e.variant == BASE_VARIANT), None)

    @property
    def running(self) -> int:
        return sum(t.state == TrialState.RUNNING for t in self.trials)

    @property
    def seeds(self) -> list[int]:
        return list(self.settings.seeds)

    def planned(self) -> list[str]:
        """The variants the ablation plans: the base and one per factor not already off."""
        return self.settings.planned_variants()

    def unfinished(self) -> list[str]:
        """Planned variants without a complete run for every seed."""
        done = {e.variant: e.n for e in self.effects}
        need = max(1, len(self.seeds))
        return [v for v in self.planned() if done.get(v, 0) < need]


@dataclass
class StudyData:
    name: str
    study: optuna.Study
    trials: list[FrozenTrial]
    settings: SearchSettings | None  # None: a search study that recorded none
    colour: str
    storage_url: str = DEFAULT_STORAGE
    reruns: list[RerunSummary] = field(default_factory=list)
    ablation: AblationData | None = None
    ranks: list[RerunPoint] = field(default_factory=list)
    searches_in_storage: int = 1  # search studies the storage holds, chosen or not

    def with_state(self, state: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == state]

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.with_state(TrialState.COMPLETE) if t.value is not None]

    @property
    def best(self) -> FrozenTrial | None:
        return best_trial(self.trials)

    @property
    def epochs(self) -> int | None:
        """Epochs per trial of the search."""
        return None if self.settings is None else self.settings.epochs

    @property
    def space_name(self) -> str | None:
        return None if self.settings is None else self.settings.space.name

    @property
    def seconds(self) -> float:
        return sum(trial_seconds(t) for t in self.trials)

    @property
    def devices(self) -> set[str]:
        return trial_devices(self.trials)

    def seconds_per_epoch(self) -> float | None:
        """The median compute an epoch consumed (the unit of ``time_unit``)."""
        per_epoch = [s for t in self.trials for s in epoch_compute(t)]
        return statistics.median(per_epoch) if per_epoch else None

    @property
    def hardware(self) -> set[str]:
        """The device names its trials ran on ("NVIDIA H200", "x86_64" ...)."""
        key = TrialAttrs.DEVICE_NAME
        return {str(t.user_attrs[key]) for t in self.trials if key in t.user_attrs}

    def cost_curve(self) -> tuple[list[float], list[float], list[int]]:
        """Best value so far against cumulative seconds, over trials in order of finishing."""
        finished = sorted(
            (t for t in self.trials if t.state.is_finished()),
            key=lambda t: (t.datetime_complete or datetime.datetime.max, t.number),
        )
        spent, best = 0.0, -math.inf
        xs: list[float] = []
        ys: list[float] = []
        numbers: list[int] = []
        for t in finished:
            spent += trial_seconds(t)
            if t.state == TrialState.COMPLETE and t.value is not None and t.value > best:
                best = t.value
            if best > -math.inf:
                xs.append(spent)
                ys.append(best)
                numbers.append(t.number)
        return xs, ys, numbers

    def seconds_to_best(self) -> float | None:
        xs, ys, _ = self.cost_curve()
        best = self.best
        if best is None:
            return None
        return next(x for x, y in zip(xs, ys, strict=True) if y >= best.value)

    def label(self) -> str:
        space = self.space_name
        return self.name if not space or space == self.name else f"{self.name} ({space})"

    def run_flags(self) -> list[str]:
        """The flags the search was started with, as far as its settings record them."""
        if self.settings is None:
            return storage_flags(self.storage_url)
        return search_flags(self.settings, self.storage_url)

    def rerun_command(self, top: int = 5, seeds: int = 2) -> str:
        return command(
            "python", "-m", "study.rerun", "--study-name", self.name,
            *storage_flags(self.storage_url), "--top", top, "--seeds", seeds,
            *data_flags(self.settings),
        )  # fmt: skip


def time_unit(studies: Sequence[StudyData]) -> str:
    """What the summed costs are: "GPU-seconds" (measured with CUDA events), "CPU-seconds"
    (the processes' CPU time), "device-seconds" when mixed; "(wall clock)" where some trial
    could only count wall time."""
    return compute_unit(t for s in studies for t in s.trials)


def comparable_hardware(studies: Sequence[StudyData]) -> bool:
    """Whether every study ran on the same device model: only then do costs compare."""
    return len({frozenset(s.hardware) for s in studies if s.hardware}) <= 1


def _chosen(
    summaries: Mapping[str, optuna.study.StudySummary], names: Sequence[str] | None
) -> tuple[list[str], int]:
    """The search studies asked for (default: all), and how many the storage holds."""
    search = [n for n, s in summaries.items() if study_kind(s.user_attrs) == StudyKind.SEARCH]
    if names:
        for n in names:
            if n not in summaries:
                raise UsageError(
                    f"--studies: no study {n!r} in the storage "
                    f"(search studies: {', '.join(search) or 'none'})"
                )
            if n not in search:
                raise UsageError(f"--studies: {n!r} is not a search study made by study.run")
        chosen = list(dict.fromkeys(names))
    else:
        chosen = sorted(search)
    if not chosen:
        raise UsageError(
            "the storage holds no search study (run python -m study.run first; studies: "
            f"{', '.join(summaries) or 'none'})"
        )
    return chosen, len(search)


def collect(
    storage: optuna.storages.BaseStorage,
    names: Sequence[str] | None,
    storage_url: str = DEFAULT_STORAGE,
) -> list[StudyData]:
    """The chosen search studies (default: all), each with its ablation and reruns."""
    summaries = {s.study_name: s for s in storage.get_all_studies()}
    chosen, searches = _chosen(summaries, names)
    result = []
    for i, name in enumerate(chosen):
        study = optuna.load_study(study_name=name, storage=storage)
        data = StudyData(
            name=name,
            study=study,
            trials=study.get_trials(deepcopy=False),
            settings=SearchSettings.of(study.user_attrs),
            colour=COLOURS[i % len(COLOURS)],
            storage_url=storage_url,
            reruns=RerunSummary.all(study.user_attrs),
            searches_in_storage=searches,
        )
        ablation_name = derived_name(name, StudyKind.ABLATION)
        if ablation_name in summaries:
            ablation = optuna.load_study(study_name=ablation_name, storage=storage)
            data.ablation = _ablation(ablation, name)
        rerun_name = derived_name(name, StudyKind.RERUN)
        if rerun_name in summaries:
            rerun = optuna.load_study(study_name=rerun_name, storage=storage)
            data.ranks = rerun_points(data.trials, rerun.get_trials(deepcopy=False))
        result.append(data)
    return result


def _ablation(study: optuna.Study, source: str) -> AblationData:
    attrs = study.user_attrs
    settings = AblationSettings.of(attrs) or AblationSettings(source_study=source)
    trials = study.get_trials(deepcopy=False)
    effects = compute_effects(trials, settings.search_seeds)  # a replay of the search: left out
    return AblationData(study.study_name, settings, ablation_path(attrs), trials, effects)
