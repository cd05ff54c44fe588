"""The one domain error of rnnlab.

Every mistake a user can make (a bad spec, a bad path, a bad value, corrupt data, an unknown
study) is raised as :class:`RnnlabError` with a one-line message that names the problem and how
to fix it. The CLI catches it once, prints the line on stderr and exits with code 2; anything else
is a bug and keeps its traceback. Workers that died (killed by the kernel, crashed) are not the
user's mistake but are said in one line too (:class:`WorkersLost`, exit code 1).
"""

from __future__ import annotations

import re

EXIT_USER_ERROR = 2
EXIT_WORKERS_LOST = 1
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # Ctrl-C, SIGTERM: 128 + the signal


class RnnlabError(Exception):
    """A user-facing error: the message is one line naming the problem and the fix."""

    exit_code = EXIT_USER_ERROR


class WorkersLost(RnnlabError):
    """Worker processes that died (a signal, a crash): what happened and how to resume."""

    exit_code = EXIT_WORKERS_LOST


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (trials end as interrupted) but exiting with code 143."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """What an error says, for a one-line message: its first line, cut to ``limit``
    characters; its type's name where it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


# Query parameters that carry a secret (libpq's password=, a token), masked like a password.
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:password|passwd|pwd|secret|token|api_key|"
                           r"access_token|sslpassword)=)[^&;#]*")


def split_password(url: str) -> tuple[str, str | None]:
    """A URL without its password, and the password (None when it has none).

    The user info ends at the URL's last ``@``, so a password may hold ``/``, ``@``, ``:``,
    ``%``, spaces or any character: what stands between the user's ``:`` and that ``@`` is the
    password, whole. A path or query that holds an ``@`` is then taken as user info too: more
    is hidden, never less.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url, None
    user, colon, password = rest[:at].partition(":")
    if not colon:
        return url, None
    return f"{scheme}://{user}@{rest[at + 1:]}", password


def with_password(url: str, password: str | None) -> str:
    """``url`` with ``password`` put back (as :func:`split_password` took it out); unchanged
    when there is none to put, or the URL names no user or has a password already."""
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not password or not sep or at < 0 or ":" in rest[:at]:
        return url
    return f"{scheme}://{rest[:at]}:{password}{rest[at:]}"


def mask_url(url: str | None) -> str:
    """The URL as it may be shown, logged or stored: its password (see :func:`split_password`)
    and secret query values replaced by ``***``."""
    if not url:
        return ""
    bare, password = split_password(url)
    if password is not None:
        scheme, _, rest = bare.partition("://")
        user, _, host = rest.partition("@")
        bare = f"{scheme}://{user}:***@{host}"
    return _SECRET_QUERY.sub(r"\1***", bare)
