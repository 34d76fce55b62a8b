"""The ablation's statistics without training: paired t against scipy, Holm's correction, what
is not estimable, the seeds disjoint from the search's, and factors already near off."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial
from scipy import stats as scipy_stats

from search_spaces import load_space
from study.ablation import effects as fx
from study.ablation import plan
from study.records import AblationSettings
from study.reporting.data import collect
from study.reporting.summary import ablation_words
from tests.study.conftest import SEARCH_SETTINGS
from wrn.config import SEED_LIMIT, TrainConfig

FACTORS = ("dropout", "label_smoothing", "mixup_prob", "cutmix_prob", "weight_decay")


def test_paired_t_matches_scipy() -> None:
    variant, base = [0.50, 0.52, 0.55, 0.49], [0.47, 0.50, 0.51, 0.48]
    diffs = [v - b for v, b in zip(variant, base, strict=True)]
    reference = scipy_stats.ttest_rel(variant, base)
    ci = reference.confidence_interval(0.95)
    test = fx.paired_t(diffs)
    assert test.p == pytest.approx(reference.pvalue, rel=1e-12)
    assert test.interval == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert test.diff == pytest.approx(sum(diffs) / 4) and test.reason is None


def test_holm_against_a_hand_computation() -> None:
    # sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 (kept at 0.09), 0.2
    assert fx.holm([0.04, 0.01, 0.03, 0.2]) == pytest.approx([0.09, 0.04, 0.09, 0.2])
    # a test that cannot be estimated still counts as one of the m tests
    assert fx.holm([0.01, None]) == [pytest.approx(0.02), None]
    assert fx.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1, order kept


def ablation_trials(values: dict[str, dict[int, float]]) -> list[optuna.trial.FrozenTrial]:
    trials = []
    for variant, by_seed in values.items():
        key = variant.removesuffix("-off")
        changed = {} if variant == "base" else {key: [0.3, 0.0]}
        for seed, value in by_seed.items():
            attrs = {"variant": variant, "seed": seed, "changed": changed}
            trials.append(create_trial(value=value, user_attrs=attrs))
    return trials


def test_identical_or_single_seed_results_are_not_estimable() -> None:
    trials = ablation_trials(
        {
            "base": {1: 0.50, 2: 0.50},
            "dropout-off": {1: 0.49, 2: 0.49},  # the same -1 point on both seeds
            "label_smoothing-off": {1: 0.45},  # one seed
        }
    )
    effects = {e.variant: e for e in fx.compute_effects(trials)}
    for name in ("dropout-off", "label_smoothing-off"):
        e = effects[name]
        assert e.interval is None and e.p is None and not e.significant
        cell = fx.format_points(e)
        assert "not estimable" in cell and "significant" not in cell and "± 0.00" not in cell
        assert "not estimable" in fx.effect_words(e) and "costs" not in fx.effect_words(e)
    assert "no spread" in effects["dropout-off"].reason
    table = fx.effects_table(list(effects.values()))
    assert "0.4500 ±" not in table and "0.4500 (one seed)" in table
    assert "one seed" in effects["label_smoothing-off"].reason


def five_factors() -> dict[str, dict[int, float]]:
    """Five factors, each 1 point worse than the base at raw p of 0.016 to 0.036."""
    base = {1: 0.50, 2: 0.52, 3: 0.51, 4: 0.53}
    values = {"base": base}
    for i, factor in enumerate(FACTORS):
        noise = (0.004 + 0.0005 * i, -0.004 - 0.0005 * i, 0.003, -0.003)
        values[f"{factor}-off"] = {
            s: v - 0.01 + n for (s, v), n in zip(base.items(), noise, strict=True)
        }
    return values


def test_holm_decides_significance_across_factors() -> None:
    effects = [e for e in fx.compute_effects(ablation_trials(five_factors())) if e.diff]
    assert len(effects) == 5
    raw = [e.p for e in effects]
    assert all(p is not None and p < 0.05 for p in raw)  # each alone would be "significant"
    assert [e.p_holm for e in effects] == pytest.approx(fx.holm(raw))
    assert not any(e.significant for e in effects)
    assert all(e.tests == 5 for e in effects)
    assert all("uncorrected" in fx.format_points(e) for e in effects)
    # one factor far clearer than the rest survives Holm alone
    values = five_factors()
    values["dropout-off"] = {s: v - 0.05 + 0.001 * s for s, v in values["base"].items()}
    effects = [e for e in fx.compute_effects(ablation_trials(values)) if e.diff]
    assert [e.variant for e in effects if e.significant] == ["dropout-off"]


def test_runs_on_the_search_seeds_are_left_out() -> None:
    values = {"base": {0: 0.60, 1: 0.50, 2: 0.52}, "dropout-off": {0: 0.40, 1: 0.49, 2: 0.50}}
    effects = fx.compute_effects(ablation_trials(values), exclude_seeds=[0])
    assert [e.n for e in effects] == [2, 2]
    assert effects[1].diff == pytest.approx(-0.015)


def test_the_factor_that_matters_most_survives_holm(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'wrn.db'}"
    search = optuna.create_study(study_name="wrn28_10", storage=storage, direction="maximize")
    search.set_user_attr("kind", "search")
    search.set_user_attr("settings", SEARCH_SETTINGS)
    config = {"depth": 10, "width": 1, "epochs": 2, "seed": 0}
    search.add_trial(create_trial(value=0.6, user_attrs={"config": config}))
    ablation = optuna.create_study(
        study_name="wrn28_10-ablation", storage=storage, direction="maximize"
    )
    settings = AblationSettings(
        "wrn28_10", base_trial=0, epochs=2, factors={k: 0.0 for k in FACTORS},
        seeds=[1, 2, 3, 4], search_seeds=[0],
    )  # fmt: skip
    for key, value in settings.study_attrs().items():
        ablation.set_user_attr(key, value)
    values = five_factors()
    values["base"][0] = 0.7  # a replay of the search's winner: never part of the answer
    for trial in ablation_trials(values):
        ablation.add_trial(trial)
    (data,) = collect(optuna.storages.get_storage(storage), None, storage)
    assert data.ablation is not None and data.ablation.base_effect.n == 4
    words = ablation_words(data)
    assert words is not None and "matters most" not in words and "costs" not in words
    assert "Holm p=" in words


def test_ablation_seeds_are_disjoint_from_the_search() -> None:
    assert plan.ablation_seeds({0}, 0, 3) == [1, 2, 3]
    assert plan.ablation_seeds({0, 1, 3}, 0, 2) == [2, 4]
    assert plan.ablation_seeds({SEED_LIMIT - 1}, SEED_LIMIT - 1, 2) == [0, 1]


def test_a_factor_near_off_is_skipped_with_its_reason() -> None:
    space = load_space("wrn28_10")
    assert plan.near_off(0.0007, 0.0, space.params["dropout"])  # 0.14 % of [0, 0.5]
    assert not plan.near_off(0.01, 0.0, space.params["dropout"])  # 2 %
    decay = space.params["weight_decay"]  # log range 1e-4 to 1e-3; off is 1e-4
    assert plan.near_off(1.01e-4, 1e-4, decay) and not plan.near_off(1.1e-4, 1e-4, decay)
    assert not plan.near_off(0.0007, 0.0, None)  # no range: only an exact off is off
    recipe = {**space.recipe, "depth": 10, "width": 1, "dataset": "synthetic"}
    base = TrainConfig.from_flat({**recipe, "dropout": 0.0007, "first_dropout": 0.0})
    variants, skipped = plan.plan_variants(base, space.ablation, space.params)
    assert "dropout-off" not in {v.name for v in variants}
    assert "0.0007 in the base is within 1% of the searched range [0, 0.5]" in skipped["dropout"]
    settings = AblationSettings("x", skipped=list(skipped), skip_reasons=skipped)
    assert "dropout (0.0007 in the base" in fx.skipped_words(settings)
