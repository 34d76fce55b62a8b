"""study.sampling: TPE's random startup draws are visible, and over-cap draws are redrawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from benchmarks.kill_resume import FAST_TRIAL
from search_spaces import load_space, over_cap
from study.records import SearchSettings, TrialAttrs, is_random_draw, tally
from study.sampling import Draw, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

SMALL = {"depth": 10, "width": 4}  # within light's cap: no draw is redrawn


def drawn(sampler: str, startup: int, n: int, fixed: dict[str, Any] = SMALL) -> optuna.Study:
    """``n`` trials drawn by ``Draw`` from the light space (seed 7), each told a value."""
    space = load_space("light")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, 7, startup))
    draw = Draw(space, dict(space.recipe), fixed, sampler, startup)
    for _ in range(n):
        trial = draw(study)
        # a value that rewards small lr, so TPE has something to model
        study.tell(trial, 1.0 - trial.params["lr"])
    return study


def complete_params(study: optuna.Study) -> list[dict[str, Any]]:
    return [t.params for t in study.trials if t.state == TrialState.COMPLETE]


def test_the_first_startup_trials_are_flagged_random() -> None:
    study = drawn("tpe", 3, 6)
    assert [is_random_draw(t) for t in study.trials] == [True] * 3 + [False] * 3
    assert all(is_random_draw(t) for t in drawn("random", 3, 4).trials)


def test_tpe_with_two_startup_trials_leaves_random_search_by_trial_3() -> None:
    tpe, rand = complete_params(drawn("tpe", 2, 4)), complete_params(drawn("random", 2, 4))
    assert tpe[:2] == rand[:2]  # the startup draws are the random sampler's, same seed
    assert tpe[2] != rand[2]  # trial 3 is TPE's
    # with Optuna's default of 10, trials 1-4 would all have been random
    assert complete_params(drawn("tpe", 10, 4)) == rand


def test_startup_trials_are_a_pinned_setting() -> None:
    space = load_space("light")
    settings = SearchSettings(space, {}, 20, 85, "cifar100", 5000, 0, sampler_startup_trials=2)
    recorded = settings.to_dict()
    assert SearchSettings.from_dict(recorded).sampler_startup_trials == 2
    again = SearchSettings(space, {}, 20, 85, "cifar100", 5000, 0)  # the default, 10
    assert again.changed_from(recorded) == [
        "sampler_startup_trials=2; this command asks for sampler_startup_trials=10"
    ]
    older = {k: v for k, v in recorded.items() if k != "sampler_startup_trials"}
    assert SearchSettings.from_dict(older).sampler_startup_trials == 10  # Optuna's default


def test_over_cap_draws_are_redrawn_untrained() -> None:
    space = load_space("light")
    study = drawn("random", 10, 12, fixed={})
    rejected = [t for t in study.trials if TrialAttrs.REJECTED_DRAW in t.user_attrs]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 12 and rejected  # about a quarter of light's pairs are over
    assert all(t.state == TrialState.FAIL and not t.intermediate_values for t in rejected)
    for t in rejected:
        cfg = space.recipe_config(**t.params)
        assert t.user_attrs[TrialAttrs.REJECTED_DRAW] == over_cap(space, cfg)
    assert all(over_cap(space, space.recipe_config(**t.params)) is None for t in complete)
    counts = tally(study.trials)
    assert counts.by_state["fail"] == 0 and counts.rejected == len(rejected)


CAPPED_SPACE = """name = "capped"
description = "WRN-10-1 is the only searched network within the cap"
source = "test.md"
[recipe]
depth = 10
width = 1
num_classes = 10
epochs = 1
[search]
epochs = 1
[search.params.depth]
type = "int"
low = 10
high = 16
step = 6
[search.params.width]
type = "int"
low = 1
high = 2
[search.params.dropout]
type = "float"
low = 0.0
high = 0.5
[ablation]
dropout = 0.0
"""


def without_sets(args: list[str], drop: set[str]) -> list[str]:
    """``args`` less the ``--set KEY=VALUE`` pairs whose assignment is in ``drop``."""
    out, i = [], 0
    while i < len(args):
        if args[i] == "--set" and args[i + 1] in drop:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def test_a_study_trains_as_many_configs_as_asked(tmp_path: Path) -> None:
    # --trials counts trained configurations only, not the over-cap draws redrawn
    from study import run

    # the cap is the recipe's WRN-10-1: 3 of the 4 depth x width pairs are over it
    space = tmp_path / "capped.toml"
    space.write_text(CAPPED_SPACE)
    fast = without_sets(FAST_TRIAL, {"depth=10", "width=1"})
    storage = tmp_path / "wrn.db"
    argv = [
        *fast,
        "--space",
        str(space),
        "--trials",
        "3",
        "--sampler-seed",
        "3",
        "--storage",
        f"sqlite:///{storage}",
        "--checkpoint-dir",
        str(tmp_path / "checkpoints"),
        "--quiet",
    ]
    assert run.main(argv) == 0
    trials = optuna.load_study(study_name="capped", storage=f"sqlite:///{storage}").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert all((t.params["depth"], t.params["width"]) == (10, 1) for t in complete)
    assert tally(trials).rejected == len(trials) - 3 > 0
