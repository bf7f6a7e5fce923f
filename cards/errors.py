"""One exception root; the CLI turns it into a one-line message and an exit status."""

from __future__ import annotations


class CardsError(Exception):
    """Something the person can fix; shown as one line, never as a traceback."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        return f"{where}{self.message}"


class InputError(CardsError):
    """A notes or transcript file that cannot be read or parsed."""


class ConfigError(CardsError):
    """A bad setting, cards.toml or prompt template."""


class WorkspaceError(CardsError):
    """The workspace database cannot be opened, read or written."""


class SupersededError(WorkspaceError):
    """A decision or edit on a draft that a newer generation replaced; the message names its successor."""


class WorkspaceFullError(WorkspaceError):
    """The disk (or filesystem quota) filled up while writing the workspace; what was committed stays."""

    exit_code = 1  # like any other file that could not be written


class BusyError(WorkspaceError):
    """Another run holds the workspace."""

    exit_code = 4


class GenerationError(CardsError):
    """The run was stopped: the server refused the key, does not know the model, has no quota, refuses
    the requested reply format, or cannot be reached at all (per-note failures are recorded, not raised)."""

    exit_code = 3


class ExportError(CardsError):
    """A deck could not be written."""

    exit_code = 1


class AudioError(CardsError):
    """An episode's audio cannot be found, read or cut, or PyAV is not installed."""


class AnkiConnectError(CardsError):
    """Anki cannot be reached through AnkiConnect: not running, add-on missing, key refused or too old."""

    exit_code = 5
