"""
Per-session heartbeat subscriptions that report DDS liveliness, on threads of their own.

Each session has its own heartbeat topic, written by its client with liveliness
MANUAL_BY_TOPIC. The client asserts liveliness about five times per window; DDS checks the
lease below Python, so a live session costs the robot no Python work at all. The subscription's
liveliness event says when the writer became alive and when it lost liveliness (no assertion
for a full lease), which is exactly when the session expires. One topic per session is needed
because the event carries counts, not which writer changed.

Why shards. rclpy rebuilds an executor's wait set on every wake-up, in time that grows faster
than linearly with the number of entities (measured: 19 ms per wake-up with 1024 subscriptions,
0.8 ms with 100). On the manager's own executor that would tax every service call and command;
on one executor of their own it would delay every liveliness event by tens of milliseconds at
1024 sessions. So the subscriptions are spread over shards of at most SHARD_SIZE, each a node
with an executor and a thread of its own, created as sessions arrive.

Thread safety. Subscriptions are created and destroyed only on their shard's own thread:
`watch` and `unwatch` queue the change and wake the shard through a guard condition (destroying
a subscription from another thread while the executor builds its wait set makes rclpy raise
InvalidHandle and kills the executor). Events are handed to the owner through `post` (an
executor's thread-safe `create_task`), so all session state stays on the owner's thread. If a
shard's thread fails anyway, `on_failure` is posted: a watch that no longer watches must not go
unnoticed, since the sessions it held would never expire.

Status reads for topics not heard yet. A writer's first "alive" can fail to reach the
executor as an event, and it is not repeated while the writer stays alive (seen in suite runs:
a writer in the graph and asserting every 50 ms, never heard in 10 s; its session expired one
window after its start). The exact race inside the middleware is not pinned down; the status
itself stays right. So, until a topic is first heard alive, its shard also reads the
subscription's liveliness status, every UNHEARD_POLL_S on its own thread, and reports alive when
the status counts a live writer. Heard topics cost nothing: the reads stop once every topic of
the shard has been heard.

Batches. When a link drops, every session behind it loses liveliness within one assertion
period. The changes are queued in arrival order, and one delivery at a time is posted to the
owner's thread; it takes all those queued by then, so the owner can stop everything the lost
sessions own before it does anything else for them. (A delivery per change made a thousand
expiring sessions a thousand tasks for the owner's executor, which looks at every pending
task before its timers and subscriptions: the owner was busy for seconds.)
"""

from collections import deque
import threading
from typing import Callable, Deque, Dict, List, Tuple

from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.event_handler import (
    QoSLivelinessChangedInfo, QoSRequestedIncompatibleQoSInfo, QoSSubscriptionEventType,
    SubscriptionEventCallbacks)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
# The event handle rclpy's own EventHandler wraps: a second one on the same subscription reads
# its liveliness status when asked, which EventHandler only does once its wait set said so.
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy, LivelinessPolicy, qos_policy_name_from_kind, QoSProfile, ReliabilityPolicy)
from rclpy.subscription import Subscription

from viam_session.sessions.names import check_topic_name
from viam_session_interfaces.msg import Heartbeat

__all__ = ['HEARTBEAT_TYPE', 'heartbeat_qos', 'HeartbeatWatch', 'SHARD_SIZE']

HEARTBEAT_TYPE = 'viam_session_interfaces/msg/Heartbeat'
SHARD_SIZE = 64
UNHEARD_POLL_S = 0.05


def heartbeat_qos(window_s: float) -> QoSProfile:
    """Return the QoS of a session's heartbeat topic: the liveliness lease is the window."""
    return QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
        liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
        liveliness_lease_duration=Duration(nanoseconds=int(round(window_s * 1e9))))


