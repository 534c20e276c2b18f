"""Wake a thread when a file is written, by Linux inotify, with a way to interrupt the wait."""

import ctypes
import ctypes.util
import os
from pathlib import Path
import select
from typing import Union

__all__ = ['FileWatch']

_IN_MODIFY = 0x00000002


class FileWatch:
    """
    Wait until the file at `path` is written to (by any process), or until interrupted.

    A write that happens after construction and before a `wait()` makes that wait return at
    once, so a reader that reads the file, then waits, never misses a write.
    """

    def __init__(self, path: Union[str, Path]) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f'inotify_init1: {os.strerror(error)}')
        if libc.inotify_add_watch(self._fd, os.fsencode(str(path)), _IN_MODIFY) < 0:
            error = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(error, f'inotify_add_watch {path}: {os.strerror(error)}')
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._poll.register(self._wake_read, select.POLLIN)

    def wait(self, timeout_s: float) -> bool:
        """Wait for a write or `timeout_s`; return False once interrupt() was called."""
        ready = {fd for fd, _ in self._poll.poll(int(timeout_s * 1000))}
        if self._wake_read in ready:
            return False
        if self._fd in ready:
            try:
                while os.read(self._fd, 4096):
                    pass
            except BlockingIOError:
                pass  # drained
        return True

    def interrupt(self) -> None:
        """Make the current and every later wait() return False."""
        os.write(self._wake_write, b'x')

    def close(self) -> None:
        """Close the inotify instance and the wake-up pipe (after the waiting thread ended)."""
        for fd in (self._fd, self._wake_read, self._wake_write):
            os.close(fd)
