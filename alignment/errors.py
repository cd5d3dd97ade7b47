"""The one exception type for bad input: stages turn it into a clear message and a non-zero exit."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or config: the message names the file, line or key, and nothing has been written."""


def config_error_line(err: BaseException) -> str:
    """Hydra's or OmegaConf's report of a config that does not compose, in one line.

    Hydra's message says which override or config file failed; OmegaConf's, its cause when there is
    one, says why on its first line (the valid values of a choice, the type expected) and names the
    key on indented lines, which are left out. A missing config group option lists the options.
    """
    from omegaconf.errors import OmegaConfBaseException

    def first_paragraph(e: BaseException) -> list[str]:
        return [line.strip() for line in str(e).split("\n\n")[0].splitlines()
                if line.strip() and not line[:1].isspace()]

    line = " ".join(first_paragraph(err))
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        reason = " ".join(first_paragraph(cause))
        line = f"{line}: {reason}" if reason not in line else line
    key = getattr(err, "full_key", None) or getattr(cause, "full_key", None)
    if key and key not in line:
        line = f"{key}: {line}"
    options = getattr(err, "options", None)
    if options:
        line += f" (available: {', '.join(options)})"
    return line
