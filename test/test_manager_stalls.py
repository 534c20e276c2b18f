"""
A stalled session manager re-energises nothing; a mass expiry leaves a live motor running.

The stalls are SIGSTOP, then SIGCONT, of the manager process.

Real processes on the simulated chip; the motor driver's command watchdog is on (its default
`command_timeout_s`, 0.5 s), so it stops the motor by itself while the manager is frozen and
the manager's keep-alives cannot come. What must never happen after that is the motor running
again for a session that is over: the chip's record is read for it.
"""

import signal
import threading
import time

from lifecycle_msgs.msg import State
import pytest
import rclpy
from rclpy.context import Context
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from viam_session.client.session_client import assertion_period_s
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.time_convert import seconds_to_duration
from viam_session_interfaces.msg import Heartbeat, SessionCommand, SessionEvent
from viam_session_interfaces.srv import ListSessions, StartSession

COMMAND_TIMEOUT_S = 0.5  # the DC motor driver's default


def _driving_client(robot, window_s: float, value: float = 0.6):
    """Start a client driving the motor; return it, its handle and the chip's PWM change."""
    client = robot.start_client(resource='/motor', value=value, window_s=window_s)
    handle = client.wait_for('started')['handle']
    running = robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(value))
    client.wait_for('heartbeat')
    return client, handle, running


def _freeze_until_the_watchdog_stops(robot, running_ns: int):
    """SIGSTOP the manager; return the chip's PWM 0 that the driver's watchdog then writes."""
    robot.process('session_manager').send_signal(signal.SIGSTOP)
    return robot.wait_for_duty('motor', lambda duty: duty == 0.0, after_ns=running_ns,
                               timeout_s=30)


def _driven_after(robot, after_ns: int):
    """Return the PWM changes above 0 that the chip recorded after `after_ns`."""
    return [change for change in robot.chip_changes('motor')
            if change.t_ns > after_ns and change.value > 0.0]


def _lapse_rejection(robot, handle: str):
    return robot.rejections.wait_for(
        lambda s: s.message.handle == handle and 'lapsed' in s.message.reason, 30,
        'keep-alive lapse rejection')


def test_a_stall_longer_than_the_window_re_energises_nothing(robot):
    """
    The client dies while the manager is frozen for three windows: on SIGCONT the motor stays off.

    Before keep-alives lapsed, the first one after SIGCONT reached the driver before the
    pending liveliness loss was handled and ran the motor again for a few milliseconds.
    """
    window_s = 1.0
    client, handle, running = _driving_client(robot, window_s)
    manager = robot.process('session_manager')
    try:
        stopped = _freeze_until_the_watchdog_stops(robot, running.t_ns)
        client.kill()
        last_heartbeat_ns = client.last('heartbeat')['t_ns']
        # The fault is a freeze of three windows: this wait is its length, not a poll.
        threading.Event().wait(max(last_heartbeat_ns * 1e-9 + 3 * window_s - time.monotonic(),
                                   0.0))
    finally:
        manager.send_signal(signal.SIGCONT)
    robot.wait_for_event(handle, SessionEvent.EXPIRED, timeout_s=30)
    robot.wait_for_transition('motor', State.PRIMARY_STATE_INACTIVE, after_ns=stopped.t_ns,
                              timeout_s=30)
    assert _driven_after(robot, stopped.t_ns) == []


def test_a_stall_shorter_than_the_window_leaves_the_motor_to_its_watchdog(robot):
    """
    Frozen until the watchdog stopped the motor, then resumed within the window: no keep-alive.

    The client died meanwhile; its session expires one window after its last heartbeat, and
    until then nothing drives the motor again: the keep-alives lapsed, the owner is told so.
    """
    window_s = 2.0
    client, handle, running = _driving_client(robot, window_s)
    manager = robot.process('session_manager')
    try:
        client.kill()
        stopped = _freeze_until_the_watchdog_stops(robot, running.t_ns)
    finally:
        manager.send_signal(signal.SIGCONT)
    last_heartbeat_ns = client.last('heartbeat')['t_ns']
    assert stopped.t_ns < last_heartbeat_ns + window_s * 1e9, 'the stall outlasted the window'
    _lapse_rejection(robot, handle)
    expired = robot.wait_for_event(handle, SessionEvent.EXPIRED, timeout_s=30)
    robot.wait_for_transition('motor', State.PRIMARY_STATE_INACTIVE, after_ns=stopped.t_ns,
                              timeout_s=30)
    assert list(expired.message.owned_resources) == ['/motor']
    assert _driven_after(robot, stopped.t_ns) == []


