"""The report's answers on studies built directly with Optuna (no training): does the ranking
hold, partial ablations, a single study, device-time labels, colours, and ``--out`` checks."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from study.records import RerunPoint
from study.reporting import ranking
from study.reporting.data import collect
from study.reporting.page import render
from tests.study.conftest import SEARCH_SETTINGS as SETTINGS

DIST = {"dropout": FloatDistribution(0.0, 0.5)}
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wrn.db'}"


def trial_attrs(device: str = "cpu") -> dict[str, Any]:
    return {
        "device": device,
        "epoch_seconds": [1.5, 1.5],
        "config": {"depth": 10, "width": 1, "epochs": 2},
        "num_params": 79_000,
    }


def search_study(storage: str, values: list[float], name: str = "wrn28_10") -> optuna.Study:
    """A search study with one complete trial per value (dropout = value / 2) and one pruned."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("kind", "search")
    study.set_user_attr("settings", SETTINGS)
    for v in values:
        study.add_trial(
            create_trial(
                value=v,
                params={"dropout": v / 2},
                distributions=DIST,
                intermediate_values={1: v / 2, 2: v},
                user_attrs=trial_attrs(),
            )
        )
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"dropout": 0.01},
            distributions=DIST,
            intermediate_values={1: 0.01},
            user_attrs=trial_attrs(),
        )
    )
    return study


def rerun_study(storage: str, name: str, tests: dict[int, list[float]]) -> None:
    """``NAME-rerun`` as study.rerun records it: one trial per (source trial, seed)."""
    study = optuna.create_study(study_name=f"{name}-rerun", storage=storage, direction="maximize")
    study.set_user_attr("kind", "rerun")
    for source, accs in tests.items():
        for seed, acc in enumerate(accs):
            attrs = {**trial_attrs(), "source_trial": source, "seed": seed, "test_acc": acc}
            attrs["config"] = {**attrs["config"], "epochs": 6}
            study.add_trial(create_trial(value=acc, user_attrs=attrs))


def page_of(storage: str) -> tuple[str, list[str]]:
    studies = collect(optuna.storages.get_storage(storage), None, storage)
    page, _, answers = render(studies, storage)
    return page, answers


def points(val: list[float], test: list[float]) -> list[RerunPoint]:
    return [RerunPoint(i, v, (t,), 6) for i, (v, t) in enumerate(zip(val, test, strict=True))]


def enumerated_p(x: list[float], y: list[float]) -> dict[str, float]:
    """The one-sided permutation p by hand: scipy's coefficient over every order of y."""
    observed = {"Spearman": stats.spearmanr(x, y)[0], "Kendall": stats.kendalltau(x, y)[0]}
    hits = dict.fromkeys(observed, 0)
    orders = list(itertools.permutations(y))
    for order in orders:
        hits["Spearman"] += stats.spearmanr(x, order)[0] >= observed["Spearman"] - 1e-12
        hits["Kendall"] += stats.kendalltau(x, order)[0] >= observed["Kendall"] - 1e-12
    return {k: v / len(orders) for k, v in hits.items()}


def test_a_perfect_order_of_three_reruns_is_one_order_in_six() -> None:
    spearman, kendall = ranking.rank_correlations(points([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]))
    for c in (spearman, kendall):
        assert c.value == pytest.approx(1.0) and c.p == pytest.approx(1 / 6)
        assert c.exact and c.orders == 6
        assert c.low is None and c.high is None  # no interval from 3 trials, least of all +1 to +1
    assert "permutation p = 0.167, exact over all 6 orders" in spearman.words()
    text = ranking.correlation_words(points([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]))
    assert "no interval below 10 trials" in text and "CI" not in text
    assert ranking.rank_correlations(points([0.1, 0.2], [0.5, 0.6])) == []
    assert ranking.rank_correlations(points([0.1, 0.2, 0.3], [0.5, 0.5, 0.5])) == []


@pytest.mark.parametrize("n", [4, 5, 6])
def test_permutation_p_values_match_an_exact_enumeration(n: int) -> None:
    rng = np.random.default_rng(n)
    x = [float(v) for v in rng.random(n)]
    y = [round(a + float(rng.normal(0, 0.3)), 1) for a in x]  # rounded: ties now and then
    y[1] = y[0]  # and at least one
    by_hand = enumerated_p(x, y)
    for c in ranking.rank_correlations(points(x, y)):
        assert c.exact and c.orders == math.factorial(n)
        assert c.p == pytest.approx(by_hand[c.name], abs=1e-12)
    ties = [1.0, 1.0, 2.0, 3.0, 3.0]  # ties on both axes
    by_hand = enumerated_p(ties, [0.2, 0.1, 0.3, 0.3, 0.5])
    for c in ranking.rank_correlations(points(ties, [0.2, 0.1, 0.3, 0.3, 0.5])):
        assert c.p == pytest.approx(by_hand[c.name], abs=1e-12)


