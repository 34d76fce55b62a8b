"""The commands run on a study, recorded on it (password masked) for suggested commands."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from study.records.keys import StudyAttrs

COMMANDS_KEPT = 5  # invocations kept on a study, the latest last


@dataclass(frozen=True)
class Invocation:
    """One command run on a study: ``python -m {command} {argv}`` (password masked)."""

    command: str  # "study.run", "study.rerun", "study.ablate"
    argv: list[str]
    at: str  # ISO time, UTC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Invocation:
        return cls(str(d.get("command", "")), [str(a) for a in d.get("argv", [])], str(d["at"]))

    def shell(self) -> str:
        """The command line, quoted for a POSIX shell."""
        import shlex

        return shlex.join(["python", "-m", self.command, *self.argv])


def masked_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with every URL's password (and any other copy of it) replaced by ***."""
    from study.storage import redact

    passwords: set[str] = set()
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if "://" in value:
            masked = redact(value)
            if masked != value and "***" in masked:
                head, tail = masked.split("***", 1)
                passwords.add(value[len(head) : len(value) - len(tail)])
            value = masked
        out.append(f"{flag}{eq}{value}")
    for password in passwords - {""}:
        out = [a.replace(password, "***") for a in out]
    return out


def invocations(user_attrs: Mapping[str, Any]) -> list[Invocation]:
    """The commands recorded on a study, oldest first (none for studies made before)."""
    recorded = user_attrs.get(StudyAttrs.COMMANDS)
    if not isinstance(recorded, list):
        return []
    return [Invocation.from_dict(d) for d in recorded if isinstance(d, dict) and "at" in d]


def record_command(study: optuna.Study, command: str, argv: Sequence[str]) -> Invocation:
    """Append this command (password masked) to the study's last ``COMMANDS_KEPT``."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    this = Invocation(command, masked_argv(argv), now)
    kept = [i.to_dict() for i in invocations(study.user_attrs)][-(COMMANDS_KEPT - 1) :]
    study.set_user_attr(StudyAttrs.COMMANDS, [*kept, this.to_dict()])
    return this
