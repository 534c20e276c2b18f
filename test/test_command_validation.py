"""
Commands the actuator would refuse are refused by the session manager, before ownership.

Unit tests of `command_ranges` (no ROS); then real processes and real DDS: the manager with a
DC motor driver named by its `actuators` parameter (the range read from the driver), and with
a robot description (the range computed from it), the client library in this process.
"""

import math
import os
import subprocess
import sys
import threading
from typing import List

from builtin_interfaces.msg import Duration
import pytest

from viam_session.client import SessionClient
from viam_session.client.session_client import CommandRejected, SessionLost
from viam_session.command_ranges import command_range, CommandRange
from viam_session.driver_parameters import DRIVER_PARAMETERS
from viam_session.sessions.described_resources import described_resources
from viam_session.supervisor import parse_robot_description, RobotDescriptionError
from viam_session_harness.sim_drivers import DriverObserver, DriverProcess
from viam_session_harness.sim_robot import local_ros_environment, SimRobot
from viam_session_interfaces.srv import ListSessions, StartSession
import yaml

from conftest import next_domain  # noqa: I100 - the tests' own helper

# The values the driver refuses that the manager used to relay (and hand ownership for).
BAD_POWERS = [1e308, -5.0, 1.0000001]

# --- the ranges (no ROS) -----------------------------------------------------------------------


def test_each_actuator_driver_type_has_its_range():
    """A motor takes [-1, 1], a servo its angle limits, an output 0 or 1, a gate any number."""
    assert command_range('dc_motor', {}) == CommandRange(-1.0, 1.0, 'power')
    servo = command_range('servo', {'min_angle_deg': 30, 'max_angle_deg': 150.0})
    assert (servo.low, servo.high) == (30.0, 150.0)
    default_servo = command_range('servo', {})
    assert (default_servo.low, default_servo.high) == (0.0, 180.0)
    assert command_range('gpio_output', {}).on_off
    assert command_range('session_gate', {}).describe() == 'any finite number'
    with pytest.raises(ValueError, match="driver type 'encoder' takes no commands"):
        command_range('encoder', {})


@pytest.mark.parametrize('driver, parameters, value, problem', [
    ('dc_motor', {}, 1e308, 'power must be in [-1, 1], got 1e+308'),
    ('dc_motor', {}, -5.0, 'power must be in [-1, 1], got -5.0'),
    ('dc_motor', {}, 1.0000001, 'power must be in [-1, 1], got 1.0000001'),
    ('dc_motor', {}, math.nan, 'power must be a finite number, got nan'),
    ('dc_motor', {}, -math.inf, 'power must be a finite number, got -inf'),
    ('servo', {'max_angle_deg': 120.0}, 120.5, 'angle (degrees) must be in [0, 120], got 120.5'),
    ('servo', {'min_angle_deg': 10.0}, 5.0, 'angle (degrees) must be in [10, 180], got 5.0'),
    ('gpio_output', {}, 0.5, 'output value must be 0 (off) or 1 (on), got 0.5'),
    ('gpio_output', {}, 2.0, 'output value must be 0 (off) or 1 (on), got 2.0'),
    ('session_gate', {}, math.inf, 'gate command must be a finite number, got inf'),
])
def test_values_the_driver_refuses_are_named_with_the_range(driver, parameters, value, problem):
    assert command_range(driver, parameters).problem(value) == problem


@pytest.mark.parametrize('driver, parameters, value', [
    ('dc_motor', {}, 1.0), ('dc_motor', {}, -1.0), ('dc_motor', {}, 0.0),
    ('servo', {'min_angle_deg': 10.0, 'max_angle_deg': 20.0}, 10.0),
    ('gpio_output', {}, 1.0), ('gpio_output', {}, 0.0),
    ('session_gate', {}, -3.5), ('session_gate', {}, 1e308),
])
def test_values_the_driver_takes_pass(driver, parameters, value):
    assert command_range(driver, parameters).problem(value) is None


def test_the_range_parameters_cannot_be_set_in_a_description():
    """command_min/command_max are computed by the driver: a description setting one fails."""
    assert DRIVER_PARAMETERS['dc_motor']['command_max'].read_only
    with pytest.raises(RobotDescriptionError) as raised:
        parse_robot_description({'robot': {'name': 'r', 'primary': {'name': 'base', 'nodes': [
            {'name': 'motor', 'driver': 'dc_motor',
             'parameters': {'pwm_line': 12, 'direction_line': 16, 'command_max': 5.0}}]}}})
    assert any('command_max' in problem and 'read-only' in problem
               for problem in raised.value.problems), raised.value.problems


