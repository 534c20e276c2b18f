"""
Self-protection of a node driven through `~/command`: trip when commands stop.

Two things trip it, and either calls `on_trip(reason)` on the node's executor:

- no valid command for `timeout_s` (a steady-clock timer, re-armed by `feed()`): covers a
  publisher that is alive but silent, or one whose first command never came;
- the command publisher's liveliness lost: the subscription requests liveliness AUTOMATIC with
  lease `timeout_s`, so DDS reports a dead or partitioned publisher (the session manager's
  keep-alive, a teleop) even while the timer is not armed.

`timeout_s` 0 switches both off (plain QoS, no timer) for one-shot publishers.
"""

from typing import Any, Callable, Optional

from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.event_handler import QoSLivelinessChangedInfo, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from rclpy.timer import Timer

__all__ = ['CommandWatchdog', 'command_subscription_qos']


def command_subscription_qos(command_timeout_s: float) -> QoSProfile:
    """Return the QoS of a `~/command` subscription (liveliness lease = timeout when > 0)."""
    if command_timeout_s <= 0.0:
        return QoSProfile(depth=10)
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      liveliness=LivelinessPolicy.AUTOMATIC,
                      liveliness_lease_duration=Duration(seconds=command_timeout_s))


class CommandWatchdog:
    """The `~/command` subscription of `node` and the watchdog guarding it (module docstring)."""

    def __init__(self, node: Node, message_type: type, callback: Callable[[Any], None], *,
                 timeout_s: float, on_trip: Callable[[str], None]) -> None:
        self.timeout_s = timeout_s
        self._on_trip = on_trip
        self._logger = node.get_logger()
        self._timer: Optional[Timer] = None
        events = None
        if timeout_s > 0.0:
            self._timer = node.create_timer(
                timeout_s, self._expired, clock=Clock(clock_type=ClockType.STEADY_TIME),
                autostart=False)
            events = SubscriptionEventCallbacks(liveliness=self._liveliness)
        self.subscription: Subscription = node.create_subscription(
            message_type, '~/command', callback, command_subscription_qos(timeout_s),
            event_callbacks=events)

    def feed(self) -> None:
        """Re-arm the timer: a valid command came now."""
        if self._timer is not None:
            self._timer.reset()

    def cancel(self) -> None:
        """Disarm the timer (nothing is driven, so nothing to guard)."""
        if self._timer is not None:
            self._timer.cancel()

    def _expired(self) -> None:
        self.cancel()
        self._on_trip(f'no valid command for {self.timeout_s:g} s')

    def _liveliness(self, info: QoSLivelinessChangedInfo) -> None:
        if info.alive_count == 0 and info.alive_count_change < 0:
            self._logger.info('no command publisher is alive any more')
            self._on_trip('the command publisher lost liveliness')
