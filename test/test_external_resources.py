"""
External resources: a robot's own lifecycle nodes and stop services, stopped by sessions.

Unit tests of the description's `resources:` (validation, shutdown order); then real
processes and real DDS: a session manager reading the description, a DC motor driver on a
simulated chip, and, in this process, a plain rclpy lifecycle node and std_srvs services
written here as any robot integrator would.
"""

import math
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any, Dict, Iterator

from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import State
import pytest

from viam_session.client.session_client import CommandRejected, SessionLost
from viam_session.sessions.described_resources import described_resources
from viam_session.sessions.external_resources import controller_support_problem
from viam_session.supervisor import parse_robot_description, RobotDescriptionError
from viam_session_harness.external_robot import ExternalRobot
from viam_session_harness.sim_robot import local_ros_environment
from viam_session_interfaces.msg import SessionCommand, SessionEvent
import yaml

from conftest import next_domain  # noqa: I100 - the tests' own helper


def robot_with(resources: list, nodes: list = ()) -> Dict[str, Any]:
    """Return a one-part robot description (the `robot:` mapping)."""
    return {'name': 'rover', 'primary': {'name': 'base', 'nodes': list(nodes),
                                         'resources': resources}}


def problems(resources: list, nodes: list = ()) -> tuple:
    with pytest.raises(RobotDescriptionError) as raised:
        parse_robot_description({'robot': robot_with(resources, nodes)})
    return raised.value.problems


EXAMPLES = Path(__file__).resolve().parents[1] / 'config'
MOTOR = {'name': 'arm_motor', 'driver': 'dc_motor',
         'parameters': {'pwm_line': 12, 'direction_line': 16}}

# --- the description ----------------------------------------------------------------------------


def test_resources_are_parsed_with_defaults_and_ordered_for_shutdown():
    """Resources get defaults, are named in full, and stop before what they depend on."""
    tree = parse_robot_description({'robot': robot_with([
        {'name': 'conveyor', 'kind': 'lifecycle_node', 'target': '/conveyor'},
        {'name': 'brake', 'kind': 'set_bool', 'target': '/base/brake', 'timeout_s': 0.2,
         'retries': 0, 'depends_on': ['arm_motor', 'conveyor']},
    ], [MOTOR])})
    conveyor, brake = tree.resources['/conveyor'], tree.resources['/brake']
    assert (conveyor.kind, conveyor.target, conveyor.timeout_s, conveyor.retries) == (
        'lifecycle_node', '/conveyor', 1.0, 1)
    assert brake.depends_on == ('/arm_motor', '/conveyor')
    assert tree.parts['base'].resources == ('/conveyor', '/brake')
    plan = tree.shutdown_plan()
    assert [(step.nodes, step.resources) for step in plan] == [
        ((), ('/brake',)), (('/arm_motor',), ('/conveyor',))]
    assert plan[-1].parts_down == ('base',)
    assert tree.shutdown_waves() == [['/arm_motor']]
    assert tree.startup_waves() == [['/arm_motor']]


