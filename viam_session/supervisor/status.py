"""
What the supervisor knows of each managed node, and its recovery budget (no ROS).

`TreeStatus` holds, per node of a `PartsTree`, the last lifecycle state seen, whether its
liveliness holds, the last error and the recovery attempts made; it summarises nodes and parts
as diagnostic levels (OK active, WARN inactive or unconfigured, ERROR dead or failed) and as a
JSON-ready listing. One exception: an actuator that sessions stop is idle, and OK, when it is
inactive while it may rest (`allow_rest`: the supervisor has brought the tree up and does not
hold the node down itself): the session manager deactivates it when its session is over, and
that is the robot's resting state between sessions, not a fault.
`RespawnBudget` counts the attempts to bring a failed node back within the last `within_s`
seconds and says how long to wait before the next one (back-off doubling from `backoff_s`), or
that there is none.
"""

from collections import deque
from dataclasses import dataclass
import time
from typing import Any, Callable, Collection, Deque, Dict, List, Optional, Tuple

from viam_session.sessions.described_resources import IDLE
from viam_session.supervisor.tree import PartsTree, Respawn

__all__ = ['ERROR', 'NodeStatus', 'OK', 'RespawnBudget', 'STALE', 'TreeStatus', 'WARN']

# diagnostic_msgs/DiagnosticStatus levels, without importing ROS.
OK, WARN, ERROR, STALE = 0, 1, 2, 3

UNKNOWN = 'unknown'
DEAD = 'dead'
STATE_LEVELS = {'active': OK, 'inactive': WARN, 'unconfigured': WARN, UNKNOWN: WARN,
                'finalized': WARN}


class RespawnBudget:
    """Attempts left to bring one node back, and the back-off before each."""

    def __init__(self, respawn: Respawn,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._respawn = respawn
        self._clock = clock
        self._recent: Deque[float] = deque()

    @property
    def attempts(self) -> int:
        """Return the attempts made within the last `within_s` seconds."""
        self._forget_old()
        return len(self._recent)

    def next_delay(self) -> Optional[float]:
        """Count one more attempt; return the seconds to wait first, None when none is left."""
        if self.attempts >= self._respawn.max_attempts:
            return None
        self._recent.append(self._clock())
        return self._respawn.backoff_s * 2.0 ** (len(self._recent) - 1)

    def reset(self) -> None:
        """Start counting again (the node has been brought up on purpose)."""
        self._recent.clear()

    def _forget_old(self) -> None:
        horizon = self._clock() - self._respawn.within_s
        while self._recent and self._recent[0] <= horizon:
            self._recent.popleft()


@dataclass
class NodeStatus:
    """One managed node as the supervisor last saw it."""

    name: str
    part: str
    state: str = UNKNOWN
    alive: Optional[bool] = None      # None: liveliness not seen yet
    error: str = ''
    pid: Optional[int] = None
    parked: bool = False
    may_rest: bool = False    # an actuator sessions stop, in a tree that is up (allow_rest)

    @property
    def idle(self) -> bool:
        """Return whether the node is at rest between sessions (module docstring)."""
        return (self.may_rest and self.state == 'inactive' and self.alive is not False
                and not self.error)

    @property
    def level(self) -> int:
        if self.alive is False or self.state == DEAD:
            return ERROR
        if self.error:
            return ERROR
        if self.idle:
            return OK
        return STATE_LEVELS.get(self.state, ERROR)

    def message(self) -> str:
        text = DEAD if self.alive is False else IDLE if self.idle else self.state
        if self.parked:
            text += ', lines parked at their safe level by the supervisor'
        return f'{text}: {self.error}' if self.error else text


class TreeStatus:
    """Every node's status, by fully qualified name; parts summarised from their nodes."""

    def __init__(self, tree: PartsTree) -> None:
        self._tree = tree
        self.nodes: Dict[str, NodeStatus] = {
            fqn: NodeStatus(name=fqn, part=node.part) for fqn, node in tree.nodes.items()}
        self.budgets: Dict[str, RespawnBudget] = {
            fqn: RespawnBudget(node.respawn) for fqn, node in tree.nodes.items()}

    def set_state(self, fqn: str, state: str, error: str = '') -> bool:
        """Record a lifecycle state (and error, '' clears it); return True if anything changed."""
        status = self.nodes[fqn]
        changed = (status.state, status.error) != (state, error)
        status.state, status.error = state, error
        return changed

    def allow_rest(self, fqns: Collection[str]) -> bool:
        """Let exactly these nodes rest inactive as idle (OK); return True if anything changed."""
        changed = False
        for fqn, status in self.nodes.items():
            may_rest = fqn in fqns
            changed = changed or status.may_rest != may_rest
            status.may_rest = may_rest
        return changed

    def set_alive(self, fqn: str, alive: bool) -> bool:
        """Record the node's liveliness; return True if it changed."""
        status = self.nodes[fqn]
        changed = status.alive != alive
        status.alive = alive
        if not alive:
            status.state = DEAD
        return changed

    def part_level(self, part: str) -> Tuple[int, str]:
        """Return the worst level of the part's own nodes and a message naming the worst."""
        nodes = [self.nodes[fqn] for fqn in self._tree.parts[part].nodes]
        if not nodes:
            return OK, 'no managed nodes'
        worst = max(node.level for node in nodes)
        if worst == OK:
            idle = sum(1 for node in nodes if node.idle)
            return OK, f'{len(nodes) - idle} node(s) active' + (
                f', {idle} idle (no session)' if idle else '')
        names = [node.name for node in nodes if node.level == worst]
        return worst, f'{", ".join(names)}: {self.nodes[names[0]].message()}'

    def listing(self) -> Dict[str, Any]:
        """Return every part and node as plain data (for JSON)."""
        return {
            'robot': self._tree.name,
            'parts': {name: {'level': self.part_level(name)[0], 'nodes': list(part.nodes)}
                      for name, part in self._tree.parts.items()},
            'nodes': {fqn: {'part': s.part, 'state': s.state, 'alive': s.alive,
                            'error': s.error, 'pid': s.pid, 'parked': s.parked, 'idle': s.idle,
                            'attempts': self.budgets[fqn].attempts}
                      for fqn, s in self.nodes.items()},
        }

    def not_active(self) -> List[str]:
        """Return the nodes not active, in description order."""
        return [fqn for fqn, status in self.nodes.items() if status.state != 'active']
