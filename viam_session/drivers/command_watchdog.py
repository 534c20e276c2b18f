"""
Self-protection of a node driven through `~/command`: trip when commands stop.

Two things trip it, and either calls `on_trip(reason)` on the node's executor:

- no valid command for `timeout_s` (a steady-clock timer, re-armed by `feed()`): covers a
  publisher that is alive but silent, or one whose first command never came;
- the command publisher's liveliness lost: the subscription requests liveliness AUTOMATIC with
  lease `timeout_s`, so DDS reports a dead or partitioned publisher (the session manager's
  keep-alive, a teleop) even while the timer is not armed.

`timeout_s` 0 switches both off (plain QoS, no timer) for one-shot publishers.

With a `source` (a fully qualified node name), only that node's writers are heard: other
commands are dropped before the callback, so they neither drive nor feed the timer
(`command_source`). A foreign writer can still keep the liveliness count above zero, which
is why the timer, fed by accepted commands only, is the check that always holds.
"""

from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.event_handler import QoSLivelinessChangedInfo, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from rclpy.timer import Timer

from viam_session.drivers.command_source import CommandSource

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
                 timeout_s: float, on_trip: Callable[[str], None], source: str = '') -> None:
        self.timeout_s = timeout_s
        self._on_trip = on_trip
        self._callback = callback
        self._node = node
        self._logger = node.get_logger()
        self.source = CommandSource(source, self._writers)
        self._timer: Optional[Timer] = None
        events = None
        if timeout_s > 0.0:
            self._timer = node.create_timer(
                timeout_s, self._expired, clock=Clock(clock_type=ClockType.STEADY_TIME),
                autostart=False)
            events = SubscriptionEventCallbacks(liveliness=self._liveliness)
        self.subscription: Subscription = node.create_subscription(
            message_type, '~/command', self._on_message, command_subscription_qos(timeout_s),
            event_callbacks=events)

    def feed(self) -> None:
        """Re-arm the timer: a valid command came now."""
        if self._timer is not None:
            self._timer.reset()

    def cancel(self) -> None:
        """Disarm the timer (nothing is driven, so nothing to guard)."""
        if self._timer is not None:
            self._timer.cancel()

    def _on_message(self, message: Any, info: Dict[str, Any]) -> None:
        # rclpy passes the MessageInfo dict; `publisher_gid` only from Kilted on.
        gid = info.get('publisher_gid')
        if self.source.accepts(bytes(gid['data']) if gid else None):
            self._callback(message)
            return
        self._logger.warning(
            f'command dropped: not from {self.source.source} but from '
            f'{self.source.last_dropped_from} ({self.source.dropped} dropped so far)',
            throttle_duration_sec=1.0)

    def _writers(self) -> Iterator[Tuple[str, bytes]]:
        for info in self._node.get_publishers_info_by_topic(self.subscription.topic_name):
            yield (f'{info.node_namespace.rstrip("/")}/{info.node_name}',
                   bytes(info.endpoint_gid))

    def _expired(self) -> None:
        self.cancel()
        self._on_trip(f'no valid command for {self.timeout_s:g} s')

    def _liveliness(self, info: QoSLivelinessChangedInfo) -> None:
        if info.alive_count == 0 and info.alive_count_change < 0:
            self._logger.info('no command publisher is alive any more')
            self._on_trip('the command publisher lost liveliness')
