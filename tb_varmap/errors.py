"""Typed errors. Messages name the run, file, node or variable and what was expected."""


class VarMapError(Exception):
    """Base class; `http_status` is what the plugin answers with."""

    http_status = 400


class BadInput(VarMapError, ValueError):
    """The request or a file is not what was expected (HTTP 400, CLI exit 2)."""

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems or [])


class RunNotFound(VarMapError, LookupError):
    http_status = 404


class NotFound(VarMapError, LookupError):
    http_status = 404


class Conflict(VarMapError):
    """A write based on a stale revision, or a second export of a running run."""

    http_status = 409

    def __init__(self, message, current=None):
        super().__init__(message)
        self.current = current


class Forbidden(VarMapError):
    http_status = 403


class TooLarge(VarMapError):
    http_status = 413