def test_the_manager_takes_ranges_from_the_description(tmp_path):
    description = tmp_path / 'robot.yaml'
    description.write_text(yaml.safe_dump({'robot': {'name': 'r', 'primary': {
        'name': 'base', 'nodes': [
            {'name': 'pan', 'driver': 'servo',
             'parameters': {'pwm_line': 18, 'min_angle_deg': 45, 'max_angle_deg': 135.0}},
            {'name': 'relay', 'driver': 'gpio_output', 'parameters': {'line': 23}}]}}}))
    ranges = described_resources(str(description)).ranges
    assert (ranges['/pan'].low, ranges['/pan'].high) == (45.0, 135.0)
    assert ranges['/relay'].on_off


def test_a_driver_declares_its_range_read_only(tmp_path):
    """The servo driver declares its angle limits as command_min/command_max, read-only."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from viam_session.drivers.servo import ServoDriver

    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    try:
        node = ServoDriver(context=context, parameter_overrides=[
            Parameter('chip', value=str(tmp_path)), Parameter('min_angle_deg', value=20.0)])
        assert node.get_parameter('command_min').value == 20.0
        assert node.get_parameter('command_max').value == 180.0
        (descriptor,) = node.describe_parameters(['command_max'])
        assert descriptor.read_only
        assert not node.set_parameters([Parameter('command_max', value=400.0)])[0].successful
        node.destroy_node()
        with pytest.raises(ValueError, match="'command_max' is read-only"):
            ServoDriver(context=context, parameter_overrides=[
                Parameter('chip', value=str(tmp_path)), Parameter('command_max', value=400.0)])
    finally:
        rclpy.try_shutdown(context=context)


# --- the manager with a driver named by `actuators` ----------------------------------------------


@pytest.fixture
def robot(request, tmp_path):
    """One motor named by `actuators` (its range read from the driver) and one with no driver."""
    env_robot = SimRobot(workdir=tmp_path, default_window_s=2.0,
                         env=dict(os.environ, ROS_DOMAIN_ID=str(next_domain())),
                         manager_parameters=["actuators:=['/motor', '/ghost']",
                                             'discovery_timeout_s:=1.0'])
    failed = True
    try:
        env_robot.start()
        yield env_robot
        failed = getattr(request.node, 'report_call', None) is None or \
            request.node.report_call.failed
    finally:
        env_robot.close()
        if failed:
            for log in sorted(tmp_path.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text()}')


def _client(robot: SimRobot, name: str, **kwargs) -> SessionClient:
    client = SessionClient(client_name=name, domain_id=int(robot.env['ROS_DOMAIN_ID']), **kwargs)
    client.start(timeout_s=30.0)
    return client


def _owned(robot: SimRobot) -> dict:
    listed = robot.call('/session_manager/list_sessions', ListSessions.Request())
    return {s.client: sorted(s.owned_resources) for s in listed.sessions}


def test_out_of_range_commands_change_neither_owner_nor_motor(robot):
    """A second session's bad values are refused with reasons; it never takes the motor over."""
    owner = _client(robot, 'owner')
    owner.command('/motor', 0.5)
    running = robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.5))
    intruder = _client(robot, 'intruder')
    try:
        for value in BAD_POWERS:
            with pytest.raises(CommandRejected) as refused:
                intruder.command('/motor', value, wait_s=30.0)
            assert refused.value.resource == '/motor' and refused.value.value == value
            assert refused.value.reason == (
                f'/motor refuses {value!r}: value must be in [-1, 1], got {value!r}')
            assert _owned(robot) == {'owner': ['/motor'], 'intruder': []}
        # The motor on the chip never saw them (the keep-alives re-send 0.5), nor did its driver.
        assert {c.value for c in robot.chip_changes('motor') if c.t_ns > running.t_ns} <= {0.5}
        assert 'power must be in' not in robot.log_path('motor').read_text()
        # A good value still takes the motor over, as the latest commander does.
        intruder.command('/motor', -0.25, wait_s=0.5)
        robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.25),
                            after_ns=running.t_ns)
        assert _owned(robot) == {'owner': [], 'intruder': ['/motor']}
    finally:
        intruder.close()
        owner.close()


def test_a_refusal_reaches_the_next_command_and_the_callback(robot):
    """Without waiting, a refusal goes to on_rejection and the next command() raises it."""
    refusals: List[CommandRejected] = []
    arrived = threading.Event()

    def on_rejection(refusal: CommandRejected) -> None:
        refusals.append(refusal)
        arrived.set()

    client = _client(robot, 'hasty', on_rejection=on_rejection)
    try:
        client.command('/motor', 7.0)
        assert arrived.wait(30.0), 'no refusal reached on_rejection'
        assert refusals[0].value == 7.0 and '[-1, 1]' in refusals[0].reason
        with pytest.raises(CommandRejected, match=r'refused /motor = 7\.0'):
            client.command('/motor', 0.3)      # raised instead of sending this one
        client.command('/motor', 0.3)          # reported once: this one goes out
        robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.3))
    finally:
        client.close()


