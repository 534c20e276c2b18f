"""
Which publishers may drive an actuator: the named command source only (no ROS).

A driver's `~/command` topic is open to any node on the domain: `ros2 topic pub`, a stray
teleop, a node left over from a test. Without a check, such a publisher drives the motor
directly, without a session, and against a live session the motor follows whichever wrote
last, while the session manager still reports the session as its owner. With `command_source`
set (the session manager's fully qualified name), a driver takes commands only from that node's
writers: each message carries its writer's GID, and the ROS graph says which node a GID belongs
to. Anything else is dropped before it reaches the outputs or feeds the watchdog, counted for
diagnostics and logged (throttled).

Where a message comes without its writer's GID (rclpy before Kilted has no `publisher_gid` in
`MessageInfo`), it cannot be told apart: it is accepted only while every writer on the topic
belongs to the source, so a foreign writer stops everything (the watchdog then makes the
outputs safe) rather than driving.

Node names are not authenticated: a process that names itself after the source gets through.
This guards against mistakes and ROS-level tooling, not against a malicious participant; only
DDS Security (SROS2) permissions decide who may publish on a topic (docs/security.md).
"""

from typing import Callable, Dict, Iterable, Optional, Tuple

__all__ = ['CommandSource', 'resolve_source']

# A GID seen once is remembered (a writer's node never changes); bounded against a flood of
# short-lived writers.
MAX_REMEMBERED_WRITERS = 1024
# What the ROS graph names a writer's node before that node's discovery information arrived
# (rmw's placeholder): not the writer's node, so never remembered as it.
UNKNOWN_NODE_NAME = '_NODE_NAME_UNKNOWN_'


def resolve_source(source: str, namespace: str) -> str:
    """Return `source` as a fully qualified node name: relative names are in `namespace`."""
    if not source or source.startswith('/'):
        return source
    return f'{namespace.rstrip("/")}/{source}'


class CommandSource:
    """
    Decide, per command, whether its writer belongs to the source node.

    `writers()` returns (fully qualified node name, GID bytes) of every writer on the command
    topic, as the ROS graph knows them. An empty `source` accepts every writer.
    """

    def __init__(self, source: str,
                 writers: Callable[[], Iterable[Tuple[str, bytes]]]) -> None:
        self.source = source
        self._writers = writers
        self._known: Dict[bytes, str] = {}   # GID -> its node
        self.dropped = 0
        self.last_dropped_from = ''

    def accepts(self, gid: Optional[bytes]) -> bool:
        """Return whether a command written by `gid` may drive; count it if not."""
        if not self.source:
            return True
        if gid is None:
            nodes = {node for node, _ in self._writers()}
            if nodes == {self.source}:
                return True
            self.dropped += 1
            foreign = sorted(nodes - {self.source})
            self.last_dropped_from = (f'unknown (no writer GID; other writers: {foreign})'
                                      if foreign else 'unknown (no writer GID)')
            return False
        node = self._node_of(gid)
        if node == self.source:
            return True
        self.dropped += 1
        self.last_dropped_from = node or 'a writer not (yet) in the ROS graph'
        return False

    def describe(self) -> str:
        """Return what diagnostics show: the source and how many commands were dropped."""
        if not self.source:
            return 'any publisher'
        text = f'{self.source} only'
        if self.dropped:
            text += (f'; {self.dropped} command(s) from other publishers dropped, last from '
                     f'{self.last_dropped_from}')
        return text

    def _node_of(self, gid: bytes) -> Optional[str]:
        node = self._known.get(gid)
        if node is None:
            # Not cached: look in the graph once. A writer not there yet, or there under the
            # placeholder name (its node's discovery information can arrive after its
            # endpoint and its first message), is not remembered: it is looked for again.
            for name, writer_gid in self._writers():
                if writer_gid == gid and UNKNOWN_NODE_NAME not in name:
                    if len(self._known) >= MAX_REMEMBERED_WRITERS:
                        self._known.clear()
                    self._known[gid] = node = name
                    break
        return node
