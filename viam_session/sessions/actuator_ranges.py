"""
What each actuator accepts, for the session manager: from the description, or from its driver.

The manager refuses a command its driver would refuse before it changes the actuator's owner or
relays anything, so it needs each actuator's range (`viam_session.command_ranges`):

- an actuator of the robot description: computed from the description's parameters, at start;
- one named only by the `actuators` parameter: read from the driver itself, its read-only
  parameters `command_min` and `command_max` through its `get_parameters` service. It is asked
  once at start (the request sent again each ATTEMPT_S it goes unanswered) and, while unknown,
  again at the next command. A command that comes before the answer waits for it (bounded by
  the manager's discovery timeout), in order, and is then checked; if no answer comes, or the
  driver declares no range, the command is refused with the reason. Nothing is relayed
  unchecked.

The range is read once per manager: the parameters are read-only, and a driver respawned from
the same description declares the same ones.
"""

import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from viam_session.command_ranges import CommandRange
from viam_session.supervisor.lifecycle_link import bounded, sleep

__all__ = ['ActuatorRanges', 'MAX_WAITING_COMMANDS', 'RANGE_PARAMETERS']

RANGE_PARAMETERS = ['command_min', 'command_max']
# Commands to one actuator that may wait for its range; more are refused.
MAX_WAITING_COMMANDS = 100
# How often a request looks again for a parameter service not discovered yet.
DISCOVERY_POLL_S = 0.02
# How long one request may go unanswered before it is sent again (below the timeout). A server
# that has not matched the asker's reply reader yet drops its reply ("failed to send response
# (timeout)" in the driver's log): the request was answered once, and never would be again.
ATTEMPT_S = 1.0


class ActuatorRanges:
    """The command range of each actuator, known or asked of its driver (single-threaded)."""

    def __init__(self, node: Node, known: Mapping[str, CommandRange], asked: Iterable[str],
                 group: CallbackGroup, *, timeout_s: float) -> None:
        self._node = node
        self._group = group
        self._timeout_s = timeout_s
        self._known: Dict[str, CommandRange] = dict(known)
        self._clients = {
            name: node.create_client(GetParameters, f'{name}/get_parameters',
                                     callback_group=group)
            for name in asked if name not in self._known}
        self._waiting: Dict[str, List[Callable[[str], None]]] = {}
        self._asking: Set[str] = set()

    def get(self, name: str) -> Optional[CommandRange]:
        """Return the range of `name`, or None while it is not known."""
        return self._known.get(name)

    def ask_all(self) -> None:
        """Ask every driver whose range is not known yet (from the executor)."""
        for name in self._clients:
            self._ask(name)

    def when_known(self, name: str, then: Callable[[str], None]) -> None:
        """
        Call `then('')` once the range of `name` is known, or `then(why not)` if it cannot be.

        Callbacks run on the executor, in the order they were given.
        """
        if name in self._known:
            then('')
            return
        waiting = self._waiting.setdefault(name, [])
        if len(waiting) >= MAX_WAITING_COMMANDS:
            then(f'{len(waiting)} commands already wait for its command range')
            return
        waiting.append(then)
        self._ask(name)

    def _ask(self, name: str) -> None:
        if name in self._asking or name in self._known:
            return
        self._asking.add(name)
        self._node.executor.create_task(self._fetch, name)

    async def _fetch(self, name: str) -> None:
        try:
            accepted, problem = await self._read(name)
        finally:
            self._asking.discard(name)
        if accepted is not None:
            self._known[name] = accepted
            self._node.get_logger().info(f'{name} accepts commands in {accepted.describe()}')
        elif name in self._waiting:
            self._node.get_logger().warning(f'command range of {name} unknown: {problem}')
        for then in self._waiting.pop(name, []):
            then(problem)

    async def _read(self, name: str) -> Tuple[Optional[CommandRange], str]:
        """Ask the driver for its range within the timeout; return (range, '') or (None, why)."""
        client = self._clients[name]
        deadline = time.monotonic() + self._timeout_s
        while not client.service_is_ready():
            if time.monotonic() >= deadline:
                return None, (f'its parameter service {client.srv_name} was not found within '
                              f'{self._timeout_s:g} s')
            await sleep(self._node, DISCOVERY_POLL_S, self._group)
        while True:
            future = client.call_async(GetParameters.Request(names=RANGE_PARAMETERS))
            remaining = max(deadline - time.monotonic(), 0.0)
            if await bounded(self._node, future, min(ATTEMPT_S, remaining), self._group) and (
                    future.result() is not None):
                break
            client.remove_pending_request(future)
            if time.monotonic() >= deadline:
                return None, f'{client.srv_name} did not answer within {self._timeout_s:g} s'
        values = future.result().values
        if len(values) != 2 or any(v.type != ParameterType.PARAMETER_DOUBLE for v in values):
            return None, ('its driver declares no command range (read-only double parameters '
                          'command_min and command_max, as viam_session.command_ranges '
                          'computes them)')
        low, high = values[0].double_value, values[1].double_value
        if not low <= high:
            return None, f'its driver declares an empty command range [{low}, {high}]'
        return CommandRange(low, high), ''
