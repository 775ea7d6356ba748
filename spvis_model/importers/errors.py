"""Errors of the importer: every message names the file and the key, field or global."""

from __future__ import annotations


class ImportCheckpointError(ValueError):
    """A source checkpoint cannot be imported (unknown key, shape, architecture, class list)."""


class UnsafeFileError(ImportCheckpointError):
    """A source file asks to run or rebuild something other than arrays and plain containers.

    Attributes:
        global_name: the refused ``module.name`` (e.g. ``"posix.system"``), or the kind of
            pickle record refused.
    """

    def __init__(self, message: str, global_name: str) -> None:
        super().__init__(message)
        self.global_name = global_name