@pytest.mark.parametrize("n", [3, 5, 8])
def test_permutation_p_values_match_scipy_exact(n: int) -> None:
    rng = np.random.default_rng(10 + n)
    x = rng.random(n)
    y = x + rng.normal(0, 0.2, n)  # no ties: scipy's exact Kendall applies
    spearman, kendall = ranking.rank_correlations(points(list(x), list(y)))
    assert spearman.value == pytest.approx(stats.spearmanr(x, y)[0])
    assert kendall.value == pytest.approx(stats.kendalltau(x, y)[0])
    exact = stats.kendalltau(x, y, method="exact", alternative="greater").pvalue
    assert kendall.p == pytest.approx(exact, abs=1e-12)
    if n <= 5:  # scipy enumerates every pairing: fast up to 5! orders
        by_scipy = stats.permutation_test(
            (x,),
            lambda a: stats.spearmanr(a, y)[0],
            permutation_type="pairings",
            alternative="greater",
            n_resamples=math.inf,
        ).pvalue
        assert spearman.p == pytest.approx(by_scipy, abs=1e-12)


def test_beyond_eight_trials_random_orders_and_from_ten_an_interval() -> None:
    rng = np.random.default_rng(3)
    x = rng.random(9)
    y = x + rng.normal(0, 0.4, 9)
    first = ranking.rank_correlations(points(list(x), list(y)))
    assert first == ranking.rank_correlations(points(list(x), list(y)))  # a fixed stream
    kendall = first[1]
    assert not kendall.exact and kendall.orders == ranking.RANDOM_ORDERS
    exact = stats.kendalltau(x, y, method="exact", alternative="greater").pvalue
    assert kendall.p == pytest.approx(exact, abs=0.015)  # 20,000 orders: SE below 0.004
    assert kendall.low is None  # 9 trials: still no interval
    x, y = rng.random(12), rng.random(12)
    for c in ranking.rank_correlations(points(list(x), list(y))):
        var, k = ranking.FISHER_VARIANCE[c.name]
        half = 1.959963984540054 * math.sqrt(var / (12 - k))
        assert c.low == pytest.approx(math.tanh(math.atanh(c.value) - half))
        assert c.high == pytest.approx(math.tanh(math.atanh(c.value) + half))
        assert "Fisher z" in c.words()
    perfect = ranking.rank_correlations(points(list(range(10)), list(range(10))))
    assert all(c.low is None for c in perfect)  # a perfect order has no Fisher-z interval


def test_the_ranking_section_says_whether_the_winner_holds(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.30, 0.50, 0.40, 0.20])  # trial 1 wins the search
    rerun_study(storage, "wrn28_10", {1: [0.60, 0.62], 2: [0.70, 0.72], 0: [0.50, 0.52]})
    page, answers = page_of(storage)
    assert 'id="fig-ranking-wrn28_10"' in page and 'data-table="ranking-wrn28_10"' in page
    said = " ".join(answers)
    assert "search winner, trial 1, is not the winner at 6 epochs: trial 2 reaches" in said
    assert "0.7100 ± 0.0141 over 2 seeds vs its 0.6100 ± 0.0141 over 2 seeds" in said
    assert "Kendall +0.33 (permutation p = 0.5, exact over all 6 orders)" in said
    assert "bootstrap" not in page
    assert "Spearman" in said and "Kendall" in said and "no interval below 10 trials" in said


def winner_words(tmp_path: Path, tests: dict[int, list[float]]) -> str:
    storage = f"sqlite:///{tmp_path / f'w{len(list(tmp_path.iterdir()))}.db'}"
    search_study(storage, [0.30, 0.50, 0.40])  # trial 1 wins the search
    rerun_study(storage, "wrn28_10", tests)
    _, answers = page_of(storage)
    return next(a for a in answers if "search winner" in a)


def test_still_the_winner_only_beyond_seed_noise(tmp_path: Path) -> None:
    # a 2-point lead, seeds spread 2.2 points (pooled std): within seed noise, not a winner
    tied = winner_words(tmp_path, {1: [0.70, 0.74], 2: [0.71, 0.69]})
    assert "trial 1, is tied within seed noise with trial(s) 2 at 6 epochs" in tied
    assert "is still the winner at" not in tied and "seeds' pooled std 0.0224" in tied
    won = winner_words(tmp_path, {1: [0.80, 0.81], 2: [0.70, 0.71]})
    assert "trial 1, is still the winner at 6 epochs" in won and "ahead by 10.00 points" in won
    # one seed each: nothing says how far seeds alone move the result
    single = winner_words(tmp_path, {1: [0.70], 2: [0.60]})
    assert "is still the winner at" not in single and "spread is not measured" in single
    assert "0.7000 on 1 seed at 6 epochs vs 0.6000 on 1 seed" in single and "--seeds 2" in single
    # identical results are a tie within seed noise, not a lead
    same = winner_words(tmp_path, {1: [0.70, 0.72], 2: [0.70, 0.72], 0: [0.50, 0.52]})
    assert "tied within seed noise with trial(s) 2 at 6 epochs" in same
    # unequal seed counts: each mean carries its count
    uneven = winner_words(tmp_path, {1: [0.80, 0.81, 0.80], 2: [0.70], 0: [0.60, 0.61]})
    assert "over 3 seeds vs 0.7000 on 1 seed" in uneven
    assert "means over unequal seed counts (1 to 3)" in uneven


