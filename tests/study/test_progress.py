import io
import re
from types import SimpleNamespace

import pytest

from study.pace import format_eta, study_eta
from study.progress import Progress

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"


def _batch(epoch: int, batch: int, batches: int = 10, seconds: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(
        epoch=epoch, batch=batch, batches=batches, images=64 * batch, seconds=seconds, loss=4.5
    )


def _two_epoch_trial(progress: Progress) -> None:
    """A resumed study (1 of 3 finished, best 0.31) runs trial 1: 2 epochs of 5 s."""
    progress.study_start("smoke", total=3, finished=1, best=0.31, epochs=2)
    progress.trial_start(1, {"lr": 0.1, "depth": 10})
    for epoch in (1, 2):
        progress.batch(_batch(epoch, 5, seconds=2.5))
        progress.batch(_batch(epoch, 10, seconds=5.0))
        progress.epoch(1, epoch, 2, 0.05 * epoch, 5.0, images_per_s=3210.0)
    progress.trial_end(1, "COMPLETE", 0.45)
    progress.message("saved")
    progress.close()


def test_without_a_tty_every_epoch_and_trial_is_a_timestamped_line() -> None:
    out = io.StringIO()
    _two_epoch_trial(Progress(stream=out))  # StringIO is not a terminal
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert all(re.match(STAMP + " ", line) for line in lines), lines
    # the resumed study's best comes from the caller (the storage), not "-"
    assert re.search(r"smoke: 1 of 3 trials finished, best 0\.3100", lines[0])
    assert re.search(r"trial 1 start: lr=0\.1, depth=10$", lines[1])
    # epoch 1: (2 trials left x 2 epochs - 1 done) x 5 s = 15 s
    assert lines[2].endswith(
        "trial 1 epoch 1/2 val_acc 0.0500 (5.0 s, 3,210 img/s) best 0.3100 eta 0:00:15"
    )
    assert lines[3].endswith("2/2 val_acc 0.1000 (5.0 s, 3,210 img/s) best 0.3100 eta 0:00:10")
    assert lines[4].endswith("1 complete val_acc 0.4500 (2 of 3 trials) best 0.4500 eta 0:00:10")
    assert lines[5].endswith(" saved") and len(lines) == 6


def test_quiet_prints_nothing_but_what_the_user_must_see(capsys: pytest.CaptureFixture) -> None:
    out = io.StringIO()
    progress = Progress(stream=out, quiet=True)
    _two_epoch_trial(progress)
    assert out.getvalue() == "" and capsys.readouterr().err == ""
    progress.trial_end(2, "FAIL", None, reason="out of memory")
    progress.message("interrupted: checkpoint kept", always=True)
    err = capsys.readouterr().err.splitlines()
    assert out.getvalue() == "" and len(err) == 2
    assert err[0].endswith("trial 2 failed: out of memory (2 of 3 trials) best 0.4500 eta 0:00:10")
    assert err[1].endswith(" interrupted: checkpoint kept")


def test_a_forced_tty_draws_bars_with_the_eta() -> None:
    out = io.StringIO()
    progress = Progress(stream=out, tty=True)
    progress.study_start("abl", total=14, finished=0, best=None, epochs=2, unit="run")
    progress.trial_start(0, {})
    progress.batch(_batch(1, 3, seconds=1.5))  # 0.3 of an epoch in 1.5 s: 5 s an epoch
    text = out.getvalue()
    assert "\r" in text  # bars
    assert "run 0 epoch 1/2: 3/10" in text and "loss 4.500, 128 img/s" in text  # 192 in 1.5 s
    assert "epoch eta 0:00:04" in text  # the 7 batches left at 0.5 s each (rounded)
    assert "abl: 0/14 runs" in text and "best -, eta 0:02:18" in text  # (28 - 0.3) x 5 s
    progress.epoch(0, 1, 2, 0.5, 5.0)
    progress.trial_end(0, "PRUNED", None, reason="nan loss")
    progress.close()
    assert "run 0 pruned: nan loss (1 of 14 runs)" in out.getvalue()


def test_a_worker_without_a_study_start_shows_trials_and_the_best() -> None:
    out = io.StringIO()
    progress = Progress(stream=out)
    progress.trial_start(3, {"dropout": 0.25})
    progress.epoch(3, 1, 4, 0.5, 2.0)
    progress.trial_end(3, "COMPLETE", 0.5)
    assert progress.best == 0.5
    assert "trial 3 epoch 1/4 val_acc 0.5000 (2.0 s) best -" in out.getvalue()
    progress.best = 0.7  # a worker is told the study's best from the storage
    progress.trial_end(4, "COMPLETE", 0.6)
    assert out.getvalue().splitlines()[-1].endswith("trial 4 complete val_acc 0.6000 best 0.7000")


@pytest.mark.parametrize(
    ("remaining", "epochs", "done", "mean", "expected"),
    [
        (3, 2, 0.0, 5.0, 30.0),
        (3, 2, 1.5, 5.0, 22.5),  # the running trial is halfway through its second epoch
        (0, 2, 0.0, 5.0, 0.0),
        (2, 20, 0.0, None, None),  # nothing measured yet
    ],
)
def test_study_eta(
    remaining: int, epochs: int, done: float, mean: float | None, expected: float | None
) -> None:
    assert study_eta(remaining, epochs, done, mean) == expected


def test_format_eta() -> None:
    assert format_eta(None) == "-" and format_eta(843.4) == "0:14:03"
    assert format_eta(90061) == "1 day, 1:01:01"


def test_a_pty_without_a_width_gets_plain_lines_not_invisible_bars() -> None:
    import fcntl
    import os
    import struct
    import termios

    from study.progress import _isatty

    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as stream:
            assert not _isatty(stream)  # `script` without a window: 0 columns
            size = struct.pack("HHHH", 24, 80, 0, 0)  # rows, columns, x and y pixels
            fcntl.ioctl(follower, termios.TIOCSWINSZ, size)
            assert _isatty(stream)
    finally:
        os.close(leader)
        os.close(follower)
