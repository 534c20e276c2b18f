"""The session manager's link to each actuator: its command topic and lifecycle service."""

from typing import Optional

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from std_msgs.msg import Float64

__all__ = ['ActuatorLink']


class ActuatorLink:
    """
    One actuator driver, named by its fully qualified node name (e.g. /left_motor).

    Commands go to `<name>/command` (std_msgs/Float64); stops go through the standard lifecycle
    service `<name>/change_state` (deactivate), so any lifecycle driver can be managed.
    """

    def __init__(self, node: Node, name: str, callback_group: CallbackGroup) -> None:
        self.name = name
        self._publisher = node.create_publisher(Float64, f'{name}/command', 10)
        self._change_state = node.create_client(
            ChangeState, f'{name}/change_state', callback_group=callback_group)
        # Set when the manager stopped the driver; the next command of a live session
        # reactivates it first, then delivers `pending_value`.
        self.stopped_by_manager = False
        self.activating = False
        self.pending_value = 0.0

    def send(self, value: float) -> None:
        self._publisher.publish(Float64(data=value))

    def deactivate(self) -> Optional[Future]:
        """Ask the driver to deactivate; None if its lifecycle service is not there."""
        return self._transition(Transition.TRANSITION_DEACTIVATE)

    def activate(self) -> Optional[Future]:
        """Ask the driver to activate; None if its lifecycle service is not there."""
        return self._transition(Transition.TRANSITION_ACTIVATE)

    def _transition(self, transition_id: int) -> Optional[Future]:
        if not self._change_state.service_is_ready():
            return None
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._change_state.call_async(request)
