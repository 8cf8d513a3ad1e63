"""Errors that a user fixes by changing configuration or a command line: the ``xinst`` command prints their
message as one line (no traceback) and exits with status 2."""


class ConfigError(ValueError):
    """A configuration mistake; the message names the setting or file, what is wrong and what to do."""
