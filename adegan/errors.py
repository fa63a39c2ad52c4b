"""User-facing errors: each carries a one-line message that names the input and the fix.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""


class AdeganError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1


class UsageError(AdeganError):
    """Bad flags or arguments: the command cannot start."""

    exit_code = 2


class MissingDependencyError(AdeganError):
    """An optional library is not installed; the message names the extra to install."""

    exit_code = 3


class DiskFullError(AdeganError):
    """The disk (or quota, or file-size limit) ran out while writing; nothing half-written is left."""

    exit_code = 1
