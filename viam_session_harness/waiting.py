"""
Wait, with a deadline, for a state that announces no change: the one place that polls.

Most of what tests wait for has an event (a subscription's callback, a future's done
callback, a file's inotify write): wait on that. A few states have none a test can wait on:
the ROS graph as rclpy shows it, another process's control socket, a node's state behind a
service. `poll_until` reads those again every `interval_s` until the predicate holds, and
raises TimeoutError naming `what` past `timeout_s`, so a loaded machine only makes a wait
longer, never a test wrong.
"""

import time
from typing import Callable, TypeVar

__all__ = ['poll_until']

T = TypeVar('T')


def poll_until(read: Callable[[], T], *, timeout_s: float, what: str,
               interval_s: float = 0.01) -> T:
    """Return the first truthy `read()`; TimeoutError naming `what` past `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what} within {timeout_s} s')
        time.sleep(interval_s)
