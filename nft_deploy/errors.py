"""The one exception hierarchy for what a user can fix.

The CLI prints any ``NftDeployError`` as one line and exits 1; every other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations


class NftDeployError(Exception):
    """A problem the user can fix (bad file, bad field, bad flag). Message: file, field, what is allowed."""

    exit_code = 1


class ProfileError(NftDeployError):
    """A device profile that does not load or does not validate; the message names the JSON path."""


class DataError(NftDeployError):
    """A data set that is missing, malformed or does not fit the model."""


class CheckpointError(NftDeployError):
    """A checkpoint that cannot be loaded safely or does not describe a known model."""


class ExportError(NftDeployError):
    """A model that cannot be exported or rewritten for the device."""


class EvaluationError(NftDeployError):
    """Bad evaluator input: a model without chip inputs, a bad chip count, mismatched data."""


class Note(UserWarning):
    """Not an error: something a user should know about a valid run (fewer workers than asked, a feature an
    engine leaves out). The CLI prints each as one ``Note:`` line on stderr."""


class ConfigError(NftDeployError):
    """A bad option combination or value (unknown method, model, backend...)."""


class OutputError(NftDeployError):
    """An output file or folder that cannot be written (not writable, read-only, disk full, a folder in the
    way). The message names the path and what to do; nothing partial is left behind."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class Terminated(BaseException):
    """SIGTERM arrived (the CLI's handler raises it, like KeyboardInterrupt for SIGINT): not an
    ``Exception``, so no ``except Exception`` swallows it; the CLI exits 143 with one line."""

    def __init__(self, signum: int = 15):
        self.signum = signum
        super().__init__(f"signal {signum}")
