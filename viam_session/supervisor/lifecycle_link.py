"""
Asynchronous lifecycle calls to one managed node, each bounded by a timeout.

Coroutines for the supervisor's executor: they await rclpy futures (never block) and are
bounded by steady-clock timers. rmw_fastrtps may drop a reply when the server has not yet
matched the client's reply reader; a transition whose reply does not come is therefore judged
by the node's state, and get_state is asked again when its reply is lost.
"""

from typing import Optional, Tuple

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import CallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.task import Future

__all__ = ['GOAL_STATES', 'LifecycleLink', 'STATE_LABELS', 'TRANSITION_LABELS', 'bounded',
           'sleep']

STATE_LABELS = {State.PRIMARY_STATE_UNKNOWN: 'unknown',
                State.PRIMARY_STATE_UNCONFIGURED: 'unconfigured',
                State.PRIMARY_STATE_INACTIVE: 'inactive', State.PRIMARY_STATE_ACTIVE: 'active',
                State.PRIMARY_STATE_FINALIZED: 'finalized'}
TRANSITION_LABELS = {Transition.TRANSITION_CONFIGURE: 'configure',
                     Transition.TRANSITION_ACTIVATE: 'activate',
                     Transition.TRANSITION_DEACTIVATE: 'deactivate',
                     Transition.TRANSITION_CLEANUP: 'cleanup'}
GOAL_STATES = {Transition.TRANSITION_CONFIGURE: 'inactive',
               Transition.TRANSITION_ACTIVATE: 'active',
               Transition.TRANSITION_DEACTIVATE: 'inactive',
               Transition.TRANSITION_CLEANUP: 'unconfigured'}
REPLY_POLL_S = 0.5             # past this the state is checked: the reply may be lost
GET_STATE_TIMEOUT_S = 1.0
POLL_S = 0.02                  # discovery has no event in rclpy: look again this often

_STEADY = Clock(clock_type=ClockType.STEADY_TIME)


async def bounded(node: Node, future: Future, timeout_s: float,
                  group: Optional[CallbackGroup] = None) -> bool:
    """Await `future` up to `timeout_s`; True if it is done (it is left running otherwise)."""
    if future.done():
        return True
    waiter = Future()
    future.add_done_callback(lambda _: waiter.done() or waiter.set_result(True))
    timer = node.create_timer(timeout_s, lambda: waiter.done() or waiter.set_result(False),
                              clock=_STEADY, callback_group=group)
    try:
        return await waiter
    finally:
        # Destroying cancels it; once the node itself is destroyed this is a no-op (a task
        # closed at shutdown runs this after the timer is gone).
        node.destroy_timer(timer)


async def sleep(node: Node, seconds: float, group: Optional[CallbackGroup] = None) -> None:
    """Wait `seconds` without blocking the executor."""
    await bounded(node, Future(), seconds, group)


class LifecycleLink:
    """Clients for one node's `change_state` and `get_state`."""

    def __init__(self, node: Node, fqn: str, group: CallbackGroup) -> None:
        self.fqn = fqn
        self._node = node
        self._group = group
        self._change = node.create_client(ChangeState, f'{fqn}/change_state',
                                          callback_group=group)
        self._get = node.create_client(GetState, f'{fqn}/get_state', callback_group=group)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until both services are discovered; False past `timeout_s`."""
        waited = 0.0
        while not (self._change.service_is_ready() and self._get.service_is_ready()):
            if waited >= timeout_s:
                return False
            await sleep(self._node, POLL_S, self._group)
            waited += POLL_S
        return True

    async def state(self, timeout_s: float) -> Optional[str]:
        """Return the node's state label, asking again on lost replies; None past timeout."""
        if not await self.wait_ready(timeout_s):
            return None
        tries = max(1, int(timeout_s / GET_STATE_TIMEOUT_S))
        for _ in range(tries):
            future = self._get.call_async(GetState.Request())
            if await bounded(self._node, future, GET_STATE_TIMEOUT_S, self._group):
                result = future.result()
                if result is not None:
                    return STATE_LABELS.get(result.current_state.id, 'unknown')
        return None

    async def transition(self, transition_id: int, timeout_s: float) -> Tuple[bool, str]:
        """Ask for a transition, then check the state; return (success, state or problem)."""
        label = TRANSITION_LABELS[transition_id]
        if not await self.wait_ready(timeout_s):
            return False, f'lifecycle services not available within {timeout_s:g} s'
        request = ChangeState.Request()
        request.transition.id = transition_id
        future = self._change.call_async(request)
        goal = GOAL_STATES[transition_id]
        waited = 0.0
        while True:
            # A lost reply would leave us waiting: after a short wait the state tells.
            if await bounded(self._node, future, REPLY_POLL_S, self._group):
                break
            waited += REPLY_POLL_S
            state = await self.state(GET_STATE_TIMEOUT_S)
            if state == goal:
                return True, state
            if waited >= timeout_s:
                return False, f'{label}: no answer within {timeout_s:g} s, now {state}'
        state = await self.state(timeout_s)
        if state is None:
            return False, f'{label}: no answer within {timeout_s:g} s'
        if state == goal:
            return True, state
        refused = future.result() is not None and not future.result().success
        return False, f'{label} {"refused" if refused else "did not complete"}, now {state}'
