"""The record schema: what each command writes reads back as the same types."""

from __future__ import annotations

from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search_spaces import load_space
from study.records import (
    AblationSettings,
    PathStep,
    RerunRun,
    RerunSettings,
    RerunSummary,
    SearchSettings,
    StudyKind,
    TrialAttrs,
    ablation_path,
    derived_name,
    study_kind,
    tally,
)


def settings() -> SearchSettings:
    return SearchSettings(
        space=load_space("light"),
        fixed={"depth": 10},
        epochs=2,
        recipe_epochs=85,
        dataset="synthetic",
        val_size=500,
        seed=0,
    )


def test_search_settings_read_back_as_written() -> None:
    written = settings()
    attrs = written.study_attrs()
    assert study_kind(attrs) == StudyKind.SEARCH
    read = SearchSettings.of(attrs)
    assert read == written and read.space.params == written.space.params
    assert SearchSettings.of({"kind": "rerun"}) is None


def test_a_partial_space_record_reads_as_empty_parts() -> None:
    recorded = {**settings().to_dict(), "space": {"name": "old", "search": {"epochs": 30}}}
    read = SearchSettings.of({"kind": "search", "settings": recorded})
    assert read is not None
    assert (read.space.name, read.space.search_epochs, read.space.params) == ("old", 30, {})


def test_ablation_and_rerun_settings_read_back_as_written() -> None:
    ablation = AblationSettings("light", base_trial=3, seeds=[0, 1], skipped=["dropout"])
    assert AblationSettings.of(ablation.study_attrs()) == ablation
    assert "path_target" not in ablation.to_dict()  # a recorded target is kept, not cleared
    rerun = RerunSettings("light")
    assert RerunSettings.of(rerun.study_attrs()) == rerun
    assert derived_name("light", StudyKind.ABLATION) == "light-ablation"


def test_path_steps_and_rerun_summaries_read_back_as_written() -> None:
    step = PathStep(1, "dropout", 0.5, from_=0.0, to=0.3, variant="path-1-dropout", n=2)
    assert step.to_dict()["from"] == 0.0
    assert ablation_path({"path": [step.to_dict()]}) == [step]
    summary = RerunSummary(4, 85, (RerunRun(0, 0.5), RerunRun(1, 0.7, "c.pt")))
    attrs = {summary.key: summary.to_dict(), "rerun_trialx": {}}
    assert RerunSummary.all(attrs) == [summary]
    assert abs(summary.mean - 0.6) < 1e-12 and summary.to_dict()["test_acc_mean"] == summary.mean


def test_tally_counts_an_interrupted_attempt_apart_from_failures() -> None:
    dist = {"x": FloatDistribution(0, 1)}
    trials = [
        create_trial(value=0.2, params={"x": 0.1}, distributions=dist),
        create_trial(value=0.4, params={"x": 0.2}, distributions=dist),
        create_trial(state=TrialState.FAIL),
        create_trial(state=TrialState.FAIL, user_attrs={TrialAttrs.INTERRUPTED: True}),
        create_trial(state=TrialState.PRUNED),
    ]
    counts = tally(trials)
    assert counts.by_state["fail"] == 1 and counts.interrupted == 1
    assert counts.best is trials[1]
    assert counts.describe() == "2 complete, 1 pruned, 1 fail"
    assert counts.describe(("running",), empty="none") == "none"
