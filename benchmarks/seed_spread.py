"""Another training seed for a table's best configurations: how far a configuration's final
accuracy moves with its seed, the unit the replay's regret is stated in.

    python -m benchmarks.seed_spread --table TABLE.db --top 10 [--seed 1] [--data-dir DIR]

``TABLE.db`` is a table recorded as studies of this harness (``study.run --pruner none``). The
K best complete trials of its searches are trained again with another training seed, on the
same validation split (the searches' seed splits, as ``study.ablate`` does), as the planned runs
of one study, ``seed-spread``, in the same storage: run the command again (or in a second
process, which takes the runs not yet taken) and it resumes. Repeat it with other ``--seed``
values for more seeds. The replay (``benchmarks.search_quality --replay TABLE.db``) reads the
spread from that study (``seed_spread_of``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import kendalltau

from benchmarks.search_quality import UsageError
from study.records import StudyAttrs, StudyKind, record_command, recorded_config
from study.records import TrialAttrs as A

STUDY = "seed-spread"  # the study of the extra seeds, beside the table's searches


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seed_spread", description=__doc__)
    p.add_argument("--table", type=Path, required=True, help="the table's study storage (.db)")
    p.add_argument("--top", type=int, default=10, help="best configurations to retrain")
    p.add_argument(
        "--seed", type=int, help="training seed (default: the first the table never used)"
    )
    p.add_argument("--data-dir", help="default: the folder the table's trials recorded")
    p.add_argument("--checkpoint-dir", type=Path, help="default: checkpoints/ beside the table")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def best_trials(storage: optuna.storages.BaseStorage, top: int) -> list[tuple[str, FrozenTrial]]:
    """The ``top`` complete trials with full curves of the table's searches, best first."""
    from benchmarks.curve_table import search_studies, trial_curve

    found = [
        (study.study_name, t)
        for study in search_studies(storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if trial_curve(t)[2] is not None
    ]
    return sorted(found, key=lambda st: (-st[1].value, st[0], st[1].number))[:top]


def seed_spread_of(storage: optuna.storages.BaseStorage) -> dict[str, Any] | None:
    """The spread the ``seed-spread`` study measured: the pooled standard deviation (points)
    of a configuration's final accuracy over training seeds, with what it pools; None
    without that study or a configuration with two seeds."""
    from benchmarks.curve_table import search_studies

    if STUDY not in {s.study_name for s in storage.get_all_studies()}:
        return None
    table: dict[tuple[str, int], float] = {}  # each configuration's value in the table
    for study in search_studies(storage):
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            table[(study.study_name, t.number)] = t.value
    others: dict[tuple[str, int], list[float]] = {}  # its values on the other seeds
    spread = optuna.load_study(study_name=STUDY, storage=storage)
    for t in spread.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        source = (t.user_attrs[A.SOURCE_STUDY], t.user_attrs[A.SOURCE_TRIAL])
        if source in table:
            others.setdefault(source, []).append(t.value)
    if not others:
        return None
    seeded = [[table[k], *v] for k, v in others.items()]
    # pooled variance: each configuration's squared deviations from its own mean
    squares = sum(sum((x - statistics.fmean(v)) ** 2 for x in v) for v in seeded)
    dof = sum(len(v) - 1 for v in seeded)
    again = [statistics.fmean(v[1:]) for v in seeded]
    return {
        "sd_points": round(100 * (squares / dof) ** 0.5, 3),
        "configs": len(seeded),
        "runs": sum(map(len, seeded)),
        "largest_gap_points": round(100 * max(max(v) - min(v) for v in seeded), 2),
        # chosen as the table's best on one seed, they score lower on the others (the
        # winner's curse), and their order there may be mostly noise
        "drop_on_other_seeds_points": round(
            100 * statistics.fmean(v[0] - a for v, a in zip(seeded, again, strict=True)), 2
        ),
        "kendall_tau_table_vs_other_seeds": round(
            float(kendalltau([v[0] for v in seeded], again).statistic), 3
        )
        if len(seeded) >= 2
        else None,
    }


def planned(best: Sequence[tuple[str, FrozenTrial]], seed: int, data_dir: str | None) -> list[Any]:
    """One run per configuration: its recorded config with training seed ``seed``."""
    from study.lifecycle import PlannedRun
    from wrn.config import TrainConfig

    runs = []
    for name, trial in best:
        values = {**recorded_config(trial), "seed": seed}
        if data_dir is not None:
            values["data_dir"] = data_dir
        runs.append(
            PlannedRun(
                key=f"{name}/trial-{trial.number}/seed{seed}",
                cfg=TrainConfig.from_flat(values),
                params=dict(trial.params),
                attrs={A.SOURCE_STUDY: name, A.SOURCE_TRIAL: trial.number, A.SEED: seed},
            )
        )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return run(args, argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from study.progress import Progress
    from study.storage import open_storage

    if not args.table.is_file():
        raise UsageError(f"{args.table}: file not found")
    if args.top < 2:
        raise UsageError(f"--top must be >= 2, got {args.top}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{args.table.resolve()}"
    storage = open_storage(url, create=False, heartbeat_interval=60)
    best = best_trials(storage, args.top)
    if len(best) < 2:
        raise UsageError(f"{args.table}: needs at least 2 complete trials of a search")
    used = {int(recorded_config(t)["seed"]) for _, t in best}
    seed = min(set(range(len(used) + 1)) - used) if args.seed is None else args.seed
    if seed in used:
        raise UsageError(f"--seed {seed} is the table's own: pick another")
    if len(used) != 1:
        raise UsageError(f"{args.table}: its best trials trained with seeds {sorted(used)}")
    (split_seed,) = used  # the table's split: every run scores on it
    from study.lifecycle import ClaimLock, Lifecycle, run_planned, splits_loader

    runs = planned(best, seed, args.data_dir)
    study = optuna.create_study(
        storage=storage, study_name=STUDY, direction="maximize", load_if_exists=True
    )
    study.set_user_attr(StudyAttrs.KIND, StudyKind.OTHER.value)
    record_command(study, "benchmarks.seed_spread", argv)
    life = Lifecycle(
        checkpoint_dir=args.checkpoint_dir or args.table.resolve().parent / "checkpoints",
        progress=Progress(quiet=args.quiet),
        claims=ClaimLock(url),
    )
    distributions = {k: v for _, t in best for k, v in t.distributions.items()}
    run_planned(study, storage, runs, distributions, splits_loader(split_seed), life)
    spread = seed_spread_of(storage)
    print(f"seed spread of the {len(best)} best (seed {seed} beside {split_seed}): {spread}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
