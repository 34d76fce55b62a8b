"""Live progress of a study, a rerun or an ablation, and its log lines.

On a terminal: a study bar (trials or runs done of the total, best so far, ETA) and a bar for the
running epoch (batches, images/s, running loss, the epoch's ETA), drawn by tqdm on stderr.
Without one (nohup, ``| tee``, Slurm, CI): one plain timestamped line per epoch and per trial,
never a bar or a carriage return, on stdout so that a redirected log holds them.
``quiet``: nothing at all (errors are printed by the commands themselves).
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any, Protocol, TextIO

from tqdm import tqdm

FINISHED_STATES = ("COMPLETE", "PRUNED")  # count towards --trials, as study.run counts them


class _Bar(tqdm):
    """A tqdm bar with an ``{info}`` field: free text, without the ", " tqdm's postfix adds."""

    info = ""

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "info": self.info}

    def show(self, info: str) -> None:
        self.info = info
        self.refresh()


class BatchLike(Protocol):
    """What ``Progress.batch`` reads (``wrn.train.BatchProgress`` has it)."""

    epoch: int  # 1-based
    batch: int  # micro-batches done this epoch, 1-based
    batches: int
    images: int  # training images seen this epoch
    seconds: float  # since the epoch started
    loss: float  # running mean training loss


def study_eta(
    remaining: int, epochs: int, done_in_running: float, mean_epoch_s: float | None
) -> float | None:
    """Seconds until the study's total is reached, or None before any time was measured.

    ``remaining``: trials (runs) not finished yet, the running one included; ``epochs``: per
    trial; ``done_in_running``: epochs (fractions too) the running trial has done. Every trial is
    assumed to run all its epochs, so with pruning this is an upper bound.
    """
    if mean_epoch_s is None or remaining <= 0:
        return None if mean_epoch_s is None else 0.0
    return max(remaining * epochs - done_in_running, 0.0) * mean_epoch_s


def format_eta(seconds: float | None) -> str:
    """``H:MM:SS`` (``-`` when unknown)."""
    if seconds is None:
        return "-"
    return str(datetime.timedelta(seconds=round(seconds)))


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _isatty(stream: Any) -> bool:
    """A terminal that can show bars: a TTY that reports a width (a pty of 0 columns, as
    `script` makes without a window, would show neither bars nor plain lines)."""
    try:
        if not stream.isatty():
            return False
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):  # no isatty/fileno, a closed stream
        return False


