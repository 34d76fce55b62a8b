import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks import acceptance
from benchmarks.acceptance_parts import (
    FASHION_FILES,
    PARTS,
    _read_idx,
    fashion_to_cifar,
    find_fashion_gz,
    table_row,
)
from benchmarks.acceptance_report import REPORT_KEYS, check_targets, merge, write_report
from benchmarks.kill_resume import compare_values, fixed
from wrn.datasets import load

TARGET_NAMES = {
    "wrn28_10_images_per_s",
    "wrn28_10_vs_seed",
    "light_images_per_s",
    "wrn28_10_gpu_vs_model_only",
    "light_gpu_vs_model_only",
    "checkpoint_overhead_frac",
    "trial_start_s",
    "memory_flat",
    "trials_lost",
    "resumed_values_equal",
    "fashion_test_acc",
}


def write_idx(folder: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """Tiny Fashion-MNIST-shaped idx .gz files: each class a bright band at its own rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    made = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 6] = 250
        images_name, labels_name = FASHION_FILES[split]
        header = (2051).to_bytes(4, "big") + b"".join(x.to_bytes(4, "big") for x in (n, 28, 28))
        (folder / images_name).write_bytes(gzip.compress(header + images.tobytes()))
        header = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
        (folder / labels_name).write_bytes(gzip.compress(header + labels.tobytes()))
        made[split] = images
        made[f"{split}_labels"] = labels
    return made


def fake_report(**changes: Any) -> dict[str, Any]:
    rows = [
        ("wrn28_10", "model-only", 11_000.0),
        ("wrn28_10", "gpu", 10_600.0),
        ("wrn28_10", "seed-baseline", 3_000.0),
        ("light", "model-only", 33_000.0),
        ("light", "gpu", 32_000.0),
        ("light", "seed-baseline", 8_000.0),
        ("light", "gpu+compile", 40_000.0),
    ]
    report: dict[str, Any] = {
        "device": "NVIDIA H100 80GB HBM3",
        "device_type": "cuda",
        "torch": "2.11.0",
        "command": "python -m benchmarks.acceptance",
        "date": "2026-11-23",
        "quick": False,
        "budget_s": 540,
        "elapsed_s": 400.0,
        "throughput": [
            {"model": m, "path": p, "images_per_s": v, "mfu": 0.4, "peak_mem_gb": 9.5}
            for m, p, v in rows
        ],
        "trial_start_s": {"wrn28_10": 2.1, "light": 1.4},
        "memory_over_trials": {"flat": True, "allocated_gib": [0.1] * 20},
        "checkpoint_overhead_frac": 0.012,
        "checkpoint_overhead": {"epoch_s_with": [4.6, 4.6, 4.7]},
        "kill_resume": {"device": "cuda:0", "trials_lost": 0, "values_equal": True},
        "real_data": {"dataset": "fashion-mnist", "test_acc": 0.9531, "seconds": 80.0},
        "targets": [],
        "errors": {},
        "parts": {"throughput": {"seconds": 50.0, "budget_s": 120, "status": "ok"}},
    }
    report.update(changes)
    return report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in check_targets(report)}


def test_targets_pass_on_good_numbers() -> None:
    checks = by_name(fake_report())
    assert set(checks) == TARGET_NAMES
    assert all(t["passed"] is True for t in checks.values()), checks
    assert checks["wrn28_10_vs_seed"]["value"] == pytest.approx(10_600 / 3_000)
    assert checks["trial_start_s"]["value"] == 2.1  # the slowest recipe


def test_targets_fail_on_bad_numbers_and_report_missing_ones() -> None:
    report = fake_report(checkpoint_overhead_frac=0.05, trial_start_s={"a": 1.0, "b": 3.0})
    report["throughput"][1]["images_per_s"] = 9_000.0  # wrn28_10 gpu: < 10k, > 5 % off
    report["kill_resume"] = {"trials_lost": 1, "values_equal": False}
    report["memory_over_trials"] = {"flat": False}
    report["real_data"] = None  # the part failed
    checks = by_name(report)
    failed = {name for name, t in checks.items() if t["passed"] is False}
    assert failed == {
        "wrn28_10_images_per_s",
        "wrn28_10_gpu_vs_model_only",
        "checkpoint_overhead_frac",
        "trial_start_s",
        "memory_flat",
        "trials_lost",
        "resumed_values_equal",
    }
    assert checks["fashion_test_acc"] == {**checks["fashion_test_acc"], "passed": None}
    empty = by_name(fake_report(throughput=[], trial_start_s=None))
    assert empty["light_images_per_s"]["passed"] is None
    assert empty["wrn28_10_vs_seed"]["value"] is None


def test_writers_name_the_files_and_show_every_target(tmp_path: Path) -> None:
    report = fake_report(errors={"compiled": "over its 180 s budget: stopped"})
    report["real_data"] = None
    json_path, md_path = write_report(report, tmp_path / "results")
    assert json_path.name == "2026-11-23-nvidia-h100-80gb-hbm3-acceptance.json"
    assert md_path == json_path.with_suffix(".md")
    saved = json.loads(json_path.read_text())
    assert {t["name"] for t in saved["targets"]} == TARGET_NAMES
    table = md_path.read_text()
    assert report["device"] in table and report["command"] in table and "2.11.0" in table
    assert "10 of 11 passed" in table and "not measured" in table
    assert "| light | – | gpu+compile | 40,000 | 40.0% | 9.50 |" in table
    assert "`compiled`: over its 180 s budget: stopped" in table
    assert not list(tmp_path.glob("results/*.tmp"))


def test_failed_rows_and_starts_are_listed_and_lose_only_their_targets(tmp_path: Path) -> None:
    report = fake_report(trial_start_errors={"light": "RuntimeError: CUDA error"})
    baseline = report["throughput"][2]
    baseline.update(images_per_s=None, mfu=None, error="ImportError: no albumentations")
    checks = by_name(report)
    assert checks["wrn28_10_vs_seed"]["passed"] is None  # not measured, not failed
    assert checks["wrn28_10_images_per_s"]["passed"] is True
    _, md_path = write_report(report, tmp_path)
    table = md_path.read_text()
    assert "| wrn28_10 | – | seed-baseline | error |" in table
    assert "`throughput wrn28_10 seed-baseline`: ImportError: no albumentations" in table
    assert "`trial start light`: RuntimeError: CUDA error" in table


def test_merge_appends_throughput_rows_and_sets_other_keys() -> None:
    report = fake_report()
    merge(report, {"throughput": [{"model": "light", "path": "model-only+compile"}]})
    merge(report, {"real_data": {"test_acc": 0.9}})
    assert len(report["throughput"]) == 8 and report["real_data"] == {"test_acc": 0.9}


def test_fashion_conversion_matches_the_cifar_layout(tmp_path: Path) -> None:
    made = write_idx(tmp_path / "gz", 40, 20)
    assert find_fashion_gz(tmp_path / "gz") == tmp_path / "gz"
    assert fashion_to_cifar(tmp_path / "gz", tmp_path / "data") == {"train": 40, "test": 20}
    train, test = load("cifar100", tmp_path / "data", download=False)
    assert train.images.shape == (40, 32, 32, 3) and test.images.shape == (20, 32, 32, 3)
    keep = np.random.default_rng(0).permutation(40)  # fashion-cifar's fixed order
    assert (train.labels == made["train_labels"][keep]).all()
    for channel in range(3):  # grey copied to R, G and B, padded by 2 on each side
        assert (train.images[:, 2:30, 2:30, channel] == made["train"][keep]).all()
    assert (train.images[:, :2] == 0).all() and (train.images[:, :, 30:] == 0).all()
    assert fashion_to_cifar(tmp_path / "gz", tmp_path / "sub", 8, 4) == {"train": 8, "test": 4}
    sub, _ = load("cifar100", tmp_path / "sub", download=False)
    assert (sub.labels == made["train_labels"][keep[:8]]).all()


def test_fashion_files_are_checked(tmp_path: Path) -> None:
    write_idx(tmp_path, 4, 4)
    images, labels = FASHION_FILES["train"]
    with pytest.raises(ValueError, match="not an idx3 file"):
        _read_idx(tmp_path / labels, images=True)
    (tmp_path / images).write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot read"):
        _read_idx(tmp_path / images, images=True)
    (tmp_path / labels).unlink()
    with pytest.raises(FileNotFoundError, match="no Fashion-MNIST files"):
        find_fashion_gz(tmp_path)


def test_compare_values_reports_exact_and_tolerant_equality() -> None:
    same = compare_values([0.5, 0.6], [0.5, 0.6], 0.0)
    assert same["values_exactly_equal"] and same["values_equal"] and same["max_abs_diff"] == 0
    close = compare_values([0.5, 0.604], [0.5, 0.6], 0.005)
    assert not close["values_exactly_equal"] and close["values_equal"]
    assert close["max_abs_diff"] == pytest.approx(0.004)
    assert not compare_values([0.5, 0.61], [0.5, 0.6], 0.005)["values_equal"]
    assert not compare_values([0.5], [0.5, 0.6], 1.0)["values_equal"]  # an epoch missing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--quick", "--fashion-set", "bogus=1"], "unknown config key"),
        (["--quick", "--fashion-set", "lr=-1"], "lr: must be > 0"),
        (["--quick", "--fashion-gz", "/nonexistent/fashion"], "not a directory"),
        (["--quick", "--fashion-epochs", "0"], "--fashion-epochs must be >= 1"),
        (["--quick", "--parts", "everything"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        acceptance.main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # refused before anything is written


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_full_run_on_cpu_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        acceptance.main([])
    assert exit_info.value.code == 2 and "on CPU use --quick" in capsys.readouterr().err


def test_a_failing_part_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_run_part(name: str, argv: list[str], timeout: float):
        calls.append(name)
        # what was written before this part is already on disk
        (json_path,) = tmp_path.glob("*.json")
        assert set(json.loads(json_path.read_text())["parts"]) == set(calls[:-1])
        if name == "memory":
            return {}, "RuntimeError: CUDA out of memory"
        if name == "kill_resume":
            return {"kill_resume": {"trials_lost": 0}}, "over its 150 s budget: stopped"
        return {"real_data": {"test_acc": 0.5}} if name == "real_data" else {}, None

    monkeypatch.setattr(acceptance, "run_part", fake_run_part)
    assert acceptance.main(["--quick", "--out", str(tmp_path)]) == 0
    assert calls == list(PARTS)
    report = json.loads(next(tmp_path.glob("*-acceptance.json")).read_text())
    assert report["errors"] == {
        "memory": "RuntimeError: CUDA out of memory",
        "kill_resume": "over its 150 s budget: stopped",
    }
    assert report["kill_resume"] == {"trials_lost": 0}  # kept although the part overran
    assert report["real_data"] == {"test_acc": 0.5}
    assert [p["status"] for p in report["parts"].values()] == [
        "ok", "error", "ok", "ok", "error", "ok"
    ]  # fmt: skip


def test_a_part_over_its_budget_is_stopped(tmp_path: Path) -> None:
    result, error = acceptance.run_part("throughput", ["--quick", "--out", str(tmp_path)], 0.5)
    assert result == {} and error == "over its 0.5 s budget: stopped"


def test_parts_left_without_time_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acceptance, "run_part", lambda *a: ({}, None))
    assert acceptance.main(["--quick", "--out", str(tmp_path), "--budget", "5"]) == 0
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert set(report["errors"]) == set(PARTS)
    assert all(e.startswith("skipped") for e in report["errors"].values())


@pytest.mark.slow
def test_quick_run_fills_every_key(tmp_path: Path) -> None:
    write_idx(tmp_path / "gz", 320, 160)
    argv = ["--quick", "--out", str(tmp_path / "out"), "--fashion-gz", str(tmp_path / "gz")]
    assert acceptance.main(argv) == 0
    (json_path,) = (tmp_path / "out").glob("*-acceptance.json")
    assert json_path.with_suffix(".md").is_file()
    report = json.loads(json_path.read_text())
    assert report["errors"] == {}, report["errors"]
    for key in (*REPORT_KEYS, "device", "targets"):
        assert report[key] is not None, key
    assert {(r["model"], r["path"]) for r in report["throughput"]} == {
        *((m, p) for m in ("wrn28_10", "light") for p in ("model-only", "gpu", "seed-baseline")),
        ("wrn28_10", "gpu+compile"),
    }
    assert set(report["trial_start_s"]) == {"wrn28_10", "light"}
    assert report["kill_resume"]["trials_lost"] == 0
    assert report["kill_resume"]["values_equal"] is True  # CPU: exactly repeatable
    assert report["real_data"]["test_acc"] is not None
    assert {t["name"] for t in report["targets"]} == TARGET_NAMES


def test_table_rows_name_compiled_paths_and_use_decimal_gb() -> None:
    row = {"model": "light", "path": "gpu", "images_per_s": 3e4, "mfu": 0.3, "compile": True}
    out = table_row({**row, "peak_mem_gib": 2.0, "depth": 16})
    assert out["path"] == "gpu+compile" and out["depth"] == 16
    assert out["peak_mem_gb"] == pytest.approx(2 * 2**30 / 1e9)
    eager = table_row({**row, "compile": False, "peak_mem_gib": None})
    assert eager["path"] == "gpu" and eager["peak_mem_gb"] is None


def test_a_full_run_picks_cuda_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    parser = acceptance.build_parser()
    opts = acceptance.options(parser.parse_args([]), parser)
    assert opts.device.type == "cuda" and not opts.quick
    opts = acceptance.options(parser.parse_args(["--quick"]), parser)
    assert opts.device.type == "cpu"  # --quick stays on CPU unless --device cuda


def test_fixed_params_round_trip_exactly() -> None:
    from wrn.config import parse_assignment

    params = {"lr": 0.1 + 0.2, "depth": 16, "augmentation": "basic", "nesterov": True}
    flags = fixed(params)
    assert flags[::2] == ["--set"] * 4
    assert dict(parse_assignment(text) for text in flags[1::2]) == params
