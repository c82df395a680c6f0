"""The error every database problem leaves the package as; its own module so that the
modules the store uses can raise it without importing the store."""

from __future__ import annotations


class StoreError(Exception):
    """A database problem, described in one sentence without secrets. `unreachable` is
    True when the database could not be reached at all (not when a query failed);
    `permanent` when retrying cannot help until someone acts (a missing table or right)."""

    def __init__(self, message: str, *, unreachable: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.permanent = permanent
