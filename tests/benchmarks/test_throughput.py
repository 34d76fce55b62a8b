import json
from pathlib import Path

import pytest

from benchmarks.throughput import forward_flops, idle_fraction, main, slug
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
    assert set(trials["start_to_first_step_s"]) == {"wrn28_10", "light"}
    assert trials["memory"] is None  # CUDA only
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
    import torch

    from benchmarks.throughput import Settings, memory_check, recipe
    from wrn.data import make_synthetic

    settings = Settings(
        device=torch.device("cpu"),
        quick=True,
        compile=False,
        steps=1,
        warmup=0,
        images=32,
        trials=2,
        profile_steps=0,
        models=("wrn28_10",),
        batch_size=16,
    )
    data, _ = make_synthetic(100, 32, 1)
    memory = memory_check(recipe("wrn28_10", settings), data, settings)
    assert memory["measure"] == "process_rss" and memory["trials"] == 2
    assert len(memory["allocated_gib"]) == len(memory["peak_gib"]) == 2
    assert all(v > 0 for v in memory["allocated_gib"])
    assert isinstance(memory["flat"], bool)
