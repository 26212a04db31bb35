"""Error types of the compiled core and its pure-Python twin (defined once, used by both)."""

from __future__ import annotations

__all__ = ["CanonicalEncodingError", "IllegalTransition", "KeyConfigError"]


class IllegalTransition(ValueError):
    """An order status change that the transition table does not allow.

    Also raised when either status is not a known order status.

    Attributes
    ----------
    current, target : object
        The status the order is in and the status that was asked for.
    """

    def __init__(self, current: object, target: object, detail: str | None = None) -> None:
        self.current = current
        self.target = target
        self.detail = detail
        message = f"illegal order transition {current} -> {target}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)

    def __reduce__(self):  # keep pickling (multiprocessing, logging) working
        return (type(self), (self.current, self.target, self.detail))


class CanonicalEncodingError(ValueError):
    """An order field or decimal that has no canonical encoding.

    Attributes
    ----------
    field : str or None
        The order field at fault (None when ``canonical_decimal`` is called directly).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        if field is not None:
            message = f"field {field!r}: {message}"
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_encoding_error, (self.args[0], self.field))


def _rebuild_encoding_error(message: str, field: str | None) -> CanonicalEncodingError:
    error = CanonicalEncodingError(message)
    error.field = field
    return error


class KeyConfigError(ValueError):
    """Unusable HMAC key configuration. The message names the variable, never the secret.

    Attributes
    ----------
    variable : str or None
        The environment variable (or constructor argument) at fault.
    """

    def __init__(self, message: str, variable: str | None = None) -> None:
        self.variable = variable
        super().__init__(message)
