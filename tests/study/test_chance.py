from __future__ import annotations

import math

import pytest

from study.chance import at_chance, chance_note


@pytest.mark.parametrize(
    ("accuracy", "classes", "images", "expected"),
    [
        (0.066, 10, 1000, True),  # the first Fashion-MNIST study's best
        (0.002, 10, 1000, True),  # below chance
        (0.13, 10, 1000, False),  # 0.1 + 2 x 0.0095 = 0.119: above it
        (0.011, 100, 5000, True),
        (0.05, 100, 5000, False),
    ],
)
def test_at_chance_is_two_standard_errors_above_guessing(
    accuracy: float, classes: int, images: int, expected: bool
) -> None:
    assert at_chance(accuracy, classes, images) == expected


def test_the_margin_is_the_binomial_standard_error() -> None:
    edge = 0.1 + 2 * math.sqrt(0.1 * 0.9 / 400)
    assert at_chance(edge, 10, 400) and not at_chance(edge + 1e-9, 10, 400)


def test_the_note_names_the_guess() -> None:
    assert chance_note(0.05, 10, 1000) == " (at chance: 10 classes guess 0.100)"
    assert chance_note(0.9, 10, 1000) == ""


def test_a_study_at_chance_says_so_in_status(tmp_path) -> None:
    import optuna

    from study import status
    from study.records import TrialAttrs as A
    from study.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'wrn.db'}")
    for name, value in (("guessing", 0.066), ("learning", 0.62)):
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        trial = study.ask()
        trial.set_user_attr(A.CONFIG, {"num_classes": 10, "val_size": 1000})
        study.tell(trial, value)
    rows = {row.name: row for row in status.collect(storage)}
    table = status.format_table(list(rows.values()))
    assert "0.0660*" in table and "0.6200*" not in table
    assert rows["guessing"].at_chance and not rows["learning"].at_chance


def test_the_study_line_says_when_the_best_is_at_chance(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    from study.records import TrialAttrs as A
    from study.run import print_summary

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", direction="maximize")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.01, 1.0)})
    trial.set_user_attr(A.CONFIG, {"num_classes": 10, "val_size": 1000})
    study.tell(trial, 0.066)
    print_summary(study)
    best = capsys.readouterr().out.splitlines()[-1]
    assert best.startswith("best: trial 0, val_acc 0.0660 (at chance: 10 classes guess 0.100) (")
