"""The heartbeat watch with real rclpy: a topic it cannot subscribe to; status reads."""

import queue
import time
from typing import Callable

import rclpy
from rclpy.context import Context
from rclpy.event_handler import SubscriptionEventCallbacks
from std_msgs.msg import String

from viam_session.sessions.heartbeat_watch import _Shard, heartbeat_qos, HeartbeatWatch
from viam_session_interfaces.msg import Heartbeat

from conftest import next_domain  # noqa: I100 - the tests' own helper

DEADLINE_S = 30.0


def test_a_topic_of_another_type_fails_alone_and_the_watch_goes_on():
    """This process has /taken as String: watching it fails for it, /free is still watched."""
    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    node = rclpy.create_node('other_user', context=context)
    node.create_publisher(String, '/taken', 1)
    posted: 'queue.Queue[tuple]' = queue.Queue()
    failures, dead = [], []

    def post(callback: Callable[..., None], *args: object) -> None:
        posted.put((callback, args))

    watch = HeartbeatWatch(
        context=context, node_name='watch', namespace='/', post=post,
        on_liveliness=lambda changes: None, on_crowded=lambda _: None,
        on_incompatible=lambda *_: None,
        on_topic_failure=lambda topic, error: failures.append((topic, str(error))),
        on_failure=dead.append)
    try:
        watch.watch('/taken', 1.0)
        watch.watch('/free', 1.0)
        deadline = time.monotonic() + DEADLINE_S
        while (not failures or node.count_subscribers('/free') < 1) and \
                time.monotonic() < deadline:
            try:
                callback, args = posted.get(timeout=0.1)
            except queue.Empty:
                continue
            callback(*args)
        assert [topic for topic, _ in failures] == ['/taken'], failures
        assert node.count_subscribers('/free') == 1, 'the watch stopped watching'
        assert dead == [], f'the watch thread died: {dead}'
    finally:
        watch.close()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_writer_alive_is_heard_from_the_status_when_its_event_never_comes(monkeypatch):
    """The subscriptions get no liveliness event at all: the status reads still hear the writer."""
    def without_liveliness(self: _Shard, topic: str) -> SubscriptionEventCallbacks:
        return SubscriptionEventCallbacks(use_default_callbacks=False)

    monkeypatch.setattr(_Shard, '_events_for', without_liveliness)
    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    node = rclpy.create_node('client', context=context)
    writer = node.create_publisher(Heartbeat, '/heartbeat/client', heartbeat_qos(1.0))
    posted: 'queue.Queue[tuple]' = queue.Queue()
    changes, dead = [], []
    watch = HeartbeatWatch(
        context=context, node_name='watch', namespace='/',
        post=lambda callback, *args: posted.put((callback, args)),
        on_liveliness=changes.extend, on_crowded=lambda _: None,
        on_incompatible=lambda *_: None, on_topic_failure=lambda *_: None,
        on_failure=dead.append)
    try:
        watch.watch('/heartbeat/client', 1.0)
        deadline = time.monotonic() + DEADLINE_S
        while not changes and time.monotonic() < deadline:
            writer.assert_liveliness()
            try:
                callback, args = posted.get(timeout=0.1)
            except queue.Empty:
                continue
            callback(*args)
        assert changes == [('/heartbeat/client', True)], f'not heard in {DEADLINE_S} s'
        assert dead == [], f'the watch thread died: {dead}'
    finally:
        watch.close()
        node.destroy_node()
        rclpy.shutdown(context=context)