@pytest.mark.parametrize('resource, expected', [
    pytest.param({'name': 'x', 'kind': 'valve', 'target': '/x'},
                 "robot.primary.resources[0] (x): unknown resource kind 'valve' (known: "
                 'lifecycle_node, trigger, set_bool, controller)', id='unknown-kind'),
    pytest.param({'name': 'x', 'kind': 'trigger'},
                 "robot.primary.resources[0] (x): missing 'target'", id='missing-target'),
    pytest.param({'name': 'x', 'kind': 'trigger', 'target': 'stop'},
                 'robot.primary.resources[0] (x): target must be the fully qualified service '
                 "name (e.g. '/base/service'), got 'stop'", id='relative-target'),
    pytest.param({'name': 'x', 'kind': 'trigger', 'target': '/stop', 'timeout_s': 0},
                 'robot.primary.resources[0] (x): timeout_s must be a finite number of seconds '
                 '> 0, got 0', id='bad-timeout'),
    pytest.param({'name': 'x', 'kind': 'trigger', 'target': '/stop', 'timeout_s': float('nan')},
                 'robot.primary.resources[0] (x): timeout_s must be a finite number of seconds '
                 '> 0, got nan', id='nan-timeout'),
    pytest.param({'name': 'x', 'kind': 'trigger', 'target': '/stop', 'retries': -1},
                 'robot.primary.resources[0] (x): retries must be an integer >= 0, got -1',
                 id='bad-retries'),
    pytest.param({'name': 'x', 'kind': 'trigger', 'target': '/stop',
                  'controller_manager': '/cm'},
                 'robot.primary.resources[0] (x): controller_manager is only for kind '
                 "'controller'", id='manager-not-controller'),
    pytest.param({'name': 'x', 'kind': 'controller', 'target': 'diff/drive'},
                 'robot.primary.resources[0] (x): target of a controller must be its name (a '
                 "ROS name), got 'diff/drive'", id='bad-controller-name'),
    pytest.param({'name': 'x', 'kind': 'trigger', 'target': '/stop', 'speed': 1},
                 "robot.primary.resources[0] (x): unknown key 'speed' (expected: name, kind, "
                 'target, controller_manager, timeout_s, retries, depends_on, stop_with)',
                 id='unknown-key'),
    pytest.param({'name': 'x', 'kind': 'trigger', 'target': '/stop', 'depends_on': ['nobody']},
                 "robot.primary.resources[0] (x): depends_on 'nobody' is not a node or "
                 "resource of part 'base'", id='unknown-dependency'),
    pytest.param({'name': 'arm_motor', 'kind': 'trigger', 'target': '/stop'},
                 "robot.primary.resources[0] (arm_motor): fully qualified name '/arm_motor' is "
                 'already used by robot.primary.nodes[0] (arm_motor)', id='duplicate-of-node'),
])
def test_each_resource_problem_names_the_entry(resource, expected):
    """A bad resource entry is refused with its place and name in the message."""
    assert problems([resource], [MOTOR]) == (expected,)


def test_duplicate_resources_and_cycles_are_refused():
    """Two resources with one name, and resources waiting for each other, are refused."""
    assert problems([{'name': 'a', 'kind': 'trigger', 'target': '/a'},
                     {'name': 'a', 'kind': 'trigger', 'target': '/b'}]) == (
        "robot.primary.resources[1] (a): fully qualified name '/a' is already used by "
        'robot.primary.resources[0] (a)',)
    assert problems([{'name': 'a', 'kind': 'trigger', 'target': '/a', 'depends_on': ['b']},
                     {'name': 'b', 'kind': 'trigger', 'target': '/b', 'depends_on': ['a']}]) == (
        'robot.primary.resources[0] (a): dependency cycle /a -> /b -> /a',)


def test_the_diff_drive_example_gives_the_manager_a_gate_and_two_resources():
    """config/diff_drive_robot.yaml: the gate is an actuator, the arm and brake resources."""
    described = described_resources(str(EXAMPLES / 'diff_drive_robot.yaml'))
    assert dict(described.actuators) == {'/base_gate': 'float64'}
    assert [(r.fully_qualified_name, r.kind, r.target) for r in described.external] == [
        ('/arm', 'lifecycle_node', '/arm_driver'), ('/brake', 'trigger', '/base/engage_brake')]


def test_our_actuator_drivers_become_actuators_with_their_command_type(tmp_path):
    """dc_motor, servo, session_gate take Float64, gpio_output Bool; others are not driven."""
    path = tmp_path / 'robot.yaml'
    path.write_text(yaml.safe_dump({'robot': robot_with([], [
        MOTOR, {'name': 'light', 'driver': 'gpio_output', 'parameters': {'line': 20}},
        {'name': 'pan', 'driver': 'servo', 'parameters': {'pwm_line': 13}},
        {'name': 'bumper', 'driver': 'digital_input', 'parameters': {'line': 21}},
        {'name': 'lidar', 'driver': 'external'}])}), encoding='utf-8')
    assert dict(described_resources(str(path)).actuators) == {
        '/arm_motor': 'float64', '/light': 'bool', '/pan': 'float64'}


