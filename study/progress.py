"""Live progress of a study, a rerun or an ablation, and its log lines.

On a terminal: a study bar (trials or runs done of the total, best so far, ETA) and a bar for the
running epoch (batches, images/s, running loss, the epoch's ETA), drawn by tqdm on stderr.
Without one (nohup, ``| tee``, Slurm, CI): one plain timestamped line per epoch and per trial,
never a bar or a carriage return, on stdout so that a redirected log holds them; ``quiet``:
nothing but what the user must see.

``study.pace.Pace`` keeps what the lines and bars show (finished, best, the epoch times behind
the ETA); ``Progress`` turns events into text for one writer, chosen when built: ``_Lines`` or
``_Bars``.
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any, TextIO

from tqdm import tqdm

from study.pace import BatchLike, Pace, format_eta
from study.records import StudyKind
from study.records.keys import metric_name

SEARCH_METRIC = metric_name(StudyKind.SEARCH)  # what a trial's value is unless told otherwise


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


class _Lines:
    """Plain timestamped lines; ``quiet``: only the lines the user must see, on stderr."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream, self.quiet = stream, quiet

    def line(self, text: str, error: bool = False) -> None:
        """``error``: a line the user must see, on stderr, printed even when quiet."""
        if self.quiet and not error:
            return
        print(f"{_stamp()} {text}", file=sys.stderr if error else self.stream, flush=True)

    # no bars: what they would show is in the lines
    def study(self, name: str, unit: str, total: int, finished: int) -> None:
        pass

    def epoch_bar(self, key: tuple[int, int], desc: str, progress: BatchLike) -> None:
        pass

    def status(self, info: str) -> None:
        pass

    def trial_finished(self) -> None:
        pass

    def end_epoch(self) -> None:
        pass

    def close(self) -> None:
        pass


def _stamp() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


class _Bar(tqdm):
    """A tqdm bar with an ``{info}`` field: free text, without the ", " tqdm's postfix adds."""

    info = ""

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "info": self.info}

    def show(self, info: str) -> None:
        self.info = info
        self.refresh()


