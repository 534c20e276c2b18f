"""
End-to-end tests: real processes, real rclpy and DDS, the motor's PWM read from the chip.

Each robot runs the session manager and motor drivers as separate processes; clients are
`session_client` processes or a SessionClient in this process.
"""

import signal
import time

from builtin_interfaces.msg import Duration
from lifecycle_msgs.msg import State, Transition
import pytest

from viam_session.client import SessionClient, SessionLost
from viam_session_interfaces.msg import SessionEvent
from viam_session_interfaces.srv import EndSession, ListSessions, StartSession

WINDOW_S = 0.5
# Expiry, the lifecycle call and the chip write take milliseconds; a loaded 2-core machine
# can add scheduling delay. The benchmark reports the real figure; this only bounds it.
STOP_MARGIN_S = 0.5


def test_client_drives_motor_while_session_lives(robot):
    """A session's command reaches the motor and the session is listed with the motor."""
    client = robot.start_client(resource='/motor', value=0.5)
    handle = client.wait_for('started')['handle']
    robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.5))
    listed = robot.call('/session_manager/list_sessions', ListSessions.Request())
    assert [(s.handle, list(s.owned_resources)) for s in listed.sessions] == [
        (handle, ['/motor'])]
    # Heartbeats keep it alive well past the window.
    client.lines.wait_for(lambda line: line.get('sequence', 0) >= 10, 30, 'ten heartbeats')
    assert robot.duty('motor') == pytest.approx(0.5)
    assert robot.lifecycle_state('motor') == State.PRIMARY_STATE_ACTIVE


def test_sigkill_of_client_stops_motor_after_one_window(robot):
    """A client that vanishes has its motor powered off one window after its last heartbeat."""
    client = robot.start_client(resource='/motor', value=0.7)
    handle = client.wait_for('started')['handle']
    running = robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    client.wait_for('heartbeat')
    client.kill()
    expired = robot.wait_for_event(handle, SessionEvent.EXPIRED, timeout_s=30)
    stopped = robot.wait_for_duty('motor', lambda duty: duty == 0.0, after_ns=running.t_ns)
    # The client prints each heartbeat (liveliness assertion) just after sending it.
    last_heartbeat_ns = client.last('heartbeat')['t_ns']
    stop_after_last_heartbeat_s = (stopped.t_ns - last_heartbeat_ns) * 1e-9
    # Not before the window (that would be a false expiry), and not long after it.
    assert WINDOW_S - 0.005 <= stop_after_last_heartbeat_s <= WINDOW_S + STOP_MARGIN_S
    assert list(expired.message.owned_resources) == ['/motor']
    robot.wait_for_transition('motor', State.PRIMARY_STATE_INACTIVE, timeout_s=10)


def test_clean_end_stops_motor_before_the_reply(robot):
    """Ending a session stops what it owned at once, before the end call returns."""
    client = robot.start_client(resource='/motor', value=0.4, duration_s=1.0)
    client.wait_for('started')
    running = robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    ended = client.wait_for('ended', timeout_s=30)
    assert ended['stopped'] == ['/motor']
    stopped = robot.wait_for_duty('motor', lambda duty: duty == 0.0, after_ns=running.t_ns,
                                  timeout_s=1)
    assert stopped.t_ns < ended['t_ns']
    assert client.wait() == 0


def test_unknown_and_expired_ids_are_rejected_with_a_reason(robot):
    """Ends, commands and resumes for unknown or expired ids are refused, saying which."""
    unknown = robot.call('/session_manager/end_session',
                         EndSession.Request(session_id='0' * 32))
    assert not unknown.success
    assert 'unknown session id' in unknown.message

    # A heartbeat topic nobody writes: the session never hears from its client, so it
    # expires one window after it started.
    request = StartSession.Request(client='forgetful', heartbeat_topic='/nobody/writes/this')
    request.requested_window = Duration(sec=0, nanosec=100_000_000)
    started = robot.call('/session_manager/start_session', request)
    assert started.success, started.message
    robot.wait_for_event(started.handle, SessionEvent.EXPIRED, timeout_s=30)

    expired = robot.call('/session_manager/end_session',
                         EndSession.Request(session_id=started.session_id))
    assert not expired.success
    assert 'expired' in expired.message
    robot.send_command(started.handle, '/motor', 0.5, secret=started.session_id)
    rejection = robot.rejections.wait_for(
        lambda s: s.message.handle == started.handle, 30, 'command rejection')
    assert rejection.message.subject == 'command'
    assert 'expired' in rejection.message.reason
    resume = StartSession.Request(client='forgetful', heartbeat_topic='/nobody/writes/this',
                                  resume_session_id=started.session_id)
    refused = robot.call('/session_manager/start_session', resume)
    assert not refused.success and 'expired' in refused.message
    assert robot.duty('motor') == 0.0