def test_a_live_session_s_motor_is_driven_again_a_window_after_a_stall(robot):
    """
    A stall lapses the keep-alives of a live session: the motor waits one window, then runs.

    A window later every liveliness loss that was due during the stall has been handled, so
    the session is known to be live; its next command would drive the motor at once.
    """
    window_s = 2.0
    client, handle, running = _driving_client(robot, window_s)
    manager = robot.process('session_manager')
    try:
        stopped = _freeze_until_the_watchdog_stops(robot, running.t_ns)
    finally:
        manager.send_signal(signal.SIGCONT)
    rejection = _lapse_rejection(robot, handle)
    assert '/motor' in rejection.message.reason
    again = robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.6),
                                after_ns=stopped.t_ns, timeout_s=30)
    assert again.t_ns >= stopped.t_ns + window_s * 1e9
    listed = robot.call('/session_manager/list_sessions', ListSessions.Request())
    assert [s.handle for s in listed.sessions] == [handle]
    assert robot.lifecycle_state('motor') == State.PRIMARY_STATE_ACTIVE
    # As the client would: tagged with its secret, a sequence above those it sent.
    robot.send_command(handle, '/motor', 0.3, secret=client.wait_for('started')['session_id'],
                       sequence=10 ** 6)
    robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.3), after_ns=again.t_ns)
    client.kill()


class _Writers:
    """Heartbeat writers for many sessions, in a ROS context of this process, one thread."""

    def __init__(self, domain_id: int, window_s: float) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node('stall_writers', context=self._context, enable_rosout=False,
                          start_parameter_services=False)
        # The manager waits to discover a client's command publisher before it starts a
        # session (as for the client library), so its writers are discovered in time too.
        self._node.create_publisher(SessionCommand, '/session_manager/command', 10)
        self.node_name = self._node.get_fully_qualified_name()
        self._window_s = window_s
        self._publishers = []
        self._lock = threading.Lock()
        self._asserting = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, topic: str) -> None:
        publisher = self._node.create_publisher(
            Heartbeat, topic, heartbeat_qos(self._window_s),
            event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))
        publisher.assert_liveliness()
        with self._lock:
            self._publishers.append(publisher)
        self._asserting.set()

    def stop_asserting(self) -> None:
        """Stop every writer's assertions at once (their sessions expire together)."""
        with self._lock:
            self._asserting.clear()

    def _run(self) -> None:
        period_s = assertion_period_s(self._window_s)
        while not self._closed.wait(period_s):
            with self._lock:
                if self._asserting.is_set():
                    for publisher in self._publishers:
                        publisher.assert_liveliness()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)


MASS = 400


def test_a_mass_expiry_leaves_a_live_session_s_motor_running(robot):
    """
    400 sessions expire at the same moment; the motor of a live session never stops meanwhile.

    The manager is busy with them for a while; its keep-alives must not wait for that, or the
    motor's watchdog stops it (seen at 1023 sessions: gaps of 0.02 to 1.1 s). What is judged is
    the motor from just before the expiry on: while the 400 sessions start, this test's own
    writers load the machine, and a keep-alive lapse then (409 ms once, Jazzy in CI) leaves the
    motor to its watchdog until the probe's session drives it again, one window later.
    """
    window_s = 1.0
    client, probe, _ = _driving_client(robot, 2.0, value=0.5)
    writers = _Writers(int(robot.env['ROS_DOMAIN_ID']), window_s)
    try:
        ids = set()
        for index in range(MASS):
            topic = f'/session_manager/heartbeat/mass_{index:04d}'
            writers.add(topic)
            request = StartSession.Request(client=f'mass_{index:04d}', heartbeat_topic=topic,
                                           client_node=writers.node_name)
            request.requested_window = seconds_to_duration(window_s)
            response = robot.call('/session_manager/start_session', request, timeout_s=60)
            assert response.success, response.message
            ids.add(response.handle)
        # A session whose writer the manager never saw alive expires one window after its
        # start: after two windows, those still listed are held alive by their writers.
        threading.Event().wait(2 * window_s)
        listed = {s.handle for s in robot.call(
            '/session_manager/list_sessions', ListSessions.Request(), timeout_s=60).sessions}
        assert ids <= listed, f'{len(ids - listed)} sessions expired before the mass expiry'
        # Every keep-alive writes the PWM again (the chip records each write).
        before_expiry = robot.wait_for_duty(
            'motor', lambda duty: duty == pytest.approx(0.5), after_ns=time.monotonic_ns(),
            timeout_s=30)
        writers.stop_asserting()
        deadline = time.monotonic() + 120
        while ids & listed:
            assert time.monotonic() < deadline, f'{len(ids & listed)} sessions did not expire'
            threading.Event().wait(0.1)
            listed = {s.handle for s in robot.call(
                '/session_manager/list_sessions', ListSessions.Request(), timeout_s=60).sessions}
        # The keep-alives go on after the batch: a lapse would show within the watchdog's time.
        over_ns = time.monotonic_ns()
        client.lines.wait_for(
            lambda line: line['event'] == 'heartbeat' and line['t_ns'] > over_ns
            + 2 * COMMAND_TIMEOUT_S * 1e9, 30, 'heartbeats after the expiry')
    finally:
        writers.close()
    assert probe in listed
    changed = [change for change in robot.chip_changes('motor')
               if change.t_ns > before_expiry.t_ns and change.value != pytest.approx(0.5)]
    assert changed == [], f'the motor of the live session changed: {changed}'
    assert not [s for s in robot.rejections.snapshot()
                if s.t_ns > before_expiry.t_ns and 'lapsed' in s.message.reason]
    client.kill()