def test_a_command_before_the_range_is_known_is_refused_saying_why(robot):
    """An actuator whose driver never answers gets nothing relayed and nothing owned."""
    client = _client(robot, 'early')
    try:
        with pytest.raises(CommandRejected) as refused:
            client.command('/ghost', 0.1, wait_s=30.0)
        assert refused.value.reason.startswith('/ghost: command range unknown, so nothing is '
                                               'relayed to it: its parameter service '
                                               '/ghost/get_parameters was not found within 1 s')
        assert _owned(robot) == {'early': []}
    finally:
        client.close()


def test_unknown_resources_are_named_as_such(robot):
    client = _client(robot, 'lost')
    try:
        with pytest.raises(CommandRejected) as refused:
            client.command('/nowhere', 0.1, wait_s=30.0)
        assert refused.value.reason == ("unknown resource '/nowhere': not an actuator "
                                        '(/ghost, /motor) nor an external resource (none)')
    finally:
        client.close()


def test_a_non_normalised_window_is_refused(robot):
    """A Duration with nanosec 2^32-1 is not 4.29 s: the start is refused with the reason."""
    request = StartSession.Request(client='odd', heartbeat_topic='/odd/heartbeat')
    request.requested_window = Duration(sec=0, nanosec=2**32 - 1)
    response = robot.call('/session_manager/start_session', request)
    assert not response.success
    assert 'requested_window is not a normalised Duration' in response.message
    assert 'nanosec 4294967295' in response.message
    assert _owned(robot) == {}


def test_an_expired_session_tells_the_client_why_once(robot):
    """A client whose heartbeats stopped is told `expired: <the robot's reason>`, not doubled."""
    lost: List[str] = []
    told = threading.Event()
    client = _client(robot, 'frozen', window_s=0.3,
                     on_lost=lambda reason: (lost.append(reason), told.set()))
    try:
        client.command('/motor', 0.2)
        robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.2))
        client._stop_heartbeats()    # as a frozen process: the robot hears nothing more
        assert told.wait(30.0), 'on_lost never ran'
        assert lost == ['expired: no heartbeat for a full window']
        with pytest.raises(SessionLost, match='session is over: expired: no heartbeat'):
            client.command('/motor', 0.2)
    finally:
        client.close()


def test_the_session_client_cli_prints_a_refusal(robot):
    """`session_client` prints the robot's refusal of its command as a `rejected` line."""
    client = robot.start_client(resource='/motor', value=-5.0, name='cli')
    client.wait_for('started')
    rejected = client.wait_for('rejected')
    assert rejected['resource'] == '/motor' and rejected['value'] == -5.0
    assert rejected['reason'] == '/motor refuses -5.0: value must be in [-1, 1], got -5.0'
    assert robot.duty('motor') == 0.0


def test_a_servo_named_by_actuators_refuses_angles_outside_its_limits(tmp_path):
    """The manager reads the servo driver's own limits; outside them nothing moves."""
    domain_id = next_domain()
    env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(domain_id)))
    manager_log = tmp_path / 'session_manager.log'
    with open(manager_log, 'w', encoding='utf-8') as log:
        manager = subprocess.Popen(
            [sys.executable, '-m', 'viam_session.sessions.manager_node', '--ros-args',
             '-p', "actuators:=['/pan']"], env=env, stdout=log, stderr=subprocess.STDOUT)
    servo = DriverProcess(kind='servo', name='pan', chip_dir=tmp_path / 'chip', env=env,
                          log_path=tmp_path / 'pan.log',
                          parameters={'pwm_line': 18, 'min_angle_deg': 30.0,
                                      'max_angle_deg': 150.0})
    observer = DriverObserver(domain_id=domain_id, drivers={'pan': 'servo'},
                              with_commands=False)
    client = None
    try:
        observer.bring_up('pan')
        client = SessionClient(client_name='camera', domain_id=domain_id)
        client.start(timeout_s=30.0)
        for angle in (150.5, 29.0, 1e308):
            with pytest.raises(CommandRejected) as refused:
                client.command('/pan', angle, wait_s=30.0)
            assert refused.value.reason == (
                f'/pan refuses {angle!r}: value must be in [30, 150], got {angle!r}')
        client.command('/pan', 90.0, wait_s=0.5)
        observer.wait_for_joint_state(
            'pan', lambda state: state.position[0] == pytest.approx(math.radians(90.0)))
        assert 'angle must be in' not in servo.log()
    finally:
        if client is not None:
            client.close()
        observer.close()
        servo.close()
        manager.terminate()
        manager.wait(timeout=30)
