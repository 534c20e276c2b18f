"""
The lifecycle node every node of this package is built on: invalid transitions are refused.

A client may ask any lifecycle node for any transition at any time (`ros2 lifecycle set`, a
raw `lifecycle_msgs/srv/ChangeState` call, a supervisor whose request crosses a session
manager's deactivation): a second `activate`, `deactivate` on an unconfigured node, `cleanup`
on an active one, an id that is no transition at all. Kilted's rclpy answers those with
success=False. Jazzy's (7.1) lets rcl's `RCLError: ... Transition is not registered` out of the
change_state service callback; the executor raises it and `node_runner` ends the process as
after any exception in a callback (the outputs go safe, but the node is gone).

`GuardedLifecycleNode` checks a request by id against the transitions of the current state
before rclpy sees it: one it lacks is logged, naming the transition, the state and what the
state allows, and answered success=False, with nothing changed, on every distro. A request
by label is left to rclpy, which already resolves labels within the current state and answers
success=False for one it lacks. Valid requests take rclpy's own path unchanged.
"""

from typing import Any, Dict

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.lifecycle import LifecycleNode

__all__ = ['GuardedLifecycleNode', 'TRANSITION_LABELS']

# Transition ids as lifecycle_msgs names them (3 -> 'activate'), for messages.
TRANSITION_LABELS: Dict[int, str] = {
    getattr(Transition, name): name.removeprefix('TRANSITION_').lower()
    for name in dir(Transition) if name.startswith('TRANSITION_')}


class GuardedLifecycleNode(LifecycleNode):
    """A LifecycleNode whose change_state service refuses a transition its state lacks."""

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        service = self._service_change_state
        self._change_state_checked = service.callback
        service.callback = self._on_change_state

    def _on_change_state(self, request: ChangeState.Request,
                         response: ChangeState.Response) -> ChangeState.Response:
        wanted = request.transition.id
        available = self._state_machine.available_transitions  # (id, label, start..., goal...)
        if request.transition.label or any(entry[0] == wanted for entry in available):
            return self._change_state_checked(request, response)
        self.get_logger().warning(
            f'change_state refused: transition {wanted} '
            f'({TRANSITION_LABELS.get(wanted, "no such transition")}) is not available in state '
            f'{self._state_machine.current_state[1]} (available: '
            f'{", ".join(entry[1] for entry in available) or "none"}); nothing changed')
        response.success = False
        return response