class Progress:
    """The display of one process's trials (or runs); see the module's docstring.

    ``stream``: where to write (default: stderr on a terminal, else stdout); ``tty``: draw bars
    (default: whether the stream, and stdout, are terminals); ``quiet``: print nothing.
    ``enabled=False`` (the older spelling) is ``quiet=True``.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        *,
        quiet: bool = False,
        tty: bool | None = None,
    ) -> None:
        if stream is None:
            terminal = _isatty(sys.stdout) and _isatty(sys.stderr)
            stream = sys.stderr if terminal else sys.stdout
            tty = terminal if tty is None else tty
        self.stream = stream
        self.tty = _isatty(stream) if tty is None else tty
        self.quiet = quiet or enabled is False
        self.enabled = not self.quiet
        self.best: float | None = None
        self.name = ""
        self.unit = "trial"
        self.metric = "val_acc"  # what a trial's value is (a rerun's is test_acc)
        self.total: int | None = None
        self.finished = 0
        self.epochs: int | None = None  # per trial, for the ETA
        self.epoch_seconds: list[float] = []  # every epoch measured in this process
        self._running: dict[int, float] = {}  # trial number -> epochs done (fractions too)
        self._trial_epochs: dict[int, int] = {}
        self._study_bar: _Bar | None = None
        self._epoch_bar: _Bar | None = None
        self._epoch_key: tuple[int, int] | None = None  # (trial, epoch) the epoch bar shows
        self._current: int | None = None  # the trial whose batches are arriving
        self._pace: float | None = None  # seconds per epoch estimated from the first batches

    # --- the study -------------------------------------------------------------------------

    def study_start(
        self,
        name: str,
        *,
        total: int,
        finished: int,
        best: float | None,
        epochs: int | None,
        unit: str = "trial",
        metric: str = "val_acc",
    ) -> None:
        """A study (rerun, ablation: ``unit="run"``) of ``total`` trials starts or resumes with
        ``finished`` done and ``best`` so far (read from the storage by the caller); ``metric``
        names the value in the lines."""
        self.name, self.total, self.finished, self.unit = name, total, finished, unit
        self.metric = metric
        self.epochs = epochs
        if best is not None:
            self.best = best if self.best is None else max(self.best, best)
        self._line(
            f"{name}: {finished} of {total} {unit}s finished, best {self._best()}, "
            f"{epochs if epochs is not None else '?'} epochs each"
        )
        if self.tty and not self.quiet:
            self._close_bars()
            self._study_bar = _Bar(
                total=total,
                initial=finished,
                desc=name,
                unit=unit,
                file=self.stream,
                position=0,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} " + unit + "s |{bar}| {info}",
            )
            self._refresh_study()

    def eta(self) -> float | None:
        """Seconds until the study's total is finished (None: unknown yet)."""
        if self.total is None:
            return None
        done = sum(self._running.values())
        return study_eta(
            self.total - self.finished,
            self.epochs or max(self._trial_epochs.values(), default=1),
            done,
            self._mean_epoch_seconds(),
        )

    def _mean_epoch_seconds(self) -> float | None:
        if self.epoch_seconds:
            return sum(self.epoch_seconds) / len(self.epoch_seconds)
        return self._pace  # no finished epoch yet: the running epoch's pace stands in

    # --- a trial ---------------------------------------------------------------------------

    def trial_start(
        self, number: int, params: dict, *, epochs: int | None = None, start_epoch: int = 0
    ) -> None:
        """Trial (run) ``number`` starts; a resumed one has ``start_epoch`` epochs done."""
        self._running[number] = float(start_epoch)
        self._current = number
        if epochs is not None:
            self._trial_epochs[number] = epochs
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        resumed = f" (resumed after epoch {start_epoch})" if start_epoch else ""
        self._line(f"{self.unit} {number} start{resumed}: {shown or 'recipe values'}")

    def batch(self, progress: BatchLike) -> None:
        """The running epoch's progress (a ``wrn.train.BatchProgress``): moves the epoch bar."""
        number = self._current if self._current is not None else self._latest_trial()
        if number is None or progress.batches <= 0:
            return
        fraction = progress.batch / progress.batches
        self._running[number] = float(progress.epoch - 1) + fraction
        if not self.epoch_seconds and progress.seconds > 0 and fraction > 0:
            self._pace = progress.seconds / fraction  # seconds per epoch, estimated
        if not self.tty or self.quiet:
            return
        key = (number, progress.epoch)
        if self._epoch_bar is None or self._epoch_key != key:
            if self._epoch_bar is not None:
                self._epoch_bar.close()
            epochs = self._trial_epochs.get(number, self.epochs)
            self._epoch_bar = _Bar(
                total=progress.batches,
                desc=f"{self.unit} {number} epoch {progress.epoch}/{epochs or '?'}",
                unit="batch",
                file=self.stream,
                position=1 if self._study_bar is not None else 0,
                leave=False,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {info}",
            )
            self._epoch_key = key
        rate = progress.images / progress.seconds if progress.seconds > 0 else 0.0
        left = progress.seconds / fraction * (1 - fraction) if fraction > 0 else None
        self._epoch_bar.n = progress.batch
        self._epoch_bar.show(
            f"loss {progress.loss:.3f}, {rate:,.0f} img/s, epoch eta {format_eta(left)}"
        )
        self._refresh_study()

    def epoch(
        self,
        number: int,
        epoch: int,
        epochs: int,
        acc: float,
        seconds: float,
        images_per_s: float | None = None,
    ) -> None:
        """Epoch ``epoch`` (1-based) of ``epochs`` of trial ``number`` ended: one line."""
        self._current = number
        self.epoch_seconds.append(seconds)
        self._running[number] = float(epoch)
        self._trial_epochs.setdefault(number, epochs)
        speed = "" if images_per_s is None else f", {images_per_s:,.0f} img/s"
        eta = f" eta {format_eta(self.eta())}" if self.total is not None else ""
        self._close_epoch_bar()
        self._line(
            f"{self.unit} {number} epoch {epoch}/{epochs} {self.metric} {acc:.4f} "
            f"({seconds:.1f} s{speed}) best {self._best()}{eta}"
        )
        self._refresh_study()

    def trial_end(
        self, number: int, state: str, value: float | None, reason: str | None = None
    ) -> None:
        """Trial ``number`` ended in ``state`` (an optuna TrialState name) with ``value``."""
        self._running.pop(number, None)
        if self._current == number:
            self._current = None
        if value is not None and state == "COMPLETE":
            self.best = value if self.best is None else max(self.best, value)
        if state in FINISHED_STATES:
            self.finished += 1
            if self._study_bar is not None:
                self._study_bar.update(1)
        self._close_epoch_bar()
        shown = "" if value is None else f" {self.metric} {value:.4f}"
        why = f": {reason}" if reason else ""
        total = f" ({self.finished} of {self.total} {self.unit}s)" if self.total else ""
        eta = f" eta {format_eta(self.eta())}" if self.total is not None else ""
        word = "failed" if state == "FAIL" else state.lower()
        self._line(
            f"{self.unit} {number} {word}{shown}{why}{total} best {self._best()}{eta}",
            error=state == "FAIL",
        )
        self._refresh_study()

    def message(self, text: str, *, always: bool = False) -> None:
        """A line of its own that leaves the bars intact; ``always``: one the user must see
        (a failure, what Ctrl-C saved), printed on stderr even when quiet."""
        self._line(text, error=always)

    def close(self) -> None:
        """Remove the bars (the lines stay)."""
        self._close_bars()

    # --- drawing ---------------------------------------------------------------------------

    def _latest_trial(self) -> int | None:
        return max(self._running) if self._running else None

    def _best(self) -> str:
        return "-" if self.best is None else f"{self.best:.4f}"

    def _line(self, text: str, error: bool = False) -> None:
        """``error``: a line the user must see, on stderr, printed even when quiet."""
        if self.quiet and not error:
            return
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        if self.tty and not self.quiet:  # through tqdm, which redraws the bars under it
            tqdm.write(f"{stamp} {text}", file=self.stream)
        else:
            print(f"{stamp} {text}", file=sys.stderr if error else self.stream, flush=True)

    def _refresh_study(self) -> None:
        if self._study_bar is None:
            return
        self._study_bar.show(f"best {self._best()}, eta {format_eta(self.eta())}")

    def _close_epoch_bar(self) -> None:
        if self._epoch_bar is not None:
            self._epoch_bar.close()
            self._epoch_bar = None
            self._epoch_key = None

    def _close_bars(self) -> None:
        self._close_epoch_bar()
        if self._study_bar is not None:
            self._study_bar.close()
            self._study_bar = None
