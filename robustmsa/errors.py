"""User-facing errors: one readable line plus a hint; the CLI prints them without a traceback."""
from __future__ import annotations

__all__ = ["RobustMSAError", "DataError", "SuiteError", "NonFiniteError"]


class RobustMSAError(Exception):
    """An error caused by the user's input. ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class DataError(RobustMSAError):
    """A dataset file is missing, malformed, hostile or inconsistent."""


class SuiteError(RobustMSAError):
    """A suite file is invalid (names the file, the key and the allowed values)."""


class NonFiniteError(RobustMSAError):
    """NaN or inf met where finite numbers are required (data, loss, predictions)."""