def test_window_outside_bounds_is_refused(robot):
    """A client asking for a window beyond the robot's bounds gets a clear refusal."""
    request = StartSession.Request(client='greedy', heartbeat_topic='/greedy/heartbeat')
    request.requested_window = Duration(sec=3600, nanosec=0)
    response = robot.call('/session_manager/start_session', request)
    assert not response.success
    assert 'outside' in response.message and 'bounds' in response.message


def test_heartbeat_of_one_session_does_not_keep_another_alive(two_motor_robot):
    """Killing one client stops only its motor; the other session and motor carry on."""
    robot = two_motor_robot
    left = robot.start_client(resource='/left_motor', value=0.3, name='left')
    right = robot.start_client(resource='/right_motor', value=0.6, name='right')
    left_id = left.wait_for('started')['handle']
    right_id = right.wait_for('started')['handle']
    running = robot.wait_for_duty('left_motor', lambda duty: duty > 0.0)
    robot.wait_for_duty('right_motor', lambda duty: duty > 0.0)
    left.kill()
    expired = robot.wait_for_event(left_id, SessionEvent.EXPIRED, timeout_s=30)
    assert list(expired.message.owned_resources) == ['/left_motor']
    robot.wait_for_duty('left_motor', lambda duty: duty == 0.0, after_ns=running.t_ns)
    # Several more windows of the right client's heartbeats: it stays live and running.
    sequence = right.last('heartbeat')['sequence']
    right.lines.wait_for(lambda line: line.get('sequence', 0) >= sequence + 10, 30,
                         'ten more heartbeats')
    assert robot.duty('right_motor') == pytest.approx(0.6)
    listed = robot.call('/session_manager/list_sessions', ListSessions.Request())
    assert [s.handle for s in listed.sessions] == [right_id]


def test_frozen_client_is_told_its_session_is_lost(robot):
    """A client frozen past its window hears `expired` when it wakes and stops commanding."""
    client = robot.start_client(resource='/motor', value=0.5)
    handle = client.wait_for('started')['handle']
    robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    client.process.send_signal(signal.SIGSTOP)
    try:
        robot.wait_for_event(handle, SessionEvent.EXPIRED, timeout_s=30)
    finally:
        client.process.send_signal(signal.SIGCONT)
    lost = client.wait_for('lost', timeout_s=30)
    assert lost['reason'].startswith('expired')
    assert client.wait() == 0
    assert robot.duty('motor') == 0.0


def test_session_client_library_in_process(robot):
    """The client library: start, command, lost callback never fired, end stops the motor."""
    lost = []
    domain_id = int(robot.env['ROS_DOMAIN_ID'])
    with SessionClient(client_name='library', window_s=WINDOW_S, on_lost=lost.append,
                       domain_id=domain_id) as session:
        assert len(session.session_id) == 32
        session.command('/motor', -0.25)
        robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.25))
        stopped = session.end()
        assert stopped == ['/motor']
        with pytest.raises(SessionLost):
            session.command('/motor', 0.5)
    assert robot.duty('motor') == 0.0
    assert lost == []


def test_new_session_reactivates_a_motor_stopped_by_expiry(robot):
    """After an expiry stopped the motor, a new live session can drive it again."""
    first = robot.start_client(resource='/motor', value=0.5, name='first')
    first_id = first.wait_for('started')['handle']
    robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    first.kill()
    robot.wait_for_event(first_id, SessionEvent.EXPIRED, timeout_s=30)
    stopped = robot.wait_for_duty('motor', lambda duty: duty == 0.0)
    second = robot.start_client(resource='/motor', value=0.2, name='second')
    second.wait_for('started')
    robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.2), after_ns=stopped.t_ns)
    assert robot.lifecycle_state('motor') == State.PRIMARY_STATE_ACTIVE


