"""Errors a user can act on. Each carries one clear sentence; the CLI and the app show it as is."""


class OmsError(Exception):
    """Base for every error that is the user's to fix, not a bug."""


class ValidationError(OmsError, ValueError):
    """Bad input: nothing was written. (A ValueError too, so pydantic validators may raise it.)"""


class NotFound(OmsError):
    """An id that does not exist in this tenant (or belongs to another one: we do not say which)."""


class Conflict(OmsError):
    """Something already exists or changed under us."""


class ConcurrencyError(Conflict):
    """An append named a stream version that is no longer current."""

    def __init__(self, stream_id: str, expected: int | None, actual: int):
        self.stream_id, self.expected, self.actual = stream_id, expected, actual
        if expected is None or expected == actual:
            super().__init__(f"stream {stream_id} changed while this transaction was open; try again")
        else:
            super().__init__(f"stream {stream_id} is at version {actual}, not the expected {expected}")


class PermissionDenied(OmsError):
    """The actor's role does not allow this action."""
