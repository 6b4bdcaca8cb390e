"""The one error type the CLI and API turn into a clear one-line message."""


class PgrecsError(Exception):
    """An expected failure with a message meant for the user (no traceback)."""
