"""The report shows, for a ``--pruner promote`` study, the rung each configuration reached."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState, create_trial

from study.records import TrialAttrs as A
from study.reporting.data import StudyData
from study.reporting.sections import cost_part, rungs_table


def _trial(number: int, state: TrialState, curve: list[float], **attrs: object):
    trial = create_trial(
        state=state,
        value=curve[-1] if state == TrialState.COMPLETE else None,
        intermediate_values=dict(enumerate(curve, start=1)),
        user_attrs={A.TARGET_RUNG: 2, A.EPOCH_SECONDS: [1.0] * len(curve), **attrs},
    )
    trial.number = number
    return trial


def test_each_configuration_shows_its_rung_and_where_it_stands() -> None:
    trials = [
        _trial(0, TrialState.PRUNED, [0.3, 0.5], **{A.PAUSED_AT: 2}),  # promoted: trial 2
        _trial(1, TrialState.PRUNED, [0.2, 0.3], **{A.PAUSED_AT: 2}),  # still paused
        _trial(
            2, TrialState.COMPLETE, [0.3, 0.5, 0.6, 0.7],
            **{A.FIRST_ATTEMPT: 0, A.PROMOTED_FROM: 0, A.TARGET_RUNG: 4},
        ),
    ]  # fmt: skip
    study = StudyData("s", optuna.create_study(), trials, None, "#000")
    html = rungs_table(study)
    assert "<td>0</td><td>2</td><td>4</td><td>complete</td><td>0.7000</td>" in html
    assert "<td>1</td><td>1</td><td>2</td><td>paused at epoch 2</td><td>0.3000</td>" in html
    assert html in "".join(cost_part([study]).html)


def test_a_study_without_rungs_gets_no_table() -> None:
    plain = create_trial(state=TrialState.COMPLETE, value=0.5, intermediate_values={1: 0.5})
    study = StudyData("s", optuna.create_study(), [plain], None, "#000")
    assert cost_part([study]).html == []