class _Shard:
    """One node, executor and thread holding up to SHARD_SIZE heartbeat subscriptions."""

    def __init__(self, *, context: Context, node_name: str, namespace: str,
                 on_liveliness: Callable[[str, QoSLivelinessChangedInfo], None],
                 on_incompatible: Callable[[str, QoSRequestedIncompatibleQoSInfo], None],
                 on_heard: Callable[[str, int], None],
                 on_topic_failure: Callable[[str, Exception], None],
                 on_failure: Callable[[BaseException], None]) -> None:
        self._on_liveliness = on_liveliness
        self._on_incompatible = on_incompatible
        self._on_heard = on_heard
        self._on_topic_failure = on_topic_failure
        self._on_failure = on_failure
        # Not the process's command-line arguments: `-r __node:=session_manager`, as launch
        # passes to the manager, would otherwise give every shard the manager's name too.
        self._node = Node(node_name, namespace=namespace, context=context,
                          start_parameter_services=False, use_global_arguments=False)
        self._subscriptions: Dict[str, Subscription] = {}
        # Topics not heard alive yet, each with a liveliness event handle of its own to read.
        self._unheard: Dict[str, _rclpy.EventHandle] = {}
        self._unheard_poll = self._node.create_timer(UNHEARD_POLL_S, self._poll_unheard)
        self._unheard_poll.cancel()
        self._pending: Deque[Tuple[str, str, float]] = deque()
        self._pending_lock = threading.Lock()
        self._wake = self._node.create_guard_condition(self._apply_pending)
        self.size = 0  # topics assigned (applied or queued), kept by the owner's thread
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._spin, name=f'{node_name}_executor',
                                        daemon=True)
        self._thread.start()

    def request(self, action: str, topic: str, window_s: float = 0.0) -> None:
        """Queue a subscribe or unsubscribe for the shard's thread, and wake it."""
        with self._pending_lock:
            self._pending.append((action, topic, window_s))
        self._wake.trigger()

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=2.0)
        self._node.destroy_node()

    def _apply_pending(self) -> None:
        while True:
            with self._pending_lock:
                if not self._pending:
                    return
                action, topic, window_s = self._pending.popleft()
            if action == 'watch':
                try:
                    subscription = self._node.create_subscription(
                        Heartbeat, topic, lambda _: None, heartbeat_qos(window_s),
                        event_callbacks=self._events_for(topic))
                except Exception as error:  # noqa: B902 - one topic's failure, not the shard's
                    # e.g. RCLError when this process has the topic with another type.
                    self._on_topic_failure(topic, error)
                    continue
                self._subscriptions[topic] = subscription
                with subscription.handle:
                    self._unheard[topic] = _rclpy.EventHandle(
                        subscription.handle,
                        QoSSubscriptionEventType.RCL_SUBSCRIPTION_LIVELINESS_CHANGED)
                if self._unheard_poll.is_canceled():
                    self._unheard_poll.reset()
            else:
                self._heard(topic)
                subscription = self._subscriptions.pop(topic, None)
                if subscription is not None:
                    self._node.destroy_subscription(subscription)

    def _events_for(self, topic: str) -> SubscriptionEventCallbacks:
        return SubscriptionEventCallbacks(
            liveliness=lambda info: self._liveliness_changed(topic, info),
            incompatible_qos=lambda info: self._on_incompatible(topic, info),
            use_default_callbacks=False)

    def _liveliness_changed(self, topic: str, info: QoSLivelinessChangedInfo) -> None:
        if info.alive_count_change > 0:
            self._heard(topic)
        self._on_liveliness(topic, info)

    def _heard(self, topic: str) -> None:
        """Stop reading `topic`'s status: it was heard alive, or is no longer watched."""
        handle = self._unheard.pop(topic, None)
        if handle is not None:
            handle.destroy_when_not_in_use()
        if not self._unheard:
            self._unheard_poll.cancel()

    def _poll_unheard(self) -> None:
        """Report alive each unheard topic whose status counts a live writer (module docstring)."""
        for topic, handle in list(self._unheard.items()):
            with handle:
                status = handle.take_event()
            if status is not None and status.alive_count > 0:
                self._heard(topic)
                self._on_heard(topic, status.alive_count)

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass
        except BaseException as error:  # noqa: B902 - reported, the owner must fail safe
            self._on_failure(error)


