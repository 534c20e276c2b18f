"""
Session semantics end to end: ownership hand-over, resume, opt-out, bad requests, operator CLI.

Real processes, real DDS; the motors' PWM is read from the simulated chip.
"""

import math
import os
from pathlib import Path
import subprocess
import sys
import time

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_srvs.srv import Trigger

from viam_session.client import SessionClient
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session_harness.sim_robot import SimRobot
from viam_session_interfaces.msg import Heartbeat, SessionEvent
from viam_session_interfaces.srv import ListSessions, StartSession, StopSessionResources

from conftest import next_domain  # noqa: I100 - the tests' own helper


@pytest.fixture
def opt_out_robot(tmp_path: Path):
    """One motor, window 0.5 s, automatic stopping switched off."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain()))
    with SimRobot(workdir=tmp_path, env=env, default_window_s=0.5,
                  manager_parameters=['automatic_stop:=false', 'max_sessions:=2']) as robot:
        yield robot


def _listed(robot: SimRobot) -> list:
    response = robot.call('/session_manager/list_sessions', ListSessions.Request())
    return [(s.handle, list(s.owned_resources)) for s in response.sessions]


def test_ownership_passes_to_the_latest_commander(robot):
    """A takes over B's motor; A's expiry leaves it running; B's expiry stops it."""
    first = robot.start_client(resource='/motor', value=0.3, name='first')
    first_id = first.wait_for('started')['handle']
    robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.3))
    second = robot.start_client(resource='/motor', value=0.6, name='second')
    second_id = second.wait_for('started')['handle']
    taken = robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.6))
    assert sorted(_listed(robot)) == sorted([(first_id, []), (second_id, ['/motor'])])

    first.kill()
    expired = robot.wait_for_event(first_id, SessionEvent.EXPIRED)
    assert list(expired.message.owned_resources) == []
    sequence = second.last('heartbeat')['sequence']
    second.lines.wait_for(lambda line: line.get('sequence', 0) >= sequence + 5, 30,
                          'another window of heartbeats')
    assert robot.duty('motor') == pytest.approx(0.6)
    assert robot.lifecycle_state('motor') == State.PRIMARY_STATE_ACTIVE

    second.kill()
    expired = robot.wait_for_event(second_id, SessionEvent.EXPIRED)
    assert list(expired.message.owned_resources) == ['/motor']
    robot.wait_for_duty('motor', lambda duty: duty == 0.0, after_ns=taken.t_ns)


def test_session_that_commanded_nothing_stops_nothing(robot):
    """Expiry touches only what the session owns: here nothing, so no lifecycle transition."""
    with SessionClient(client_name='idle', window_s=0.2,
                       domain_id=int(robot.env['ROS_DOMAIN_ID'])) as idle:
        handle = idle.handle
        driver = robot.start_client(resource='/motor', value=0.5, name='driver')
        driver.wait_for('started')
        running = robot.wait_for_duty('motor', lambda duty: duty > 0.0)
        idle._stop_heartbeats()  # the idle client falls silent, as if its link dropped
        robot.wait_for_event(handle, SessionEvent.EXPIRED)
        assert robot.lifecycle_state('motor') == State.PRIMARY_STATE_ACTIVE
        assert robot.duty('motor') == pytest.approx(0.5)
        assert not [t for t in robot.transitions.snapshot() if t.t_ns > running.t_ns]


