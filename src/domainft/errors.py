"""The one error hierarchy users see.

A `UserError` is bad input: the CLI prints it as one line (where, what, the nearest valid
choice) and exits non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Bad input. `where` is a file, a `file:line`, or a dotted recipe key."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | Path | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = str(where) if where is not None else None
        self.hint = hint

    def one_line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split("\n"))


class RecipeError(UserError):
    """The recipe file is malformed or a value is out of range."""


class DataError(UserError):
    """A document or dataset file cannot be used."""


class EngineError(UserError):
    """An engine is missing or its run failed."""

    exit_code = 3


class TeacherError(UserError):
    """The teacher LLM could not be reached or misbehaved beyond retries."""

    exit_code = 4


class HubError(UserError):
    """A model hub (Hugging Face, ModelScope, a mirror) refused or failed a pull."""

    exit_code = 5


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """'did you mean X?' for the closest choice, or None when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


class Terminated(Exception):
    """domainft got SIGTERM while a child process ran (the child's process group has been ended)."""
