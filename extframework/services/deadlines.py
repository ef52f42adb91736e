"""Every call to a plugin ends by its deadline, and one plugin gets a bounded share of threads.

``urllib3`` bounds connecting and each socket read, never a whole answer: a plugin that
trickles its status line, headers or body a byte at a time holds the caller for as long as
it likes. Here a ``Deadline`` covers one call from connect to last byte. The connection
classes of ``pool_manager()``'s pools attach their socket to the calling thread's deadline right
after connecting (or when a pooled connection is reused), and one watchdog thread per
process shuts that socket down when the deadline passes, which ends any read or write in
progress. The caller then asks ``finish()`` whether the deadline fired, and treats the
answer as a timeout if it did, whatever the HTTP layer made of the cut connection.

``Slots`` bounds how many calls to one plugin a process makes at once (see docs/shell.md).
"""

import heapq
import itertools
import os
import socket
import threading
import time

from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# Deadlines within this much of each other are handled in one wake-up of the watchdog: a
# deadline fires at most this late, and a busy process wakes the watchdog at most ~50 times
# a second whatever its request rate.
GRANULARITY_S = 0.02


class Deadline:
    """One call's deadline; use as a context manager around the call in the calling thread."""

    __slots__ = ("at", "timeout_s", "fired", "done", "_watch", "_previous")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.at = time.monotonic() + timeout_s
        self.fired = False
        self.done = False
        self._watch: int | None = None  # our own descriptor of the connection's socket
        self._previous: Deadline | None = None
        _watchdog().add(self)

    def attach(self, sock: socket.socket) -> None:
        """Watch this connection's socket; the watchdog shuts it down at the deadline.

        The watch holds its own duplicate of the descriptor, closed only by ``finish()``: it
        still reaches the connection after TLS wraps the socket or ``http.client`` drops its
        reference, and a descriptor number closed and reused elsewhere can never be shut by
        mistake.
        """
        watch = os.dup(sock.fileno())
        with _lock:
            old, self._watch = self._watch, watch
            if self.fired:
                _shut(watch)
        if old is not None:
            os.close(old)

    def finish(self) -> bool:
        """Stop watching; return True if the deadline fired (the answer is then incomplete)."""
        with _lock:
            self.done = True
            watch, self._watch = self._watch, None
        if watch is not None:
            os.close(watch)
        return self.fired

    def __enter__(self) -> "Deadline":
        self._previous = getattr(_current, "deadline", None)
        _current.deadline = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.deadline = self._previous
        self.finish()


_current = threading.local()  # the deadline of the call the thread is making, if any
_lock = threading.Lock()


def _shut(fd: int) -> None:
    """Shut the connection down for both directions: a blocked read or write returns now."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # the peer has already gone
        pass
    finally:
        sock.detach()  # the descriptor stays ours until finish() closes it


class _Watchdog:
    """A heap of deadlines and the one thread that fires them, per process."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Deadline]] = []
        self.order = itertools.count()
        self.wake = threading.Condition(_lock)
        self.thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with _lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.run, name="plugin-deadlines", daemon=True
                )
                self.thread.start()
            heapq.heappush(self.heap, (deadline.at, next(self.order), deadline))
            if self.heap[0][2] is deadline:
                self.wake.notify()

    def holds(self, deadline: Deadline) -> bool:
        with _lock:
            return any(entry[2] is deadline for entry in self.heap)

    def run(self) -> None:
        with _lock:
            while True:
                if not self.heap:
                    self.wake.wait()
                    continue
                now = time.monotonic()
                if self.heap[0][0] > now:
                    self.wake.wait(self.heap[0][0] - now + GRANULARITY_S)
                    continue
                while self.heap and self.heap[0][0] <= now:
                    _, _, deadline = heapq.heappop(self.heap)
                    if not deadline.done:
                        deadline.fired = True
                        if deadline._watch is not None:
                            _shut(deadline._watch)


_dog: _Watchdog | None = None


def _watchdog() -> _Watchdog:
    global _dog
    if _dog is None:
        with _lock:
            if _dog is None:
                _dog = _Watchdog()
    return _dog


def _after_fork() -> None:
    """A forked child has no watchdog thread and must not inherit a lock held at fork time."""
    global _dog, _lock, _current
    _lock = threading.Lock()
    _dog = None
    _current = threading.local()
    _slots.clear()


def watching(deadline: Deadline) -> bool:
    """Tell whether the watchdog still holds ``deadline`` (it lets go once the time passes)."""
    return _watchdog().holds(deadline)


# --- connections that attach themselves to the calling thread's deadline ----------------------


class _Watched:
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:  # before any TLS handshake, which must not outlast it either
            deadline.attach(sock)
        return sock

    def request(self, *args, **kwargs) -> None:
        deadline = getattr(_current, "deadline", None)
        if deadline is not None and self.sock is not None:  # type: ignore[attr-defined]
            deadline.attach(self.sock)  # type: ignore[attr-defined]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def pool_manager(**kwargs: object) -> PoolManager:
    """A ``urllib3.PoolManager`` whose connections obey the calling thread's ``Deadline``.

    A bare ``PoolManager`` reads no environment proxy and keeps no cookies.
    """
    manager = PoolManager(**kwargs)
    manager.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}
    return manager


# --- how many calls to one plugin at once ------------------------------------------------------


class Slots:
    """At most ``limit`` calls to one plugin at once in this process; use ``take``/``give``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = threading.BoundedSemaphore(limit)

    def take(self, wait_s: float) -> bool:
        return self.free.acquire(timeout=wait_s)

    def give(self) -> None:
        self.free.release()


_slots: dict[tuple[str, int], Slots] = {}


def slots_for(key: str, limit: int) -> Slots:
    """Return this process's slots for one plugin (a changed limit gets fresh slots)."""
    slots = _slots.get((key, limit))
    if slots is None:
        slots = _slots.setdefault((key, limit), Slots(limit))
    return slots


os.register_at_fork(after_in_child=_after_fork)