def test_resume_inside_the_window_keeps_the_motor_running(tmp_path):
    """A restarted client resumes its session within the window; after the window it cannot."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain()))
    with SimRobot(workdir=tmp_path, env=env, default_window_s=5.0) as robot:
        first = robot.start_client(resource='/motor', value=0.4, name='rover')
        started = first.wait_for('started')
        session_id, handle = started['session_id'], started['handle']
        running = robot.wait_for_duty('motor', lambda duty: duty > 0.0)
        first.kill()
        again = robot.start_client(resource='/motor', value=0.5, name='rover',
                                   resume=session_id, window_s=5.0)
        resumed = again.wait_for('started')
        assert (resumed['session_id'], resumed['handle']) == (session_id, handle)
        robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.5))
        assert [s for s in robot.events.snapshot()
                if s.message.state == SessionEvent.EXPIRED] == []
        assert all(c.value > 0.0 for c in robot.chip_changes('motor') if c.t_ns > running.t_ns)

        again.kill()
        robot.wait_for_event(handle, SessionEvent.EXPIRED)
        late = robot.start_client(resource='/motor', value=0.5, name='rover',
                                  resume=session_id, window_s=5.0)
        refused = late.wait_for('error')
        assert 'expired' in refused['reason']
        assert robot.duty('motor') == 0.0


def test_another_client_cannot_resume_a_session(robot):
    """Resuming needs the secret id and the same client name; another name is unknown."""
    owner = robot.start_client(resource='/motor', value=0.4, name='owner')
    session_id = owner.wait_for('started')['session_id']
    thief = robot.start_client(resource='/motor', value=-1.0, name='thief', resume=session_id)
    assert thief.wait_for('error')['reason'].endswith('resume refused: unknown session id')
    assert robot.duty('motor') == pytest.approx(0.4)


def test_opt_out_stops_nothing_until_asked(opt_out_robot):
    """With automatic_stop off an expiry is reported, the motor runs on, and stop stops it."""
    robot = opt_out_robot
    client = robot.start_client(resource='/motor', value=0.7)
    handle = client.wait_for('started')['handle']
    running = robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    client.kill()
    expired = robot.wait_for_event(handle, SessionEvent.EXPIRED)
    assert list(expired.message.owned_resources) == ['/motor']
    assert robot.lifecycle_state('motor') == State.PRIMARY_STATE_ACTIVE
    assert robot.duty('motor') == pytest.approx(0.7)

    asked_ns = time.monotonic_ns()
    response = robot.call('/session_manager/stop_session_resources',
                          StopSessionResources.Request(handle=handle))
    assert response.success, response.message
    assert list(response.stopped_resources) == ['/motor']
    stopped = robot.wait_for_transition('motor', State.PRIMARY_STATE_INACTIVE,
                                        after_ns=running.t_ns)
    assert stopped.t_ns > asked_ns, 'the motor was stopped before anyone asked'
    assert robot.duty('motor') == 0.0


@pytest.mark.parametrize('topic, reason', [
    ('', 'heartbeat_topic is required'),
    ('/not a topic!', 'bad heartbeat topic'),
    # Topics of another type, one of them the manager's own: subscribing to them with the
    # Heartbeat type fails inside the manager's process.
    ('/session_manager/command', 'in use with type viam_session_interfaces/msg/SessionCommand'),
    ('/motor/command', 'in use with type std_msgs/msg/Float64'),
])
def test_bad_start_requests_are_refused(robot, topic, reason):
    """A start without a usable heartbeat topic is refused, starts nothing, harms nothing."""
    response = robot.call('/session_manager/start_session',
                          StartSession.Request(client='careless', heartbeat_topic=topic))
    assert not response.success and reason in response.message, response.message
    assert _listed(robot) == []
    assert robot.process('session_manager').poll() is None, 'the manager exited'


def test_one_session_more_than_the_maximum_is_refused(opt_out_robot):
    """With max_sessions 2, a third start is refused with the limit in the reason."""
    robot = opt_out_robot
    for index in range(2):
        request = StartSession.Request(client=f'c{index}', heartbeat_topic=f'/hb/c{index}')
        request.requested_window = Duration(sec=60)
        assert robot.call('/session_manager/start_session', request).success
    request = StartSession.Request(client='c2', heartbeat_topic='/hb/c2')
    response = robot.call('/session_manager/start_session', request)
    assert not response.success and 'at most 2' in response.message


@pytest.mark.parametrize('window_s', [math.nan, math.inf, -1.0])
def test_client_library_refuses_a_bad_window(window_s):
    """NaN, infinite and negative windows are refused before anything is sent."""
    with pytest.raises(ValueError, match='window_s'):
        SessionClient(client_name='bad', window_s=window_s)


def test_operator_cli_lists_and_ends_a_session(robot):
    """`viam-session list` shows a live session's handle; `end` with its secret id ends it."""
    client = robot.start_client(resource='/motor', value=0.5)
    started = client.wait_for('started')
    session_id, handle = started['session_id'], started['handle']
    robot.wait_for_duty('motor', lambda duty: duty > 0.0)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, '-m', 'viam_session.client.operator_cli', *args], env=robot.env,
            capture_output=True, text=True, timeout=60)

    def said(run: subprocess.CompletedProcess) -> str:
        return f'exit {run.returncode}, stdout {run.stdout!r}, stderr {run.stderr!r}'

    listed = cli('list')
    assert listed.returncode == 0, said(listed)
    assert handle in listed.stdout and 'owns /motor' in listed.stdout, said(listed)
    assert session_id not in listed.stdout
    by_handle = cli('end', handle)
    assert by_handle.returncode == 1 and 'unknown session id' in by_handle.stdout, \
        said(by_handle)
    ended = cli('end', session_id)
    assert ended.returncode == 0 and "stopped ['/motor']" in ended.stdout, said(ended)
    assert robot.duty('motor') == 0.0
    again = cli('end', session_id)
    assert again.returncode == 1 and 'is over' in again.stdout, said(again)