class HeartbeatWatch:
    """
    Watch the liveliness of heartbeat topics; report changes to the owner's thread.

    `on_liveliness(changes)` runs with a list of (topic, alive), in the order DDS reported
    them: alive when a topic's writers become alive (at least one), not alive when all lose
    liveliness; `on_crowded(topic)` when more than one writer of a topic is alive (the events
    do not say which writer is which, so that topic no longer vouches for one client);
    `on_incompatible(topic, policy)` when a writer's QoS cannot match (for instance
    a lease longer than the window); `on_topic_failure(topic, error)` when a topic cannot be
    subscribed to (the watch goes on for every other topic); `on_failure(error)` if a watch
    thread died. All five are passed to `post`, which must run them on the owner's executor
    and may return False when it could not (no executor yet).
    `watch` and `unwatch` are called from the owner's thread.
    """

    def __init__(self, *, context: Context, node_name: str, namespace: str,
                 post: Callable[..., object],
                 on_liveliness: Callable[[List[Tuple[str, bool]]], None],
                 on_crowded: Callable[[str], None],
                 on_incompatible: Callable[[str, str], None],
                 on_topic_failure: Callable[[str, Exception], None],
                 on_failure: Callable[[BaseException], None]) -> None:
        self._context = context
        self._node_name = node_name
        self._namespace = namespace
        self._post = post
        self._on_liveliness = on_liveliness
        self._on_crowded = on_crowded
        self._on_incompatible = on_incompatible
        self._on_topic_failure = on_topic_failure
        self._on_failure = on_failure
        self._shards: List[_Shard] = []
        self._shard_of: Dict[str, _Shard] = {}
        # Liveliness changes queued by the shards' threads, not yet delivered, and whether a
        # delivery is posted: one at a time, however many changes come.
        self._changes: List[Tuple[str, bool]] = []
        self._delivery_posted = False
        self._changes_lock = threading.Lock()

    def watch(self, topic: str, window_s: float) -> None:
        """Subscribe to absolute `topic` with lease `window_s`; raise ValueError for a bad name."""
        if topic in self._shard_of:
            return
        check_topic_name(topic, 'heartbeat topic')
        shard = min(self._shards, key=lambda s: s.size, default=None)
        if shard is None or shard.size >= SHARD_SIZE:
            shard = _Shard(
                context=self._context, namespace=self._namespace,
                node_name=f'{self._node_name}_{len(self._shards)}',
                on_liveliness=self._liveliness_changed, on_incompatible=self._incompatible,
                on_heard=self._heard_alive,
                on_topic_failure=lambda topic, error: self._post(
                    self._on_topic_failure, topic, error),
                on_failure=lambda error: self._post(self._on_failure, error))
            self._shards.append(shard)
        shard.size += 1
        self._shard_of[topic] = shard
        shard.request('watch', topic, window_s)

    def unwatch(self, topic: str) -> None:
        """Stop watching `topic` (no effect if it is not watched)."""
        shard = self._shard_of.pop(topic, None)
        if shard is not None:
            shard.size -= 1
            shard.request('unwatch', topic)

    def close(self) -> None:
        """Stop every shard's thread and destroy its node."""
        for shard in self._shards:
            shard.close()

    def _liveliness_changed(self, topic: str, info: QoSLivelinessChangedInfo) -> None:
        if info.alive_count_change > 0:
            self._heard_alive(topic, info.alive_count)
        elif info.alive_count_change < 0 and info.alive_count == 0:
            self._queue_change(topic, False)

    def _heard_alive(self, topic: str, alive_count: int) -> None:
        self._queue_change(topic, True)
        if alive_count > 1:
            self._post(self._on_crowded, topic)

    def _queue_change(self, topic: str, alive: bool) -> None:
        """Queue a change and post a delivery unless one is posted already (a shard's thread)."""
        with self._changes_lock:
            self._changes.append((topic, alive))
            if self._delivery_posted:
                return
            self._delivery_posted = True
        if self._post(self._deliver_changes) is False:
            with self._changes_lock:
                self._delivery_posted = False  # no executor yet: the next change posts again

    def _deliver_changes(self) -> None:
        """Hand every change queued so far to the owner (on the owner's thread)."""
        with self._changes_lock:
            changes, self._changes = self._changes, []
            self._delivery_posted = False
        if changes:
            self._on_liveliness(changes)

    def _incompatible(self, topic: str, info: QoSRequestedIncompatibleQoSInfo) -> None:
        self._post(self._on_incompatible, topic,
                   qos_policy_name_from_kind(info.last_policy_kind))