def test_a_shorter_rerun_never_replaces_a_full_length_seed(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.30, 0.50])
    rerun_study(storage, "wrn28_10", {1: [0.60, 0.62], 0: [0.50, 0.52]})
    later = optuna.load_study(study_name="wrn28_10-rerun", storage=storage)
    attrs = {**trial_attrs(), "source_trial": 1, "seed": 0, "test_acc": 0.10}
    later.add_trial(create_trial(value=0.10, user_attrs=attrs))  # seed 0 again, 2 epochs
    (studies,) = [collect(optuna.storages.get_storage(storage), None, storage)]
    ranks = {p.trial: p for p in studies[0].ranks}
    assert ranks[1].test_accs == (0.60, 0.62) and ranks[1].seeds == (0, 1)
    assert ranks[1].epochs == 6


def test_without_reruns_the_summary_gives_the_rerun_command(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.3, 0.5])
    _, answers = page_of(storage)
    wanted = f"python -m study.rerun --study-name wrn28_10 --storage {storage} --top 5 --seeds 2"
    assert any("ranking holds at full length is not known yet" in a and wanted in a
               for a in answers)  # fmt: skip


def test_a_single_study_asks_for_the_other_configuration(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.3, 0.5])
    _, answers = page_of(storage)
    line = next(a for a in answers if "Only one search study" in a)
    assert "python -m study.run --space light --trials 3 --dataset synthetic --epochs 2" in line
    assert "--set depth=10 --set width=1" in line and f"--storage {storage}" in line


def test_choosing_one_of_two_studies_asks_for_nothing_more(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.3, 0.5])
    search_study(storage, [0.4], name="light")
    studies = collect(optuna.storages.get_storage(storage), ["wrn28_10"], storage)
    _, _, answers = render(studies, storage)
    assert not any("Only one search study" in a for a in answers)


def test_cpu_runs_are_labelled_cpu_seconds(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.3, 0.5])
    page, answers = page_of(storage)
    assert "CPU-seconds" in " ".join(answers) and "GPU-seconds" not in page


def test_curves_are_one_colour_per_trial_and_parallel_stays_visible(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.3, 0.5, 0.4])
    studies = collect(optuna.storages.get_storage(storage), None, storage)
    from study.reporting.sections import curves_part, parallel_part

    (_, curves), = curves_part(studies).figures  # fmt: skip
    lines = [t for t in curves.data if t.name]
    assert {t.name for t in lines} == {
        "trial 0 (complete)", "trial 1 (complete)", "trial 2 (complete)", "trial 3 (pruned)"
    }  # fmt: skip
    assert len({t.line.color for t in lines}) == 4
    (_, parallel), = parallel_part(studies).figures  # fmt: skip
    # Viridis: neither end of the scale is near-white, so no trial vanishes into the page
    line = parallel.data[0].line
    assert list(line.color) == [0.3, 0.5, 0.4]
    ends = (line.colorscale[0][1], line.colorscale[-1][1])
    assert ends == ("#440154", "#fde725")


def ablation_study(storage: str, variants: dict[str, list[float]], seeds: list[int]) -> None:
    study = optuna.create_study(
        study_name="wrn28_10-ablation", storage=storage, direction="maximize"
    )
    attrs = {
        "kind": "ablation", "source_study": "wrn28_10", "base": "best", "base_trial": 1,
        "epochs": 2, "seeds": seeds, "skipped": ["mixup_prob"],
        "factors": {k: 0.0 for k in ("dropout", "label_smoothing", "weight_decay", "mixup_prob")},
    }  # fmt: skip
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    for variant, values in variants.items():
        key = variant.removesuffix("-off")
        for seed, v in zip(seeds, values, strict=False):
            changed = {} if variant == "base" else {key: [0.3, 0.0]}
            user = {"variant": variant, "seed": seed, "changed": changed}
            study.add_trial(create_trial(value=v, user_attrs=user))


def test_an_unfinished_ablation_says_its_answer_is_partial(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.3, 0.5])
    ablation_study(storage, {"base": [0.50, 0.51], "dropout-off": [0.50, 0.52]}, [0, 1])
    page, answers = page_of(storage)
    line = next(a for a in answers if a.startswith("Ablation of wrn28_10"))
    assert "distinguishable from noise" not in line
    assert "Partial answer: 1 of 3 factors measured" in line
    assert "label_smoothing-off, weight_decay-off" in line
    assert "--seeds 2" in line and "python -m study.ablate --study-name wrn28_10" in line
    assert "Partial: 2 of 4 planned variants" in page
