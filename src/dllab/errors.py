"""The one exception type for user mistakes: the CLI prints its message and exits non-zero, no traceback."""


class UserError(Exception):
    """A mistake the user can fix: a missing file, a bad value, a malformed line.

    The message must name the file, line, key or argument at fault and, where it helps, what to do.
    """