class _Bars(_Lines):
    """tqdm bars on a terminal: the study's, and the running epoch's under it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._study: _Bar | None = None
        self._epoch: _Bar | None = None
        self._epoch_key: tuple[int, int] | None = None  # (trial, epoch) the epoch bar shows

    def line(self, text: str, error: bool = False) -> None:
        tqdm.write(f"{_stamp()} {text}", file=self.stream)  # tqdm redraws the bars under it

    def study(self, name: str, unit: str, total: int, finished: int) -> None:
        self.close()
        self._study = _Bar(
            total=total,
            initial=finished,
            desc=name,
            unit=unit,
            file=self.stream,
            position=0,
            dynamic_ncols=True,
            bar_format="{desc}: {n_fmt}/{total_fmt} " + unit + "s |{bar}| {info}",
        )

    def epoch_bar(self, key: tuple[int, int], desc: str, progress: BatchLike) -> None:
        if self._epoch is None or self._epoch_key != key:
            self.end_epoch()
            self._epoch = _Bar(
                total=progress.batches,
                desc=desc,
                unit="batch",
                file=self.stream,
                position=1 if self._study is not None else 0,
                leave=False,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {info}",
            )
            self._epoch_key = key
        fraction = progress.batch / progress.batches
        rate = progress.images / progress.seconds if progress.seconds > 0 else 0.0
        left = progress.seconds / fraction * (1 - fraction) if fraction > 0 else None
        self._epoch.n = progress.batch
        self._epoch.show(
            f"loss {progress.loss:.3f}, {rate:,.0f} img/s, epoch eta {format_eta(left)}"
        )

    def status(self, info: str) -> None:
        if self._study is not None:
            self._study.show(info)

    def trial_finished(self) -> None:
        if self._study is not None:
            self._study.update(1)

    def end_epoch(self) -> None:
        if self._epoch is not None:
            self._epoch.close()
            self._epoch = None
            self._epoch_key = None

    def close(self) -> None:
        self.end_epoch()
        if self._study is not None:
            self._study.close()
            self._study = None


class Progress:
    """The display of one process's trials (or runs); see the module's docstring.

    ``stream``: where to write (default: stderr on a terminal, else stdout); ``tty``: draw bars
    (default: whether the stream, and stdout, are terminals); ``quiet``: print nothing.
    """

    def __init__(
        self, *, stream: TextIO | None = None, quiet: bool = False, tty: bool | None = None
    ) -> None:
        if stream is None:
            terminal = _isatty(sys.stdout) and _isatty(sys.stderr)
            stream = sys.stderr if terminal else sys.stdout
            tty = terminal if tty is None else tty
        bars = (_isatty(stream) if tty is None else tty) and not quiet
        self.writer: _Lines = _Bars(stream) if bars else _Lines(stream, quiet)
        self.pace = Pace()
        self.name = ""
        self.unit = "trial"
        self.metric = SEARCH_METRIC
        self.shows_best = True

    @property
    def best(self) -> float | None:
        return self.pace.best

    @best.setter
    def best(self, value: float | None) -> None:  # a worker shows the study's best too
        self.pace.best = value

    def study_start(
        self,
        name: str,
        *,
        total: int,
        finished: int,
        best: float | None,
        epochs: int | None,
        unit: str = "trial",
        metric: str = SEARCH_METRIC,
        shows_best: bool = True,
    ) -> None:
        """A study (rerun, ablation: ``unit="run"``) of ``total`` trials starts or resumes with
        ``finished`` done and ``best`` so far (read from the storage by the caller); ``metric``
        names the value in the lines; ``shows_best``: False for test scores, whose maximum is
        chosen on the test set and is no result."""
        self.name, self.unit, self.metric, self.shows_best = name, unit, metric, shows_best
        self.pace.total, self.pace.finished, self.pace.epochs = total, finished, epochs
        self.pace.add_best(best)
        self.writer.line(
            f"{name}: {finished} of {total} {unit}s finished{self._best(',')}, "
            f"{epochs if epochs is not None else '?'} epochs each"
        )
        self.writer.study(name, unit, total, finished)
        self._status()

    def eta(self) -> float | None:
        """Seconds until the study's total is finished (None: unknown yet)."""
        return self.pace.eta()

    def trial_start(
        self, number: int, params: dict, *, epochs: int | None = None, start_epoch: int = 0
    ) -> None:
        """Trial (run) ``number`` starts; a resumed one has ``start_epoch`` epochs done."""
        self.pace.start_trial(number, epochs, start_epoch)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        resumed = f" (resumed after epoch {start_epoch})" if start_epoch else ""
        self.writer.line(f"{self.unit} {number} start{resumed}: {shown or 'recipe values'}")

    def batch(self, progress: BatchLike) -> None:
        """The running epoch's progress (a ``wrn.train.BatchProgress``): moves the epoch bar."""
        number = self.pace.batch(progress)
        if number is None:
            return
        epochs = self.pace.trial_epochs.get(number, self.pace.epochs)
        desc = f"{self.unit} {number} epoch {progress.epoch}/{epochs or '?'}"
        self.writer.epoch_bar((number, progress.epoch), desc, progress)
        self._status()

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
        self.pace.end_epoch(number, epoch, epochs, seconds)
        speed = "" if images_per_s is None else f", {images_per_s:,.0f} img/s"
        self.writer.end_epoch()
        self.writer.line(
            f"{self.unit} {number} epoch {epoch}/{epochs} {self.metric} {acc:.4f} "
            f"({seconds:.1f} s{speed}){self._best()}{self._eta()}"
        )
        self._status()

    def trial_end(
        self,
        number: int,
        state: str,
        value: float | None,
        reason: str | None = None,
        *,
        paused: bool = False,
        promotion: bool = False,
    ) -> None:
        """Trial ``number`` ended in ``state`` (an optuna TrialState name) with ``value``;
        ``paused``: PRUNED at a rung, to be promoted (``--pruner promote``); ``promotion``: it
        continued a paused trial, whose configuration the total counted already."""
        if self.pace.end_trial(number, state, value, promotion):
            self.writer.trial_finished()
        self.writer.end_epoch()
        shown = "" if value is None else f" {self.metric} {value:.4f}"
        why = f": {reason}" if reason else ""
        pace = self.pace
        total = f" ({pace.finished} of {pace.total} {self.unit}s)" if pace.total else ""
        word = "failed" if state == "FAIL" else "paused" if paused else state.lower()
        self.writer.line(
            f"{self.unit} {number} {word}{shown}{why}{total}{self._best()}{self._eta()}",
            error=state == "FAIL",
        )
        self._status()

    def message(self, text: str, *, always: bool = False) -> None:
        """A line of its own that leaves the bars intact; ``always``: one the user must see
        (a failure, what Ctrl-C saved), printed on stderr even when quiet."""
        self.writer.line(text, error=always)

    def close(self) -> None:
        """Remove the bars (the lines stay)."""
        self.writer.close()

    def _eta(self) -> str:
        return f" eta {format_eta(self.pace.eta())}" if self.pace.total is not None else ""

    def _status(self) -> None:
        best = f"best {self.pace.best_text()}, " if self.shows_best else ""
        self.writer.status(f"{best}eta {format_eta(self.pace.eta())}")

    def _best(self, before: str = "") -> str:
        return f"{before} best {self.pace.best_text()}" if self.shows_best else ""
