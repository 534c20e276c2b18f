"""
A net under liveliness: held sessions whose heartbeat writer has left the ROS graph (no ROS).

A session whose writer is alive is held: it has no deadline, and only DDS's "liveliness lost"
report ends it. Should that report never come (it was seen missing after a resume to a new
topic), the session would live on with nobody heartbeating. A writer that is gone from the
ROS graph cannot be asserting, so the manager checks the held sessions' topics about once a
second; `WriterPresence.gone` returns the topics with no writer on this check and the one
before (one check alone could catch the graph mid-update). The manager then lets such a
session's window run from that moment, so it expires one window later unless its writer
shows up alive again.
"""

from typing import Callable, Iterable, List, Set

__all__ = ['WriterPresence']


class WriterPresence:
    """Which topics have had no writer on two checks in a row."""

    def __init__(self, count_writers: Callable[[str], int]) -> None:
        self._count_writers = count_writers
        self._missing: Set[str] = set()

    def gone(self, topics: Iterable[str]) -> List[str]:
        """Check `topics` now; return those missing now and at the previous check."""
        missing = {topic for topic in topics if self._count_writers(topic) == 0}
        gone = sorted(missing & self._missing)
        self._missing = missing
        return gone
