"""One status line per trial epoch on a terminal; silent when stderr is not a TTY."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.best: float | None = None

    def _say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def trial_start(self, number: int, params: dict) -> None:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        self._say(f"trial {number}: {shown or 'recipe values'}")

    def epoch(self, number: int, epoch: int, epochs: int, acc: float, seconds: float) -> None:
        best = "-" if self.best is None else f"{self.best:.4f}"
        self._say(
            f"trial {number} epoch {epoch}/{epochs}: val_acc {acc:.4f}  "
            f"({seconds:.1f}s)  study best {best}"
        )

    def trial_end(self, number: int, state: str, value: float | None) -> None:
        if value is not None and state == "COMPLETE":
            self.best = value if self.best is None else max(self.best, value)
        shown = "" if value is None else f" val_acc {value:.4f}"
        self._say(f"trial {number} {state.lower()}{shown}")


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
