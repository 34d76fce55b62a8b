"""Replaying pruners on a table of complete learning curves (see benchmarks/search_quality.py).

A replay is what a sequential study would have done had it drawn the table's configurations in
one given order: each trial is asked from an in-memory Optuna study with the pruner under test,
reports its recorded validation accuracy epoch by epoch (step = epoch, from 1) and stops when
``should_prune`` says so, exactly as ``study.objective`` does, or finishes with its final
accuracy as the value. No training happens here, so hundreds of orders take seconds.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.pruners import BasePruner, NopPruner

from benchmarks.search_quality import TABLE_KIND, UsageError, _write_json, result_paths
from study.pruning import (
    EXTRA_WAIT_FRAC,
    HYPERBAND_REDUCTION,
    GuardedHyperbandPruner,
    GuardedMedianPruner,
    build_pruner,
    default_wait_epochs,
    peak_epoch,
)


def legacy_first_epoch(epochs: int) -> int:
    """The first epoch the old default median judged (a sixth of the run, at least 2)."""
    return 1 + max(1, epochs // 6)


def legacy_pruner(kind: str, *, epochs: int, startup_trials: int = 5) -> BasePruner:
    """The pruners before schedule-aware pruning, for the replay to compare against: median
    from :func:`legacy_first_epoch` and Hyperband with ``min_resource=1``."""
    if kind == "median":
        return GuardedMedianPruner(
            final_epoch=epochs,
            n_startup_trials=startup_trials,
            n_warmup_steps=legacy_first_epoch(epochs),
        )
    if kind == "hyperband":
        return GuardedHyperbandPruner(
            final_epoch=epochs,
            min_resource=1,
            max_resource=epochs,
            reduction_factor=HYPERBAND_REDUCTION,
        )
    raise ValueError(f"no legacy pruner {kind!r} (median, hyperband)")


@dataclass(frozen=True)
class Candidate:
    """A pruner under test: ``make`` builds a fresh one for each replayed order."""

    name: str
    default: bool
    make: Callable[[], BasePruner]
    first_epoch: int | None  # earliest epoch it may prune (Hyperband: its first rung)


@dataclass(frozen=True)
class Row:
    pruner: str
    default: bool
    first_epoch: int | None
    epochs_saved_frac: float  # of the epochs an unpruned search trains
    regret: float  # mean over orders of best final accuracy lost, percentage points
    regret_max: float  # worst order's regret, percentage points
    best_survives_frac: float  # orders in which the table's best configuration finished
    finished_mean: float  # trials finished per order


def candidates(epochs: int, warmup_frac: float, startup_trials: int) -> list[Candidate]:
    """No pruning, the default, the old defaults, the other kinds, and the default's median
    with each possible first epoch from the LR peak on (to choose the extra wait)."""
    first = default_wait_epochs(epochs, warmup_frac) + 1  # the default's first judged epoch
    peak = peak_epoch(epochs, warmup_frac)
    old_first = legacy_first_epoch(epochs)

    def built(kind: str, warmup: int | None = None) -> Callable[[], BasePruner]:
        return lambda: build_pruner(
            kind,
            epochs=epochs,
            warmup_frac=warmup_frac,
            startup_trials=startup_trials,
            wait_epochs=warmup,
        )

    rows = [
        Candidate("none", False, NopPruner, None),
        Candidate(f"median from epoch {first}", True, built("median"), first),
        Candidate(
            f"old median from epoch {old_first}",
            False,
            lambda: legacy_pruner("median", epochs=epochs, startup_trials=startup_trials),
            old_first,
        ),
        Candidate(
            "old hyperband min_resource 1",
            False,
            lambda: legacy_pruner("hyperband", epochs=epochs),
            1,
        ),
        Candidate(f"hyperband min_resource {first}", False, built("hyperband"), first),
        Candidate(f"percentile 75 from epoch {first}", False, built("percentile"), first),
        Candidate(f"patient median from epoch {first}", False, built("patient"), first),
    ]
    for other in range(peak, epochs):  # the candidates for the default's extra wait
        if other != first:
            name = f"median from epoch {other}"
            rows.append(Candidate(name, False, built("median", other - 1), other))
    return rows


def replay_order(
    curves: Sequence[Sequence[float]], order: Sequence[int], pruner: BasePruner, name: str
) -> tuple[int, list[int]]:
    """Epochs trained and the indices of the trials that finished, for one trial order."""
    study = optuna.create_study(
        study_name=name,  # Hyperband assigns brackets by a hash of study name and trial number
        direction="maximize",
        pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    spent = 0
    finished: list[int] = []
    for index in order:
        trial = study.ask()
        curve = curves[index]
        for epoch, acc in enumerate(curve, start=1):
            trial.report(acc, epoch)
            spent += 1
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, curve[-1])
            finished.append(index)
    return spent, finished


def replay(
    curves: Sequence[Sequence[float]], candidate: Candidate, orders: Sequence[Sequence[int]]
) -> Row:
    """One pruner over every order."""
    finals = [c[-1] for c in curves]
    best = max(finals)
    best_set = {i for i, f in enumerate(finals) if f == best}  # ties: any of them counts
    total = sum(len(c) for c in curves)
    spent_sum, regrets, survives, finished_sum = 0, [], 0, 0
    for k, order in enumerate(orders):
        spent, finished = replay_order(curves, order, candidate.make(), f"replay-{k}")
        spent_sum += spent
        finished_sum += len(finished)
        regrets.append(100.0 * (best - max(finals[i] for i in finished)))
        survives += bool(best_set & set(finished))
    n = len(orders)
    return Row(
        pruner=candidate.name,
        default=candidate.default,
        first_epoch=candidate.first_epoch,
        epochs_saved_frac=round(1.0 - spent_sum / (n * total), 4),
        regret=round(sum(regrets) / n, 3),
        regret_max=round(max(regrets), 3),
        best_survives_frac=round(survives / n, 4),
        finished_mean=round(finished_sum / n, 2),
    )


def read_table(path: Path) -> dict[str, Any]:
    """A table written by ``benchmarks.search_quality``; UsageError if it is not one."""
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a JSON table ({type(err).__name__})") from None
    if not isinstance(table, dict) or table.get("kind") != TABLE_KIND:
        raise UsageError(f"{path}: not a search-quality table (kind {TABLE_KIND!r})")
    curves = [t.get("curve") for t in table.get("trials", [])]
    epochs = table.get("epochs")
    if len(curves) < 2 or any(not isinstance(c, list) or len(c) != epochs for c in curves):
        raise UsageError(f"{path}: needs at least 2 trials, each with a curve of {epochs} epochs")
    return table


def replay_rows(
    table: dict[str, Any], *, orders: int, startup_trials: int, seed: int = 0
) -> list[Row]:
    """Every candidate pruner replayed over the same ``orders`` random trial orders."""
    if orders < 1:
        raise UsageError(f"--orders must be >= 1, got {orders}")
    curves = [t["curve"] for t in table["trials"]]
    rng = random.Random(seed)
    perms = [rng.sample(range(len(curves)), len(curves)) for _ in range(orders)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return [
            replay(curves, c, perms)
            for c in candidates(table["epochs"], table["warmup_frac"], startup_trials)
        ]


def replay_table(
    path: Path, *, orders: int, startup_trials: int, out_dir: Path
) -> tuple[Path, Path]:
    """Replay every candidate on the table at ``path``; write the JSON and markdown results."""
    table = read_table(path)
    rows = replay_rows(table, orders=orders, startup_trials=startup_trials)
    device = table.get("device", "unknown")
    json_path, md_path = result_paths(out_dir, device)
    meta = {k: v for k, v in table.items() if k != "trials"}
    finals = [t["curve"][-1] for t in table["trials"]]
    result = {
        "table": str(path),
        "table_meta": meta,
        "trials": len(finals),
        "best_final_acc": max(finals),
        "orders": orders,
        "startup_trials": startup_trials,
        "extra_wait_frac": EXTRA_WAIT_FRAC,
        "rows": [asdict(r) for r in rows],
    }
    _write_json(json_path, result)
    md_path.write_text(markdown(result))
    return json_path, md_path


def markdown(result: dict[str, Any]) -> str:
    meta = result["table_meta"]
    lines = [
        f"# Search quality: pruners replayed on {result['trials']} learning curves",
        "",
        f"Space `{meta['space']}` with {meta.get('fixed')}, {meta['epochs']} epochs per trial "
        f"(LR peak at epoch {peak_epoch(meta['epochs'], meta['warmup_frac'])}), "
        f"{meta.get('train_images')} training / {meta.get('val_images')} validation images "
        f"from `{meta.get('data_dir')}`, on {meta.get('device')} "
        f"({meta.get('threads')} thread). Best final validation accuracy "
        f"{100 * result['best_final_acc']:.2f} %. {result['orders']} random trial orders, "
        f"{result['startup_trials']} startup trials.",
        "",
        f"Table: `{meta.get('command')}`",
        "",
        "| pruner | default | first prune epoch | epochs saved | regret (pts) | worst regret "
        "| best survives | finished / order |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        first = "-" if r["first_epoch"] is None else str(r["first_epoch"])
        lines.append(
            f"| {r['pruner']} | {'yes' if r['default'] else ''} | {first} "
            f"| {100 * r['epochs_saved_frac']:.1f} % | {r['regret']:.2f} | {r['regret_max']:.2f} "
            f"| {100 * r['best_survives_frac']:.0f} % | {r['finished_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"
