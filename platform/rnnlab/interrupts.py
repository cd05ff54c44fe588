"""Ctrl-C and SIGTERM: where they may interrupt rnnlab, and where they wait (a store write, a
torch import; docs/decisions.md, "Interrupts")."""

from __future__ import annotations

import _thread
import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from rnnlab.errors import Terminated

F = TypeVar("F", bound=Callable[..., Any])


class _Held:
    depth = 0  # nested uninterrupted() blocks of the main thread
    pending: KeyboardInterrupt | None = None
    installed = False  # install_handlers() ran in this process


def install_handlers(*, once: bool = False) -> None:
    """Raise Ctrl-C and SIGTERM as exceptions in this process's main thread (see above).

    Args:
        once: ignore every signal after the first (a worker process: the command that started
            it forwards signals to it, and kills it if it does not stop).
    """

    def handler(signum, frame):
        if _importing(frame):
            _deliver_again(signum)
            return
        exc = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if once:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if _Held.depth and (_Held.pending is None or once):
            # Held until the write ends. Once: a second signal is ignored even where it landed
            # before the first had ignored them, its handler running inside the first's (the
            # command forwards the terminal's Ctrl-C a moment after the worker got it): raised
            # from here, it would cut the write the first one waits for.
            _Held.pending = _Held.pending or exc
            return
        raise exc

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        _Held.installed = True


_HELD_IMPORTS = ("torch",)  # packages whose import runs Python code from C++


def _importing(frame) -> bool:
    """Whether the main thread is running the top level of one of :data:`_HELD_IMPORTS`'
    modules (an import; any other is cut as usual, inside the caller's own handling)."""
    while frame is not None:
        if (frame.f_code.co_name == "<module>" and str(frame.f_globals.get("__name__", ""))
                .partition(".")[0] in _HELD_IMPORTS):
            return True
        # the import machinery around it, once the module's own code has run: an exception
        # raised there fails the import all the same (the module is taken out of sys.modules)
        if (frame.f_code.co_filename.startswith("<frozen importlib") and str(
                frame.f_locals.get("name", "")).partition(".")[0] in _HELD_IMPORTS):
            return True
        frame = frame.f_back
    return False


_AGAIN_S = 0.05
_again = threading.Lock()  # held while a signal waits to be delivered again


def _deliver_again(signum: int) -> None:
    """Have ``signum`` handled again in a moment (once, however many arrive meanwhile)."""
    if not _again.acquire(blocking=False):
        return

    def later() -> None:
        time.sleep(_AGAIN_S)
        _again.release()
        # As if the signal arrived again, without the system: a process that blocks it (a Ray
        # worker does, and cancels a task through Python's handler alone) still takes it.
        _thread.interrupt_main(signum)

    threading.Thread(target=later, name="rnnlab-signal-again", daemon=True).start()


SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def kept_handlers() -> Iterator[None]:
    """Restore the handlers of Ctrl-C and SIGTERM as they were before the block, whatever the
    block installed (a library that takes them over, a task that installs rnnlab's)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            if handler is not None:  # None: set outside Python, cannot be put back from here
                signal.signal(sig, handler)


def ignore_interrupts() -> None:
    """Ignore Ctrl-C and SIGTERM from now on (a command whose work is done and closed), where
    :func:`install_handlers` took them over (not in a program that calls rnnlab as a library)."""
    if _Held.installed and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold an interrupt of the main thread back until the block ends (other threads never
    receive signals, so there it does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Held.depth += 1
    try:
        yield
    finally:
        _Held.depth -= 1
        if not _Held.depth and _Held.pending is not None:
            exc, _Held.pending = _Held.pending, None
            raise exc


def whole(fn: F) -> F:
    """Run ``fn`` as a whole: :func:`uninterrupted` around every call."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with uninterrupted():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def take_pending() -> KeyboardInterrupt | None:
    """The interrupt held back by the main thread's :func:`uninterrupted` block, handed over and
    no longer held: a wait inside the block that writes nothing (a retry's backoff while a store
    is down) raises it at once instead of making Ctrl-C wait for the store."""
    if threading.current_thread() is not threading.main_thread():
        return None
    exc, _Held.pending = _Held.pending, None
    return exc
