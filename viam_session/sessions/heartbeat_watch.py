"""
Per-session heartbeat subscriptions that report DDS liveliness, on a node and thread of their own.

Each session has its own heartbeat topic, written by its client with liveliness
MANUAL_BY_TOPIC. The client asserts liveliness about five times per window; DDS checks the
lease below Python, so a live session costs the robot no Python work at all. The subscription's
liveliness event says when the writer became alive and when it lost liveliness (no assertion
for a full lease), which is exactly when the session expires. One topic per session is needed
because the event carries counts, not which writer changed.

The subscriptions live on a node spun by an executor of their own, in a thread of their own:
rclpy rebuilds its wait set on every wake-up, and a thousand subscriptions on the manager's own
executor would make every service call and command pay for them. Events are handed to the
manager through `post` (an executor's thread-safe `create_task`), so all session state stays
on the manager's thread.
"""

import threading
from typing import Callable, Dict

from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.event_handler import (
    QoSLivelinessChangedInfo, QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks)
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy, LivelinessPolicy, qos_policy_name_from_kind, QoSProfile, ReliabilityPolicy)
from rclpy.subscription import Subscription

from viam_session_interfaces.msg import Heartbeat

__all__ = ['heartbeat_qos', 'HeartbeatWatch']


def heartbeat_qos(window_s: float) -> QoSProfile:
    """Return the QoS of a session's heartbeat topic: the liveliness lease is the window."""
    return QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
        liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
        liveliness_lease_duration=Duration(nanoseconds=int(round(window_s * 1e9))))


class HeartbeatWatch:
    """
    Watch the liveliness of heartbeat topics; report changes to the owner's thread.

    `on_liveliness(topic, alive)` runs when a topic's writers become alive (at least one) or
    all lose liveliness; `on_incompatible(topic, policy)` when a writer's QoS cannot match
    (for instance a lease longer than the window). Both are passed to `post`, which must run
    them on the owner's executor.
    """

    def __init__(self, *, context: Context, node_name: str, namespace: str,
                 post: Callable[..., object],
                 on_liveliness: Callable[[str, bool], None],
                 on_incompatible: Callable[[str, str], None]) -> None:
        self._post = post
        self._on_liveliness = on_liveliness
        self._on_incompatible = on_incompatible
        self._node = Node(node_name, namespace=namespace, context=context,
                          start_parameter_services=False)
        self._subscriptions: Dict[str, Subscription] = {}
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(
            target=self._executor.spin, name=f'{node_name}_executor', daemon=True)
        self._spinner.start()

    def watch(self, topic: str, window_s: float) -> None:
        """Subscribe to `topic` with lease `window_s`; raise ValueError for a bad name."""
        if topic in self._subscriptions:
            return
        events = SubscriptionEventCallbacks(
            liveliness=lambda info: self._liveliness_changed(topic, info),
            incompatible_qos=lambda info: self._incompatible(topic, info),
            use_default_callbacks=False)
        try:
            self._subscriptions[topic] = self._node.create_subscription(
                Heartbeat, topic, lambda _: None, heartbeat_qos(window_s),
                event_callbacks=events)
        except Exception as error:  # noqa: B902 - rclpy raises several name errors
            raise ValueError(f'bad heartbeat topic {topic!r}: {error}') from error

    def unwatch(self, topic: str) -> None:
        """Stop watching `topic` (no effect if it is not watched)."""
        subscription = self._subscriptions.pop(topic, None)
        if subscription is not None:
            self._node.destroy_subscription(subscription)

    def close(self) -> None:
        """Stop the thread and destroy the node."""
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=2.0)
        self._node.destroy_node()

    def _liveliness_changed(self, topic: str, info: QoSLivelinessChangedInfo) -> None:
        if info.alive_count_change > 0:
            self._post(self._on_liveliness, topic, True)
        elif info.alive_count_change < 0 and info.alive_count == 0:
            self._post(self._on_liveliness, topic, False)

    def _incompatible(self, topic: str, info: QoSRequestedIncompatibleQoSInfo) -> None:
        self._post(self._on_incompatible, topic,
                   qos_policy_name_from_kind(info.last_policy_kind))
