"""Errors meant for people: each names where the problem is and what to do about it."""

from __future__ import annotations


class KnowtuneError(Exception):
    """An error the user can act on. The CLI prints it as one paragraph, without a traceback."""

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\nWhat to do: {fix}")


class Interrupted(KnowtuneError):
    """Ctrl-C during training, after a checkpoint was saved: stop, do not carry on with other work."""


class DataError(KnowtuneError):
    """Bad input data. `problems` holds every line-numbered problem found, not just the first."""

    def __init__(self, message: str, *, fix: str | None = None, problems: list | None = None):
        super().__init__(message, fix=fix)
        self.problems = problems or []

    @classmethod
    def listing(cls, what: str, lines: list[str], fix: str, problems: list | None = None) -> "DataError":
        """'The WHAT has N error(s):' and the first 20 problem lines (each naming its file and line)."""
        shown = "\n".join(f"  {line}" for line in lines[:20])
        more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
        return cls(f"The {what} has {len(lines)} error(s):\n{shown}{more}", fix=fix, problems=problems or list(lines))
