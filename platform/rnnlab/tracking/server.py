"""Which MLflow store rnnlab talks to, and one quick check that a tracking server answers.

The store is ``MLFLOW_TRACKING_URI`` or MLflow's default (``sqlite:///mlflow.db`` in the working
folder), so ``mlflow ui`` run in the same place shows the runs. A tracking server
(``http(s)://``) is probed once before it is used, so a wrong or down server fails at once
instead of after MLflow's long HTTP retries (which still cover blips mid-study:
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``).
"""

from __future__ import annotations

import re

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rnnlab.errors import RnnlabError, mask_url

PROBE_TIMEOUT_S = 5


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default."""
    return uri or mlflow.get_tracking_uri()


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def client(uri: str | None = None) -> MlflowClient:
    """A client of the store ``uri`` names (see :func:`tracking_uri`), a server probed first.

    Raises:
        RnnlabError: the URI names a tracking server that does not answer.
    """
    uri = tracking_uri(uri)
    if is_server(uri):
        check_server(uri)
    return MlflowClient(uri)


def check_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One quick request to a tracking server's ``/health``, with no retries.

    Any HTTP answer counts as reachable (a wrong path or missing credentials show up, with
    MLflow's own message, at the first real call); only a connection failure is an error.

    Raises:
        RnnlabError: the server cannot be connected to within ``timeout`` seconds.
    """
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        http_request(get_default_host_creds(uri), "/health", "GET", max_retries=0,
                     backoff_factor=0, timeout=timeout, raise_on_status=False)
    except MlflowException as exc:
        found = re.search(r"\[Errno -?\d+\] ([^\"')(]+)", str(exc))
        reason = (found.group(1).strip() if found else
                  f"no answer within {timeout:g} s" if "timed out" in str(exc).lower() else
                  str(exc).splitlines()[0][-160:])
        raise RnnlabError(
            f"MLflow tracking server {mask_url(uri)} is not reachable ({reason}); start it "
            "(mlflow server ...) or fix MLFLOW_TRACKING_URI"
        ) from None