def test_manager_refuses_a_controller_resource_without_ros2_control(tmp_path):
    """Without controller_manager_msgs the manager exits at once, naming what it refuses."""
    if controller_support_problem() is None:
        pytest.skip('controller_manager_msgs is importable here: controller resources work')
    path = tmp_path / 'robot.yaml'
    path.write_text(
        'robot:\n  name: rover\n  primary:\n    name: base\n    resources:\n'
        '      - {name: diff_drive, kind: controller, target: diff_drive_controller}\n',
        encoding='utf-8')
    env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(next_domain())))
    done = subprocess.run(
        [sys.executable, '-m', 'viam_session.sessions.manager_node', '--ros-args',
         '-p', f'robot_description:={path}'], env=env, capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 2, done.stderr
    assert 'controller_manager_msgs' in done.stderr
    assert "refusing controller resource(s) ['/diff_drive']" in done.stderr


def test_a_controller_is_deactivated_through_switch_controller():
    """A ros2_control controller resource (needs controller_manager_msgs)."""
    problem = controller_support_problem()
    if problem is not None:
        pytest.skip(problem)
    pytest.skip('no controller_manager to test against on this machine')  # pragma: no cover


def test_a_bad_description_stops_the_manager_naming_the_entry(tmp_path):
    """A malformed resource entry: the manager does not start, and says which entry."""
    path = tmp_path / 'robot.yaml'
    path.write_text('robot:\n  name: rover\n  primary:\n    name: base\n    resources:\n'
                    '      - {name: brake, kind: trigger}\n', encoding='utf-8')
    env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(next_domain())))
    done = subprocess.run(
        [sys.executable, '-m', 'viam_session.sessions.manager_node', '--ros-args',
         '-p', f'robot_description:={path}'], env=env, capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 2, done.stderr
    assert "robot.primary.resources[0] (brake): missing 'target'" in done.stderr


# --- a session manager stopping them ------------------------------------------------------------


@pytest.fixture
def robot(request, tmp_path: Path) -> Iterator[ExternalRobot]:
    """Run a manager with a motor, a plain lifecycle node, Trigger and SetBool services."""
    description = robot_with(
        [{'name': 'conveyor', 'kind': 'lifecycle_node', 'target': '/conveyor'},
         {'name': 'lidar_stop', 'kind': 'trigger', 'target': '/lidar/stop'},
         {'name': 'brake', 'kind': 'set_bool', 'target': '/base/brake_release'},
         {'name': 'stuck', 'kind': 'trigger', 'target': '/vendor/stop', 'timeout_s': 1.5,
          'retries': 1}],
        [MOTOR])
    rig = ExternalRobot(workdir=tmp_path, domain_id=next_domain(), description=description,
                        window_s=0.5, motors={'arm_motor': {'pwm_line': 12,
                                                            'direction_line': 16}},
                        lifecycle_nodes=['conveyor'], triggers=['/lidar/stop'],
                        silent_triggers=['/vendor/stop'], set_bools=['/base/brake_release'])
    try:
        rig.start()
        yield rig
    finally:
        rig.close()
        report = getattr(request.node, 'report_call', None)
        if report is None or report.failed:
            for log in sorted(tmp_path.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text()}')


def _last_stop(robot: ExternalRobot, resource: str, after_ns: int) -> str:
    """Wait for the manager's diagnostics to report a stop of `resource`; return it."""
    def reported(status) -> bool:
        return status.name.endswith('external resources') and any(
            value.key.startswith(resource + ' ') and value.value != 'not stopped yet'
            for value in status.values)
    status = robot.diagnostics.wait_for(reported, after_ns=after_ns, timeout_s=30,
                                        what=f'a stop of {resource} in diagnostics').item
    return next(v.value for v in status.values if v.key.startswith(resource + ' '))


def test_expiry_deactivates_a_plain_lifecycle_node_and_calls_stop_services_once(robot):
    """A session claims the robot's own things; its expiry stops each, a Trigger just once."""
    claimed = robot.client('teleop')
    for resource in ('/conveyor', '/lidar_stop', '/brake'):
        claimed.claim(resource)
    bystander = robot.client('bystander', window_s=5.0)     # owns nothing, stays alive
    for round_number in (1, 2):
        robot.wait_owned(claimed.handle, ['/brake', '/conveyor', '/lidar_stop'])
        silent_since = time.monotonic_ns()
        claimed._stop_heartbeats()     # its link drops
        expired = robot.wait_for_event(claimed.handle, SessionEvent.EXPIRED)
        assert sorted(expired.item.owned_resources) == ['/brake', '/conveyor', '/lidar_stop']
        deactivated = robot.deactivations.wait_for(lambda name: name == '/conveyor',
                                                   after_ns=silent_since)
        print(f'round {round_number}: lifecycle node deactivated '
              f'{(deactivated.wall_ns - _stamp_ns(expired.item)) / 1e6:.2f} ms after the '
              'expiry event stamp')
        robot.calls.wait_for(lambda call: call[0] == '/base/brake_release',
                             after_ns=silent_since)
        assert _last_stop(robot, '/lidar_stop', expired.t_ns).startswith('stopped')
        assert _last_stop(robot, '/brake', expired.t_ns).startswith('stopped')
        assert robot.call_count('/lidar/stop') == round_number
        brakes = [a.item[1] for a in robot.calls.snapshot() if a.item[0] == '/base/brake_release']
        assert [request.data for request in brakes] == [False] * round_number
        assert robot.robot_node('conveyor')._state_machine.current_state[1] == 'inactive'
        assert bystander.lost_reason is None
        if round_number == 1:
            # The robot's own tooling brings the conveyor back; a new session claims again.
            robot.robot_node('conveyor').trigger_activate()
            claimed = robot.client('teleop')
            for resource in ('/conveyor', '/lidar_stop', '/brake'):
                claimed.claim(resource)
    assert robot.state('arm_motor') == State.PRIMARY_STATE_ACTIVE   # never claimed: untouched


def test_unknown_and_non_finite_claims_are_rejected(robot):
    """A claim of an unknown resource or with NaN is refused, saying why; nothing is owned."""
    client = robot.client('careless')
    sequence, tag = client._signer.sign('/conveyor', math.nan)   # command() refuses NaN itself
    client._commands.publish(SessionCommand(handle=client.handle, resource='/conveyor',
                                            value=math.nan, sequence=sequence, tag=tag))
    client.command('/no_such_thing', 1.0)
    nan = robot.rejections.wait_for(lambda r: 'finite' in r.reason)
    unknown = robot.rejections.wait_for(lambda r: 'no_such_thing' in r.reason)
    assert "unknown resource '/no_such_thing'" in unknown.item.reason
    assert '/conveyor' in unknown.item.reason      # the list of what can be claimed
    assert nan.item.handle == client.handle
    assert robot.owned(client.handle) == []


def test_a_resource_that_never_answers_delays_nothing_else(robot):
    """A stop service that never answers is retried and reported; the motor stops at once."""
    client = robot.client('driver')
    client.claim('/stuck')     # first in line: its stop never completes
    client.command('/arm_motor', 0.6)
    client.command('/lidar_stop', 1.0)
    robot.wait_owned(client.handle, ['/arm_motor', '/lidar_stop', '/stuck'])
    running = robot.wait_for_duty(12, lambda duty: duty > 0.0)
    client._stop_heartbeats()
    expired = robot.wait_for_event(client.handle, SessionEvent.EXPIRED)
    stopped = robot.wait_for_duty(12, lambda duty: duty == 0.0, after_ns=running.t_ns)
    after_expiry_ms = (stopped.t_ns - expired.t_ns) / 1e6
    print(f'PWM 0 {after_expiry_ms:.2f} ms after the expiry event arrived here; '
          'the stuck stop service has a 1.5 s timeout')
    assert after_expiry_ms < 500.0      # far from the 1.5 s timeout of the stuck one
    robot.calls.wait_for(lambda call: call[0] == '/lidar/stop', after_ns=running.t_ns)
    assert _last_stop(robot, '/lidar_stop', expired.t_ns).startswith('stopped')
    failure = _last_stop(robot, '/stuck', expired.t_ns)
    assert failure.startswith('FAILED: not stopped after 2 attempt(s)')
    assert '/vendor/stop did not answer within 1.5 s' in failure
    assert robot.call_count('/vendor/stop') == 2     # retried once
    assert 'stopping trigger /stuck: attempt 1 of 2' in robot.log('session_manager')


def test_the_supervisor_stops_resources_in_its_ordered_shutdown(robot):
    """The supervisor's shutdown stops a part's resources beside its nodes, in order."""
    description = robot.workdir / 'supervised.yaml'
    description.write_text(yaml.safe_dump({'robot': robot_with(
        [{'name': 'conveyor', 'kind': 'lifecycle_node', 'target': '/conveyor'},
         {'name': 'lidar_stop', 'kind': 'trigger', 'target': '/lidar/stop',
          'depends_on': ['arm_motor']}],
        [{**MOTOR, 'parameters': {**MOTOR['parameters'], 'chip': str(robot.chip_dir)}}])}),
        encoding='utf-8')
    robot.run('supervisor', 'viam_session.supervisor.supervisor_node',
              ['-p', f'robot_description:={description}'])
    _wait_supervised(robot, '/arm_motor')
    asked_ns = time.monotonic_ns()
    response = robot.trigger('/lifecycle_supervisor/shutdown')
    assert response.success, response.message
    called = robot.calls.wait_for(lambda call: call[0] == '/lidar/stop', after_ns=asked_ns)
    robot.deactivations.wait_for(lambda name: name == '/conveyor', after_ns=asked_ns)
    motor_down = robot.transitions.wait_for(
        lambda item: item == ('arm_motor', State.PRIMARY_STATE_INACTIVE), after_ns=asked_ns)
    assert called.t_ns < motor_down.t_ns      # it depends on the motor: stopped before it
    assert robot.call_count('/lidar/stop') == 1
    assert robot.state('arm_motor') == State.PRIMARY_STATE_UNCONFIGURED


# --- helpers ------------------------------------------------------------------------------------


def _wait_supervised(robot: ExternalRobot, fqn: str, timeout_s: float = 60.0) -> None:
    """Wait until the supervisor's diagnostics show `fqn` alive (its liveliness seen)."""
    def supervised(status: DiagnosticStatus) -> bool:
        values = {value.key: value.value for value in status.values}
        return status.name.endswith(f'/nodes{fqn}') and values.get('alive') == 'True'

    robot.diagnostics.wait_for(supervised, timeout_s=timeout_s)


def _stamp_ns(event: SessionEvent) -> int:
    return event.stamp.sec * 1_000_000_000 + event.stamp.nanosec


def test_a_described_motor_refuses_what_its_driver_would(robot):
    """The range comes from the description: a bad power is refused and takes no ownership."""
    client = robot.client('careless')
    with pytest.raises(CommandRejected) as refused:
        client.command('/arm_motor', 1.0000001, wait_s=30.0)
    assert refused.value.reason == ('/arm_motor refuses 1.0000001: power must be in [-1, 1], '
                                    'got 1.0000001')
    assert robot.owned(client.handle) == []
    client.command('/arm_motor', 1.0, wait_s=0.5)
    robot.wait_owned(client.handle, ['/arm_motor'])
    assert 'power must be in' not in robot.log('arm_motor')


def test_an_inactive_lifecycle_node_cannot_be_claimed(robot):
    """A session must not silently own an arm that cannot move: the claim is refused."""
    robot.robot_node('conveyor').trigger_deactivate()
    client = robot.client('hopeful')
    with pytest.raises(CommandRejected) as refused:
        client.command('/conveyor', 1.0, wait_s=30.0)
    assert refused.value.reason == (
        '/conveyor cannot be claimed: the lifecycle node /conveyor is inactive, not active: '
        'it cannot act, and a session may own it only while it can (bring it up first)')
    assert robot.owned(client.handle) == []
    robot.robot_node('conveyor').trigger_activate()
    client.claim('/conveyor')
    robot.wait_owned(client.handle, ['/conveyor'])


def test_an_end_that_could_not_stop_everything_reports_it_without_raising(robot):
    """The session ended: end() returns what stopped, names what did not, and warns."""
    client = robot.client('partial')
    client.claim('/stuck')          # its stop service never answers
    client.claim('/lidar_stop')
    robot.wait_owned(client.handle, ['/lidar_stop', '/stuck'])
    with pytest.warns(RuntimeWarning, match=r"could not stop \['/stuck'\]"):
        result = client.end(timeout_s=30.0)
    assert result == ['/lidar_stop']
    assert result.not_stopped == ['/stuck']
    assert client.end_result is result
    with pytest.raises(SessionLost):
        client.command('/lidar_stop', 1.0)
