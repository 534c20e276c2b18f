"""
A session's first window runs once the manager could hear its writer, not before.

When the manager's new heartbeat subscription and a writer that is already there take longer
than the window to match (a loaded machine), a healthy session used to expire one window after
its start without any of its assertions counting. The start reply now waits, at most the
manager's discovery_timeout_s, until the writer is seen alive.
"""

import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node

from viam_session.client.session_client import assertion_period_s
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.time_convert import seconds_to_duration
from viam_session_interfaces.msg import Heartbeat, SessionCommand, SessionEvent
from viam_session_interfaces.srv import ListSessions, StartSession

WINDOW_S = 0.5


def test_a_writer_that_asserts_only_after_one_window_still_holds_its_session(robot):
    """
    The writer is there at the start request but first asserts 1.3 windows after it.

    Counted from the request, its first window would be over by then; counted from the end of
    the wait for it (at most discovery_timeout_s), it is not.
    """
    context = Context()
    rclpy.init(context=context, domain_id=int(robot.env['ROS_DOMAIN_ID']))
    node = Node('late_asserter', context=context, enable_rosout=False)
    stop = threading.Event()
    several_windows = threading.Event()   # set after four windows' worth of assertions
    try:
        node.create_publisher(SessionCommand, '/session_manager/command', 10)
        topic = '/session_manager/heartbeat/late_asserter'
        writer = node.create_publisher(
            Heartbeat, topic, heartbeat_qos(WINDOW_S),
            event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))
        request = StartSession.Request(client='late', heartbeat_topic=topic,
                                       client_node=node.get_fully_qualified_name())
        request.requested_window = seconds_to_duration(WINDOW_S)
        asked = time.monotonic()

        def assert_late() -> None:
            if stop.wait(max(asked + 1.3 * WINDOW_S - time.monotonic(), 0.0)):
                return
            writer.assert_liveliness()
            count = 1
            while not stop.wait(assertion_period_s(WINDOW_S)):
                writer.assert_liveliness()
                count += 1
                if count * assertion_period_s(WINDOW_S) >= 4 * WINDOW_S:
                    several_windows.set()

        asserter = threading.Thread(target=assert_late, daemon=True)
        asserter.start()
        started = robot.call('/session_manager/start_session', request)
        assert started.success, started.message
        assert time.monotonic() - asked >= WINDOW_S   # it waited for the writer
        # Held alive by the writer: still live after several more windows.
        assert several_windows.wait(timeout=30)
        listed = robot.call('/session_manager/list_sessions', ListSessions.Request())
        assert started.handle in [s.handle for s in listed.sessions]
        assert not [s for s in robot.events.snapshot()
                    if s.message.handle == started.handle
                    and s.message.state == SessionEvent.EXPIRED]
        stop.set()
        asserter.join(timeout=10)
        robot.wait_for_event(started.handle, SessionEvent.EXPIRED, timeout_s=30)
    finally:
        stop.set()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
