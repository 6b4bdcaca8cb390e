"""The one error type the CLI and API turn into a clear one-line message."""


class PgrecsError(Exception):
    """An expected failure with a message meant for the user (no traceback)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a server error's detail and hint follow it), or
    its class name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
