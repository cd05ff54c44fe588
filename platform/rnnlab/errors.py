"""The one domain error of rnnlab.

Every mistake a user can make (a bad spec, a bad path, a bad value, corrupt data, an unknown
study) is raised as :class:`RnnlabError` with a one-line message that names the problem and how
to fix it. The CLI catches it once, prints the line on stderr and exits with code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # Ctrl-C, SIGTERM: 128 + the signal


class RnnlabError(Exception):
    """A user-facing error: the message is one line naming the problem and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (trials end as interrupted) but exiting with code 143."""


def mask_url(url: str | None) -> str:
    """Hide the password in a URL: ``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    if not url:
        return ""
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)
