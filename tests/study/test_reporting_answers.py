"""The report's answers on studies built directly with Optuna (no training): does the ranking
hold, partial ablations, a single study, device-time labels, colours, and ``--out`` checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from study.reporting import ranking
from study.reporting.data import RankPoint, collect
from study.reporting.page import render

DIST = {"dropout": FloatDistribution(0.0, 0.5)}
SETTINGS = {
    "space": {"name": "wrn28_10", "search": {"epochs": 30}},
    "fixed": {"depth": 10, "width": 1},
    "epochs": 2,
    "recipe_epochs": 200,
    "dataset": "synthetic",
    "val_size": 500,
    "seed": 0,
    "pruner": "median",
    "sampler": "tpe",
}


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


def test_rank_correlation_and_its_bootstrap_interval() -> None:
    same = [RankPoint(i, 0.1 * i, (0.2 * i, 0.2 * i + 0.01), 6) for i in range(1, 6)]
    spearman, kendall = ranking.rank_correlations(same)
    assert spearman.name == "Spearman" and kendall.name == "Kendall"
    assert spearman.value == pytest.approx(1.0) and kendall.value == pytest.approx(1.0)
    # every resample keeps the order
    assert spearman.low == pytest.approx(1.0) and spearman.high == pytest.approx(1.0)
    reversed_ = [RankPoint(p.trial, -p.val_acc, p.test_accs, 6) for p in same]
    assert [c.value for c in ranking.rank_correlations(reversed_)] == pytest.approx([-1, -1])
    mixed = [RankPoint(i, v, (t,), 6) for i, (v, t) in enumerate(
        [(0.1, 0.3), (0.2, 0.1), (0.3, 0.5), (0.4, 0.2), (0.5, 0.6), (0.6, 0.4)]
    )]  # fmt: skip
    first, again = ranking.rank_correlations(mixed), ranking.rank_correlations(mixed)
    assert first == again  # seeded: the same interval every time
    for c in first:
        assert c.low is not None and c.low < c.value < c.high and c.low >= -1 and c.high <= 1
    assert ranking.rank_correlations(same[:2]) == []  # two points always correlate at ±1


def test_the_ranking_section_says_whether_the_winner_holds(tmp_path: Path) -> None:
    storage = url(tmp_path)
    search_study(storage, [0.30, 0.50, 0.40, 0.20])  # trial 1 wins the search
    rerun_study(storage, "wrn28_10", {1: [0.60, 0.62], 2: [0.70, 0.72], 0: [0.50, 0.52]})
    page, answers = page_of(storage)
    assert 'id="fig-ranking-wrn28_10"' in page and 'data-table="ranking-wrn28_10"' in page
    said = " ".join(answers)
    assert "search winner, trial 1, is not the winner at 6 epochs: trial 2 reaches" in said
    assert "Spearman" in said and "Kendall" in said and "95% bootstrap CI" in said

    storage2 = f"sqlite:///{tmp_path / 'b.db'}"
    search_study(storage2, [0.30, 0.50, 0.40])
    rerun_study(storage2, "wrn28_10", {1: [0.70], 2: [0.60]})
    _, answers = page_of(storage2)
    assert any("trial 1, is still the winner at 6 epochs" in a for a in answers)

    storage3 = f"sqlite:///{tmp_path / 'c.db'}"
    search_study(storage3, [0.30, 0.50, 0.40])
    rerun_study(storage3, "wrn28_10", {1: [0.70], 2: [0.70], 0: [0.50]})
    _, answers = page_of(storage3)
    assert any("trial 1, ties for the lead at 6 epochs: test acc 0.7000, as trial(s) 2" in a
               for a in answers)  # fmt: skip


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
