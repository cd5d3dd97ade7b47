"""The one exception type for bad input: stages turn it into a clear message and a non-zero exit."""


class UserError(Exception):
    """Bad input or config: the message names the file, line or key, and nothing has been written."""
