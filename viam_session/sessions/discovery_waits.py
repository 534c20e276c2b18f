"""
Start requests waiting to discover their client's command publisher, checked all at once.

A start that names its client's node is answered only once the manager sees that node's
publisher on `~/command` (so no early command is lost), or refused when the discovery timeout
passes. With a poll timer and a deadline timer per waiting request, a thousand of them (a
fleet reconnecting, or a flood of names nobody has) put two thousand timers in every wait set
of the manager's executor and a graph query per poll per request; here one periodic check,
one graph query, serves every waiting request. ROS-free: the node passes what it sees and the
clock.
"""

from typing import Callable, List, Set, Tuple

__all__ = ['DiscoveryWaits']


class DiscoveryWaits:
    """Nodes waited for, each with a deadline and what to call with the outcome."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._waits: List[Tuple[str, float, Callable[[bool], None]]] = []

    def __len__(self) -> int:
        return len(self._waits)

    def add(self, node: str, timeout_s: float, on_done: Callable[[bool], None]) -> None:
        """Wait for `node`: `on_done(True)` once it is seen, `on_done(False)` after `timeout_s`."""
        self._waits.append((node, self._clock() + timeout_s, on_done))

    def check(self, seen: Set[str]) -> None:
        """Conclude the waits for nodes in `seen`, and those past their deadline."""
        now = self._clock()
        waiting = []
        for wait in self._waits:
            node, deadline, on_done = wait
            if node in seen:
                on_done(True)
            elif now >= deadline:
                on_done(False)
            else:
                waiting.append(wait)
        self._waits = waiting
