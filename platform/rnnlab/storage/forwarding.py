"""A storage that forwards every Optuna storage call to another, through one method that
subclasses shape (held whole against Ctrl-C, ridden through outages)."""

from __future__ import annotations

import abc
from typing import Any

from optuna.storages import BaseStorage

# Every public method of Optuna's storage interface, abstract or not: all are forwarded, so
# the inner storage's own implementations (a cache's, a journal's) are the ones that run.
METHODS = tuple(name for name, value in vars(BaseStorage).items()
                if callable(value) and not name.startswith("_"))


class ForwardingStorage(BaseStorage):
    """Every call goes to ``inner`` through :meth:`call`."""

    def __init__(self, inner: BaseStorage):
        self.inner = inner

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Make the call ``name`` on the inner storage (subclasses wrap it)."""
        return getattr(self.inner, name)(*args, **kwargs)


def _forwarded(name: str):
    def method(self: ForwardingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in METHODS:
    setattr(ForwardingStorage, _name, _forwarded(_name))
abc.update_abstractmethods(ForwardingStorage)