def test_a_motor_another_node_activated_again_is_driven_by_the_next_session(robot):
    """
    The supervisor may activate a motor the manager stopped; the next session still drives it.

    The manager's own reactivation is then refused (the motor is active already): it must
    count that as done, relay the command and keep it alive past the driver's watchdog.
    """
    first = robot.start_client(resource='/motor', value=0.5, name='first')
    first_handle = first.wait_for('started')['handle']
    robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    killed_ns = time.monotonic_ns()
    first.kill()
    robot.wait_for_event(first_handle, SessionEvent.EXPIRED, timeout_s=30)
    stopped = robot.wait_for_transition('motor', State.PRIMARY_STATE_INACTIVE, after_ns=killed_ns)
    assert robot.bring_to('motor', Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE,
                          time.monotonic() + 30)
    second = robot.start_client(resource='/motor', value=0.2, name='second')
    second.wait_for('started')
    running = robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.2),
                                  after_ns=stopped.t_ns)
    # Kept alive: still at 0.2 well past the watchdog's timeout (0.5 s) without new commands.
    second.lines.wait_for(lambda line: line['event'] == 'heartbeat'
                          and line['t_ns'] > running.t_ns + 2 * 10**9, 30, 'heartbeats')
    assert [change.value for change in robot.chip_changes('motor')
            if change.t_ns > running.t_ns and change.value != pytest.approx(0.2)] == []


def test_manager_shutdown_closes_sessions_and_stops_motor(robot):
    """SIGTERM to the session manager stops owned motors and tells clients `closed by robot`."""
    client = robot.start_client(resource='/motor', value=0.5)
    handle = client.wait_for('started')['handle']
    running = robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    robot.process('session_manager').terminate()
    closed = robot.wait_for_event(handle, SessionEvent.CLOSED_BY_ROBOT, timeout_s=30)
    assert list(closed.message.owned_resources) == ['/motor']
    robot.wait_for_duty('motor', lambda duty: duty == 0.0, after_ns=running.t_ns)
    assert client.wait_for('lost')['reason'].startswith('closed by robot')
    assert robot.process('session_manager').wait(timeout=30) == 0


def test_driver_sigterm_leaves_motor_stopped(robot):
    """SIGTERM to a running motor driver stops the motor before the process exits."""
    client = robot.start_client(resource='/motor', value=0.9)
    client.wait_for('started')
    running = robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    robot.process('motor').terminate()
    assert robot.process('motor').wait(timeout=30) == 0
    robot.wait_for_duty('motor', lambda duty: duty == 0.0, after_ns=running.t_ns, timeout_s=1)


def test_commands_not_tagged_by_the_session_are_refused_unattributed(robot):
    """Commands with the public handle but no valid tag change neither motor nor owner."""
    client = robot.start_client(resource='/motor', value=0.5, name='owner')
    started = client.wait_for('started')
    handle, secret = started['handle'], started['session_id']
    robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.5))
    robot.send_command(handle, '/motor', -1.0)                                # no tag
    robot.send_command(handle, '/motor', -1.0, secret='0' * 32, sequence=10 ** 6)  # wrong key
    robot.send_command(handle, '/not_an_actuator', 1.0, secret=secret, sequence=10 ** 6)
    robot.rejections.wait_for(
        lambda s: 'not_an_actuator' in s.message.reason, 30, 'command rejection')
    # One publisher, one subscriber: the rejections come in the order of the commands.
    *forged, authentic = [s.message for s in robot.rejections.snapshot()]
    assert [(r.subject, r.handle) for r in forged] == [('command', '')] * 2
    assert all('does not match' in r.reason for r in forged)
    assert "unknown resource '/not_an_actuator'" in authentic.reason
    assert authentic.handle == handle     # proven to be the session's: its client may be told
    listed = robot.call('/session_manager/list_sessions', ListSessions.Request())
    assert [(s.handle, list(s.owned_resources)) for s in listed.sessions] == [
        (handle, ['/motor'])]
    assert robot.duty('motor') == pytest.approx(0.5)