def test_client_that_exits_without_ending_ends_its_session(robot):
    """A program that forgets end() still ends its session cleanly at interpreter exit."""
    script = (
        'import sys\n'
        'from viam_session.client import SessionClient\n'
        "client = SessionClient(client_name='forgetful')\n"
        'client.start()\n'
        'print(client.handle, flush=True)\n'
        "client.command('/motor', 0.5)\n"
        'sys.stdin.readline()\n')  # exits, without end(), once the test has seen the motor run
    program = subprocess.Popen([sys.executable, '-c', script], env=robot.env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        handle = program.stdout.readline().strip()
        robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.5))
        program.stdin.write('exit\n')
        program.stdin.flush()
        assert program.wait(timeout=60) == 0
    finally:
        program.kill()
        program.stdin.close()
        program.stdout.close()
    ended = robot.wait_for_event(handle, SessionEvent.ENDED)
    assert list(ended.message.owned_resources) == ['/motor']
    assert robot.duty('motor') == 0.0


def test_heartbeat_writer_with_a_longer_lease_is_refused(robot):
    """A writer whose lease exceeds the window cannot match: the robot says why, then expires."""
    context = Context()
    rclpy.init(context=context, domain_id=int(robot.env['ROS_DOMAIN_ID']))
    node = Node('lax_client', context=context, enable_rosout=False)
    try:
        topic = '/session_manager/heartbeat/lax_client'
        node.create_publisher(Heartbeat, topic, heartbeat_qos(5.0))  # window is 0.5 s
        started = robot.call('/session_manager/start_session',
                             StartSession.Request(client='lax', heartbeat_topic=topic))
        assert started.success, started.message
        rejection = robot.rejections.wait_for(
            lambda s: s.message.handle == started.handle, 30, 'heartbeat rejection')
        assert rejection.message.subject == 'heartbeat'
        assert 'incompatible QoS' in rejection.message.reason
        assert 'LIVELINESS' in rejection.message.reason
        robot.wait_for_event(started.handle, SessionEvent.EXPIRED)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_close_all_sessions_tells_clients_and_stops_their_motors(robot):
    """The supervisor's last shutdown step closes every session: `closed by robot`, motor off."""
    client = robot.start_client(resource='/motor', value=0.5)
    handle = client.wait_for('started')['handle']
    robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    response = robot.call('/session_manager/close_all_sessions', Trigger.Request())
    assert response.success, response.message
    assert "stopped ['/motor']" in response.message
    assert robot.duty('motor') == 0.0
    closed = robot.wait_for_event(handle, SessionEvent.CLOSED_BY_ROBOT)
    assert list(closed.message.owned_resources) == ['/motor']
    assert client.wait_for('lost')['reason'].startswith('closed by robot')
    assert _listed(robot) == []


def test_diagnostics_list_live_sessions_and_what_they_own(robot):
    """`/diagnostics` carries the manager's status: each session, its client and its actuators."""
    client = robot.start_client(resource='/motor', value=0.5, name='teleop')
    handle = client.wait_for('started')['handle']
    robot.wait_for_duty('motor', lambda duty: duty > 0.0)
    context = Context()
    rclpy.init(context=context, domain_id=int(robot.env['ROS_DOMAIN_ID']))
    node = Node('diagnostics_reader', context=context, enable_rosout=False)
    statuses = []
    node.create_subscription(DiagnosticArray, '/diagnostics',
                             lambda array: statuses.extend(array.status), 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 30.0
        while not any(f'session {handle}' in [v.key for v in s.values]
                      for s in statuses) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    # The first status that lists the session: one published before it started lists none.
    status = next(s for s in statuses if s.name == '/session_manager: sessions'
                  and f'session {handle}' in [v.key for v in s.values])
    values = {v.key: v.value for v in status.values}
    assert status.level == DiagnosticStatus.OK and '1 live session(s)' in status.message
    assert values[f'session {handle}'].startswith('teleop (remote)')
    assert values[f'session {handle}'].endswith('owns /motor')
