"""The session manager's link to each actuator: its command topic and lifecycle service."""

import math
import time
from typing import Optional

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import CallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from std_msgs.msg import Bool, Float64

__all__ = ['ActuatorLink', 'command_qos']

# How long a driver's watchdog timeout, read from the ROS graph, is taken as known.
WATCHDOG_TIMEOUT_TTL_S = 1.0
# A requested lease at least this long is no lease (the default QoS asks for an infinite one).
NO_LEASE_S = 1e6


def command_qos(lease_s: float) -> QoSProfile:
    """
    Return the QoS of the manager's command publishers.

    Liveliness MANUAL_BY_TOPIC with a short lease: drivers that protect themselves (their
    command watchdog) request a lease no shorter, and see the publisher lose liveliness, and
    stop, when the manager dies or its executor stalls.
    """
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
                      liveliness_lease_duration=Duration(nanoseconds=int(lease_s * 1e9)))


class ActuatorLink:
    """
    One actuator driver, named by its fully qualified node name (e.g. /left_motor).

    Commands go to `<name>/command` (std_msgs/Float64, or std_msgs/Bool with `boolean`: value
    != 0 is true, for the GPIO output driver); stops go through the standard lifecycle
    service `<name>/change_state` (deactivate), so any lifecycle driver can be managed; a
    refused one is judged by `<name>/get_state` (not active is stopped).
    """

    def __init__(self, node: Node, name: str, callback_group: CallbackGroup, *,
                 lease_s: float, boolean: bool = False) -> None:
        self.name = name
        self._node = node
        self._boolean = boolean
        self._topic = f'{name}/command'
        self._publisher = node.create_publisher(Bool if boolean else Float64, self._topic,
                                                command_qos(lease_s))
        self._change_state = node.create_client(
            ChangeState, f'{name}/change_state', callback_group=callback_group)
        self._get_state = node.create_client(
            GetState, f'{name}/get_state', callback_group=callback_group)
        # Set when the manager stopped the driver; the next command of a live session
        # reactivates it first, then delivers `pending_value`.
        self.stopped_by_manager = False
        self.activating = False
        self.stops = 0  # stops requested so far: an activation older than a stop is stale
        self.pending_value = 0.0
        self.problem = ''  # the last stop or reactivation that failed, for diagnostics
        self._watchdog_timeout: Optional[float] = None
        self._watchdog_timeout_read = -math.inf

    def watchdog_timeout_s(self) -> Optional[float]:
        """
        Return how long the driver may go without a command before its watchdog may stop it.

        That is the liveliness lease its `<name>/command` subscription requests (the drivers'
        `command_timeout_s`), the shortest if several listen; infinite for a driver without a
        watchdog; None while no subscriber is known. Read from the ROS graph at most once a
        second.
        """
        now = time.monotonic()
        if now - self._watchdog_timeout_read >= WATCHDOG_TIMEOUT_TTL_S:
            leases = [info.qos_profile.liveliness_lease_duration.nanoseconds * 1e-9
                      for info in self._node.get_subscriptions_info_by_topic(self._topic)]
            leases = [math.inf if lease <= 0 or lease >= NO_LEASE_S else lease
                      for lease in leases]
            self._watchdog_timeout = min(leases) if leases else None
            self._watchdog_timeout_read = now if leases else -math.inf
        return self._watchdog_timeout

    def send(self, value: float) -> None:
        """Publish a command (from any thread: keep-alives come from a thread of their own)."""
        self._publisher.publish(Bool(data=value != 0.0) if self._boolean else Float64(data=value))

    def deactivate(self) -> Optional[Future]:
        """Ask the driver to deactivate; None if its lifecycle service is not there."""
        return self._transition(Transition.TRANSITION_DEACTIVATE)

    def activate(self) -> Optional[Future]:
        """Ask the driver to activate; None if its lifecycle service is not there."""
        return self._transition(Transition.TRANSITION_ACTIVATE)

    def get_state(self) -> Optional[Future]:
        """Ask the driver for its lifecycle state; None if its lifecycle service is not there."""
        if not self._get_state.service_is_ready():
            return None
        return self._get_state.call_async(GetState.Request())

    def _transition(self, transition_id: int) -> Optional[Future]:
        if not self._change_state.service_is_ready():
            return None
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._change_state.call_async(request)
