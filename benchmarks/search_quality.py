"""A replayable benchmark of the search itself: how much each pruner saves and what it loses.

``python -m benchmarks.search_quality --data-dir DIR --out-table TABLE.json [...]`` trains N
configurations of a space (sampled at random with a seeded ``random.Random``, full epochs, no
pruning) once, on real data, and records each one's complete learning curve (validation
accuracy after every epoch) in a JSON table, written after every configuration, so an
interrupted run resumes where it stopped. ``--train-only`` stops there.

``python -m benchmarks.search_quality --replay TABLE`` then replays schedulers on the table (a
JSON table, or a study storage of this harness trained with ``--pruner none``) in minutes,
asynchronously (benchmarks/search_quality_replay.py, benchmarks/async_replay.py): N simulated
workers (``--workers``, default 1, 4 and 8) run searches of ``--trials`` configurations drawn
from the table with replacement, each epoch costing its recorded seconds, over ``--orders``
random draws; Optuna's pruners decide through ask/tell on an in-memory study, ``promote``
through study.promotion. Per scheduler and N: epochs and simulated hours to within 0.5 points
of the best, regret at 25 / 50 / 100 % of the unpruned compute, how often the best finishes,
with bootstrap intervals over configurations. Results go to
``benchmarks/results/<date>-<device>-search-quality.{json,md,html}``.

Data: a ``cifar-100-python`` folder (CIFAR-100, or Fashion-MNIST written in that layout by
``/work/shared/tools/fashion-cifar OUT_DIR --train N --test N``); the validation split is held
out of its training set. Training never imports ``study``'s commands; only the pruners come from
``study.pruning``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.throughput_core import device_name, slug
from search_spaces import ParamSpec, SearchSpace, SpaceError, load_space
from study.pruning import DEFAULT_STARTUP_TRIALS
from wrn.config import ConfigError, TrainConfig, parse_assignments
from wrn.data import Splits, stratified_split
from wrn.datasets import DataError, load
from wrn.step import resolve_device
from wrn.train import train

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TABLE_KIND = "search-quality-table"


class UsageError(ValueError):
    """Bad input: printed as one line, exit status 2."""


# ------------------------------------------------------------------------------ sampling


def sample_value(spec: ParamSpec, rng: random.Random) -> Any:
    """One value of ``spec``, drawn as a random sampler would (log ranges log-uniformly)."""
    if spec.type == "categorical":
        assert spec.choices is not None
        return rng.choice(spec.choices)
    assert spec.low is not None and spec.high is not None
    if spec.type == "int":
        step = int(spec.step or 1)
        return rng.randrange(int(spec.low), int(spec.high) + 1, step)
    if spec.log:
        return math.exp(rng.uniform(math.log(spec.low), math.log(spec.high)))
    if spec.step is not None:
        return spec.low + spec.step * rng.randint(0, round((spec.high - spec.low) / spec.step))
    return rng.uniform(spec.low, spec.high)


def sample_configs(
    space: SearchSpace, fixed: dict[str, Any], n: int, seed: int
) -> list[dict[str, Any]]:
    """``n`` parameter sets of ``space`` (fixed keys not searched), the same for the same seed."""
    rng = random.Random(seed)
    return [
        {name: sample_value(spec, rng) for name, spec in space.params.items() if name not in fixed}
        for _ in range(n)
    ]


# ------------------------------------------------------------------------------ training


def load_data(data_dir: Path, val_size: int, num_classes: int, seed: int) -> Splits:
    """The training set of ``data_dir/cifar-100-python`` split into train and validation."""
    train_set, _ = load("cifar100", data_dir, download=False)
    train_idx, val_idx = stratified_split(train_set.labels, val_size, seed)
    return Splits(train_set.subset(train_idx), train_set.subset(val_idx), "val", num_classes)


def table_header(args: argparse.Namespace, space: SearchSpace, fixed: dict[str, Any]) -> dict:
    """What identifies a table: resuming with a different one is refused."""
    cfg = space.recipe_config(**{**fixed, "epochs": args.epochs})
    return {
        "kind": TABLE_KIND,
        "space": space.name,
        "epochs": args.epochs,
        "warmup_frac": cfg.optim.warmup_frac,
        "configs": args.configs,
        "seed": args.seed,
        "fixed": fixed,
        "data_dir": str(args.data_dir),
        "val_size": args.val_size,
    }


def train_table(args: argparse.Namespace) -> Path:
    """Train every sampled configuration for full epochs; write the table after each one."""
    space = _load_space(args.space)
    fixed = _parse_sets(args.set)
    if args.epochs < 2:
        raise UsageError(f"--epochs must be >= 2, got {args.epochs}")
    if args.configs < 1:
        raise UsageError(f"--configs must be >= 1, got {args.configs}")
    header = table_header(args, space, fixed)
    out = Path(args.out_table)
    table: dict[str, Any] = {**header, "trials": []}
    if out.exists():
        old = json.loads(out.read_text())
        if {k: old.get(k) for k in header} != header:
            raise UsageError(f"{out}: holds a table of other settings; choose another --out-table")
        table = old
    if args.threads:
        torch.set_num_threads(args.threads)  # leave the machine's other cores to others
    device = resolve_device(args.device)
    base = {**fixed, "epochs": args.epochs, "device": args.device, "seed": args.seed}
    params = sample_configs(space, fixed, args.configs, args.seed)
    try:
        cfgs = [space.recipe_config(**base, **p) for p in params]
        splits = load_data(args.data_dir, args.val_size, cfgs[0].model.num_classes, args.seed)
    except (ConfigError, DataError) as err:
        raise UsageError(str(err)) from None
    table.update(
        device=device_name(device),
        threads=torch.get_num_threads(),
        train_images=len(splits.train),
        val_images=len(splits.eval),
        command=_command(),
    )
    for i in range(len(table["trials"]), len(cfgs)):
        t0 = time.perf_counter()
        result = train(cfgs[i], splits=splits)
        curve = [round(s.eval_acc, 6) for s in result.history]
        table["trials"].append(
            {"params": params[i], "curve": curve, "seconds": round(time.perf_counter() - t0, 1)}
        )
        _write_json(out, table)
        print(f"config {i + 1}/{len(cfgs)}: final {curve[-1]:.4f} {params[i]}", flush=True)
    return out


# ------------------------------------------------------------------------------ output


def result_paths(out_dir: Path, device: str) -> tuple[Path, Path]:
    stem = f"{datetime.date.today().isoformat()}-{slug(device)}-search-quality"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)  # a reader never sees half a table


def _command(argv: Sequence[str] | None = None) -> str:
    """The command line run (``argv``: main's arguments, default the process's)."""
    return "python -m benchmarks.search_quality " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(f"--workers: not comma-separated integers: {text!r}") from None
    return counts


def _load_space(name: str) -> SearchSpace:
    try:
        return load_space(name)
    except SpaceError as err:
        raise UsageError(str(err)) from None


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    try:
        fixed = parse_assignments(list(items))
    except ConfigError as err:
        raise UsageError(str(err)) from None  # names the --set text already
    try:
        TrainConfig.from_flat(fixed)
    except ConfigError as err:
        raise UsageError(f"--set: {err}") from None
    return fixed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.search_quality",
        description="Train N sampled configurations once, then replay pruners on their curves.",
    )
    p.add_argument("--replay", metavar="TABLE", help="replay on this table (JSON or storage)")
    p.add_argument("--train-only", action="store_true", help="write the table, replay nothing")
    p.add_argument("--space", default="light", help="built-in space or .toml path (light)")
    p.add_argument("--data-dir", type=Path, help="holds cifar-100-python/ (CIFAR-100 or Fashion)")
    p.add_argument("--val-size", type=int, default=1000, help="validation images (1000)")
    p.add_argument("--configs", type=int, default=28, help="configurations trained (28)")
    p.add_argument("--epochs", type=int, default=12, help="epochs per configuration (12)")
    p.add_argument("--seed", type=int, default=0, help="sampling, split and training seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1; 0 = torch's)")
    p.add_argument("--out-table", type=Path, help="the table to write (or resume)")
    p.add_argument("--orders", type=int, default=200, help="searches replayed per scheduler (200)")
    p.add_argument(
        "--startup-trials",
        type=int,
        default=DEFAULT_STARTUP_TRIALS,
        help=f"as study.run's default ({DEFAULT_STARTUP_TRIALS})",
    )
    p.add_argument(
        "--workers", default="1,4,8", help="simulated worker counts, comma-separated (1,4,8)"
    )
    p.add_argument(
        "--trials", type=int, default=50, help="configurations per search, as study.run's (50)"
    )
    p.add_argument("--reduction", type=int, default=3, help="promote's and ASHA's eta (3)")
    p.add_argument("--bootstrap", type=int, default=40, help="resampled tables (40; 0: none)")
    p.add_argument(
        "--bootstrap-orders", type=int, default=10, help="searches per resampled table (10)"
    )
    p.add_argument("--label", help="the results' device name (default: the table's device)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    args = p.parse_args(argv)
    if args.replay is None:
        if args.data_dir is None or args.out_table is None:
            p.error("training needs --data-dir and --out-table (or give --replay TABLE.json)")
    elif args.train_only:
        p.error("--train-only and --replay exclude each other")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        table = Path(args.replay) if args.replay else train_table(args)
        if args.train_only:
            return 0
        from benchmarks.search_quality_report import replay_table  # optuna only to replay

        json_path, md_path = replay_table(
            table,
            out_dir=args.out,
            label=args.label,
            command=_command(argv),
            workers=_worker_counts(args.workers),
            trials=args.trials,
            orders=args.orders,
            bootstrap=args.bootstrap,
            per_replicate=args.bootstrap_orders,
            seed=args.seed,
            startup_trials=args.startup_trials,
            reduction=args.reduction,
        )
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(md_path.read_text())
    print(f"wrote {json_path}, {md_path} and {md_path.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
