"""User-facing errors: one readable line plus a hint; the CLI prints them without a traceback."""
from __future__ import annotations

__all__ = ["RobustMSAError", "DataError", "SuiteError", "NonFiniteError", "ModelConfigError", "StoreError",
           "StoreWriteError", "ClusterError", "SuiteBusyError", "ModelError"]


class RobustMSAError(Exception):
    """An error caused by the user's input. ``hint`` says what to do about it; ``exit_code`` is the
    CLI's exit status for it (2: refused before running; 1: a failure during a run)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class DataError(RobustMSAError):
    """A dataset file is missing, malformed, hostile or inconsistent."""


class SuiteError(RobustMSAError):
    """A suite file is invalid (names the file, the key and the allowed values)."""


class NonFiniteError(RobustMSAError):
    """NaN or inf met where finite numbers are required (data, loss, predictions)."""


class ModelConfigError(RobustMSAError):
    """A model config key is unknown or has a bad value: ``key`` names it, ``problem`` says what is
    wrong, ``model`` is the model's name when known (a suite re-raises it naming its file and key)."""

    def __init__(self, key: str, problem: str, hint: str | None = None, model: str | None = None):
        where = f"model {model!r}: config key {key!r}" if model else f"model config key {key!r}"
        super().__init__(f"{where}: {problem}", hint)
        self.key, self.problem, self.model = key, problem, model


class StoreError(RobustMSAError):
    """The tracking store cannot be reached, opened or written (checked before anything runs)."""


class StoreWriteError(StoreError):
    """Writing to the tracking store failed during a run (e.g. a full disk)."""

    exit_code = 1


class ClusterError(RobustMSAError):
    """The Ray address is malformed or unreachable, or no node can run a trial's resources."""


class SuiteBusyError(RobustMSAError):
    """Another live invocation holds the suite's lease in this tracking store."""


class ModelError(RobustMSAError):
    """A model that comes with its weights cannot be used as given: its code does not import, its
    signature or output is not the protocol's (docs/byo_model.md), its checkpoint does not fit the data."""
