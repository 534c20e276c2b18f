"""
Know the moment a driver process started by the supervisor exits (no ROS).

Liveliness reports a dead node one lease after its last assertion, and on a loaded machine it
also reports live nodes that were late. The supervisor's own children need neither: the
kernel says when they exit. `ProcessExitWatch` holds a pidfd per process (Linux 5.3 and later)
and, from one thread of its own, calls `on_exit(key, pid)` once per process as soon as it has
exited. It never reaps (the owner's `Popen.poll()` does), so the exit status stays readable.
"""

import os
import selectors
import threading
from typing import Callable, List, Tuple

__all__ = ['ProcessExitWatch']


class ProcessExitWatch:
    """Call `on_exit(key, pid)` from a thread of its own when a watched process exits."""

    def __init__(self, on_exit: Callable[[str, int], None]) -> None:
        self._on_exit = on_exit
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._pending: List[Tuple[str, int]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name='process_exit_watch',
                                        daemon=True)
        self._thread.start()

    def watch(self, key: str, pid: int) -> None:
        """Report when process `pid` (a child not yet reaped) exits, as `key`."""
        with self._lock:
            self._pending.append((key, pid))
        os.write(self._wake_write, b'.')

    def close(self) -> None:
        """Stop watching; no report is made after this returns."""
        with self._lock:
            self._closed = True
        os.write(self._wake_write, b'.')
        self._thread.join(timeout=5.0)
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                os.close(key.fd)
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    os.read(self._wake_read, 4096)
                    if not self._apply_pending():
                        return
                    continue
                self._selector.unregister(key.fd)
                os.close(key.fd)
                name, pid = key.data
                with self._lock:
                    if self._closed:
                        return
                self._on_exit(name, pid)

    def _apply_pending(self) -> bool:
        """Register the processes queued by `watch`; return False once closed."""
        with self._lock:
            if self._closed:
                return False
            pending, self._pending = self._pending, []
        for name, pid in pending:
            try:
                descriptor = os.pidfd_open(pid)
            except ProcessLookupError:   # already reaped: it has exited
                self._on_exit(name, pid)
                continue
            self._selector.register(descriptor, selectors.EVENT_READ, (name, pid))
        return True
