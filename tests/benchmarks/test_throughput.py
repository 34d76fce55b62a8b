import json
from pathlib import Path

import pytest

from benchmarks import acceptance_parts, throughput, throughput_trials
from benchmarks.throughput import main
from benchmarks.throughput_core import forward_flops, idle_fraction, slug
from wrn.model import WideResNet

PATHS = ["model-only", "gpu", "cpu-albumentations", "seed-baseline"]
LIGHT_PATHS = ["model-only", "gpu", "cpu-randaugment", "seed-baseline"]
ROW_KEYS = {
    "model",
    "path",
    "images_per_s",
    "s_per_epoch",
    "mfu",
    "peak_mem_gib",
    "gpu_idle_frac",
    "steps",
    "warmup_steps",
    "quick",
    "depth",
    "width",
    "batch_size",
}


@pytest.mark.slow  # the whole benchmark, quick sizes
def test_quick_cpu_run_writes_json_and_markdown(tmp_path: Path) -> None:
    argv = ["--device", "cpu", "--quick", "--out", str(tmp_path), "--steps", "1", "--warmup", "0"]
    assert main([*argv, "--images", "32", "--batch-size", "16"]) == 0
    (json_path,) = tmp_path.glob("*.json")
    report = json.loads(json_path.read_text())
    assert json_path.with_suffix(".md").is_file()
    assert json_path.name == f"{report['date']}-{slug(report['device'])}.json"
    assert report["command"].startswith("python -m benchmarks.throughput --device cpu --quick")
    assert report["quick"] is True and report["peak_tflops"] > 0
    rows = report["rows"]
    assert [(r["model"], r["path"]) for r in rows] == [
        *(("wrn28_10", p) for p in PATHS),
        *(("light", p) for p in LIGHT_PATHS),
    ]
    for row in rows:
        assert row.keys() >= ROW_KEYS
        assert row["quick"] is True and row["depth"] == 10  # the stand-ins, labelled
        assert row["batch_size"] == 16
        assert row["images_per_s"] > 0 and row["mfu"] > 0
        assert row["peak_mem_gib"] is None and row["gpu_idle_frac"] is None  # CPU
    trials = report["trials"]
    assert set(trials["trial_start_s"]) == set(trials["process_warmup_s"]) == {"wrn28_10", "light"}
    assert trials["errors"] == {} and trials["memory"] is None  # memory: CUDA only
    table = json_path.with_suffix(".md").read_text()
    assert report["device"] in table and report["command"] in table
    assert table.count("| wrn28_10 |") == 4 and table.count("| light |") == 4


def test_forward_flops_counts_every_conv_and_linear() -> None:
    def conv(out_side: int, c_in: int, c_out: int, k: int) -> int:
        return out_side**2 * c_out * c_in * k * k * 2

    expected = (
        conv(32, 3, 16, 3)  # stem
        + 2 * conv(32, 16, 16, 3)  # stage 1 (WRN-10-1: one block per stage, no projection)
        + conv(16, 16, 32, 3) + conv(16, 32, 32, 3) + conv(16, 16, 32, 1)  # stage 2
        + conv(8, 32, 64, 3) + conv(8, 64, 64, 3) + conv(8, 32, 64, 1)  # stage 3
        + 2 * 64 * 100 + 100  # linear with bias
    )  # fmt: skip
    assert forward_flops(WideResNet(depth=10, width=1)) == expected
    # WRN-28-10: the well-known ~5.25 GMACs per 32x32 image
    assert 10.4e9 < forward_flops(WideResNet(depth=28, width=10)) < 10.6e9


def test_idle_fraction_merges_overlapping_work() -> None:
    assert idle_fraction(0, 10, []) == 1.0
    assert idle_fraction(0, 10, [(1, 3), (2, 4), (6, 7)]) == 0.6
    assert idle_fraction(0, 10, [(-5, 2), (9, 20)]) == 0.7
    assert idle_fraction(0, 10, [(0, 10), (2, 3)]) == 0.0


def test_memory_check_runs_on_cpu_with_resident_memory() -> None:
    from benchmarks.throughput import recipe
    from benchmarks.throughput_trials import memory_check
    from wrn.data import make_synthetic

    settings = quick_settings(trials=2, models=("wrn28_10",))
    data, _ = make_synthetic(100, 32, 1)
    memory = memory_check(recipe("wrn28_10", settings), data, settings)
    assert memory["measure"] == "process_rss" and memory["trials"] == 2
    assert len(memory["allocated_gib"]) == len(memory["peak_gib"]) == 2
    assert all(v > 0 for v in memory["allocated_gib"])
    assert isinstance(memory["flat"], bool)


def test_trial_start_is_a_later_trials_and_the_first_ones_extra_is_the_process_warmup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the process's first trial carries the augmentation's compile and cuDNN autotuning
    took = iter([7.5, 1.25])
    monkeypatch.setattr(
        throughput_trials, "start_to_first_step", lambda *a: (next(took), object(), object())
    )
    start = throughput_trials.trial_start(None, None, quick_settings())  # type: ignore[arg-type]
    assert start == {"trial_start_s": 1.25, "process_warmup_s": 6.25}


def quick_settings(**changes: object) -> "throughput.Settings":
    import torch

    values = {
        "device": torch.device("cpu"), "quick": True, "compile": False, "steps": 1, "warmup": 0,
        "images": 32, "trials": 1, "profile_steps": 0, "models": ("wrn28_10", "light"),
        "batch_size": 16,
    }  # fmt: skip
    return throughput.Settings(**{**values, **changes})


def test_one_failing_row_or_start_loses_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The acceptance run's throughput part: a seed-baseline row that cannot import its
    augmentation library and one model's failing trial start leave every other row, start
    and target in place, each failure recorded where it happened."""

    def run_path(path: str, model: str, *args: object) -> dict:
        if path == "seed-baseline":
            raise ImportError("No module named 'albumentations'")
        figures = {"images_per_s": 100.0, "s_per_epoch": 450.0, "mfu": 0.1}
        return {"model": model, "path": path, **figures, "compile": False}

    def trial_start(cfg, data, settings) -> dict:
        if cfg.model.width == 2:  # light's stand-in, WRN-10-2
            raise RuntimeError("CUDA error: out of memory\nmore lines")
        return {"trial_start_s": 0.5, "process_warmup_s": 2.0}

    monkeypatch.setattr(throughput, "run_path", run_path)
    monkeypatch.setattr(throughput, "trial_start", trial_start)
    emitted: dict = {}
    opts = acceptance_parts.Options(torch_device("cpu"), quick=True)
    acceptance_parts.throughput_part(opts, emitted.update)
    rows = {(r["model"], r["path"]): r for r in emitted["throughput"]}
    paths = acceptance_parts.EAGER_PATHS
    assert set(rows) == {(m, p) for m in ("wrn28_10", "light") for p in paths}
    assert rows["light", "gpu"]["images_per_s"] == 100.0  # after wrn28_10's failed row
    for model in ("wrn28_10", "light"):
        failed = rows[model, "seed-baseline"]
        assert failed["images_per_s"] is None and failed["depth"] == 10
        assert failed["error"] == "ImportError: No module named 'albumentations'"
    assert emitted["trial_start_s"] == {"wrn28_10": 0.5}
    assert emitted["process_warmup_s"] == {"wrn28_10": 2.0}
    assert emitted["trial_start_errors"] == {"light": "RuntimeError: CUDA error: out of memory"}


def torch_device(name: str) -> "object":
    import torch

    return torch.device(name)
