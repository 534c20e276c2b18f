"""
What a part stops together: `stop_with` of external resources, and the integration example.

Unit tests of the description model (resolution, validation, what a stop expands to) and of
the manager's actuator diagnostics; then config/diff_drive_robot.yaml end to end with real
processes and real DDS: the session manager and the session gate as processes, the lifecycle
supervisor managing the gate, and, in this process, a vendor arm lifecycle node and the
brake's std_srvs/Trigger service as the robot's own code (viam_session_harness.external_robot).
"""

from contextlib import contextmanager
from pathlib import Path
import socket
import time
from typing import Any, Dict, Iterator

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import TwistStamped
from lifecycle_msgs.msg import State
import pytest

from viam_session.sessions.described_resources import described_resources, IDLE, StoppedWith
from viam_session.sessions.diagnostics import actuator_status, ActuatorView
from viam_session.supervisor import parse_robot_description, RobotDescriptionError
from viam_session_harness.external_robot import ExternalRobot, GateSpec
from viam_session_interfaces.msg import SessionEvent
import yaml

from conftest import next_domain  # noqa: I100 - the tests' own helper

EXAMPLE = Path(__file__).resolve().parents[1] / 'config' / 'diff_drive_robot.yaml'
GATE = {'name': 'base_gate', 'driver': 'session_gate'}
BRAKE = {'name': 'brake', 'kind': 'trigger', 'target': '/base/engage_brake'}


def _robot(resources: list, nodes: list = (GATE,), parts: list = ()) -> Dict[str, Any]:
    return {'robot': {'name': 'rover', 'primary': {
        'name': 'base', 'nodes': list(nodes), 'resources': resources, 'parts': list(parts)}}}


def _problems(description: Dict[str, Any]) -> tuple:
    with pytest.raises(RobotDescriptionError) as raised:
        parse_robot_description(description)
    return raised.value.problems


def _described(tmp_path: Path, description: Dict[str, Any]):
    path = tmp_path / 'robot.yaml'
    path.write_text(yaml.safe_dump(description), encoding='utf-8')
    return described_resources(str(path))


# --- the description ----------------------------------------------------------------------------


def test_the_example_brake_is_stopped_with_the_gate():
    """config/diff_drive_robot.yaml: a stop of the gate also engages the brake, once."""
    described = described_resources(str(EXAMPLE))
    brake = next(r for r in described.external if r.fully_qualified_name == '/brake')
    assert brake.stop_with == ('/base_gate',)
    assert brake.depends_on == ('/base_gate',)      # the shutdown order, unchanged
    expand = described.stopped_with.expand
    assert expand(['/base_gate', '/arm']) == ['/base_gate', '/arm', '/brake']
    assert expand(['/brake', '/base_gate']) == ['/brake', '/base_gate']   # claimed too: once
    assert expand(['/arm']) == ['/arm']       # the arm alone does not engage the brake


def test_stop_with_follows_chains_and_names_of_other_parts(tmp_path):
    """A resource stopped with a resource follows it; other parts' members are named in full."""
    described = _described(tmp_path, _robot(
        [{**BRAKE, 'stop_with': ['base_gate']},
         {'name': 'lights', 'kind': 'set_bool', 'target': '/base/lights',
          'stop_with': ['brake', '/arm/shoulder']}],
        parts=[{'name': 'arm', 'namespace': '/arm', 'nodes': [
            {'name': 'shoulder', 'driver': 'servo', 'parameters': {'pwm_line': 13}}]}]))
    lights = next(r for r in described.external if r.name == 'lights')
    assert lights.stop_with == ('/brake', '/arm/shoulder')
    assert described.stopped_with.expand(['/base_gate']) == ['/base_gate', '/brake', '/lights']
    assert described.stopped_with.expand(['/arm/shoulder']) == ['/arm/shoulder', '/lights']
    assert StoppedWith().expand(['/a', '/a', '/b']) == ['/a', '/b']


def test_stop_with_names_go_under_the_robot_namespace():
    """In a robot namespaced /r1, a stop_with written /arm/shoulder is /r1/arm/shoulder."""
    tree = parse_robot_description(_robot(
        [{**BRAKE, 'stop_with': ['base_gate', '/arm/shoulder']}],
        parts=[{'name': 'arm', 'namespace': '/arm', 'nodes': [
            {'name': 'shoulder', 'driver': 'servo', 'parameters': {'pwm_line': 13}}]}]),
        namespace='/r1')
    assert tree.resources['/r1/brake'].stop_with == ('/r1/base_gate', '/r1/arm/shoulder')


@pytest.mark.parametrize('stop_with, expected', [
    pytest.param(['gate'], "robot.primary.resources[0] (brake): stop_with 'gate' is not a node "
                 "or resource of part 'base'", id='unknown-name'),
    pytest.param(['/base/gate'], "robot.primary.resources[0] (brake): stop_with '/base/gate' is "
                 'not a node or resource of this robot', id='unknown-full-name'),
    pytest.param(['shoulder'], "robot.primary.resources[0] (brake): stop_with 'shoulder' is not "
                 "a node or resource of part 'base'; one of another part is named in full: "
                 '/arm/shoulder', id='other-part-by-short-name'),
    pytest.param([3], 'robot.primary.resources[0] (brake): stop_with entries must be node or '
                 'resource names, got 3', id='not-a-name'),
    pytest.param('base_gate', 'robot.primary.resources[0] (brake): stop_with must be a list, '
                 "got 'base_gate'", id='not-a-list'),
    pytest.param(['brake'], 'robot.primary.resources[0] (brake): stop_with cycle /brake -> '
                 '/brake', id='itself'),
])
def test_a_bad_stop_with_is_refused_naming_the_entry(stop_with, expected):
    """Unknown names, non-names and a resource stopped with itself are refused."""
    arm = [{'name': 'arm', 'namespace': '/arm', 'nodes': [
        {'name': 'shoulder', 'driver': 'servo', 'parameters': {'pwm_line': 13}}]}]
    assert _problems(_robot([{**BRAKE, 'stop_with': stop_with}], parts=arm)) == (expected,)


def test_a_stop_with_cycle_is_refused_from_its_first_entry():
    """Resources stopped with each other, through a third: one problem, the first one named."""
    assert _problems(_robot([
        {'name': 'a', 'kind': 'trigger', 'target': '/a', 'stop_with': ['c']},
        {'name': 'b', 'kind': 'trigger', 'target': '/b', 'stop_with': ['a', 'base_gate']},
        {'name': 'c', 'kind': 'trigger', 'target': '/c', 'stop_with': ['b']}])) == (
        'robot.primary.resources[0] (a): stop_with cycle /a -> /c -> /b -> /a',)


def test_the_manager_refuses_stop_with_a_node_sessions_never_stop(tmp_path):
    """An input or an external node is never stopped by a session: stop_with it never fires."""
    with pytest.raises(RobotDescriptionError) as raised:
        _described(tmp_path, _robot(
            [{**BRAKE, 'stop_with': ['bumper', 'base_gate']}],
            nodes=[GATE, {'name': 'bumper', 'driver': 'digital_input',
                          'parameters': {'line': 21}}]))
    assert raised.value.problems == (
        "resource /brake of part 'base': stop_with '/bumper' is a 'digital_input' node, which "
        'sessions never stop; name an actuator (dc_motor, servo, gpio_output, session_gate) or '
        'a resource',)


def test_actuator_diagnostics_call_the_idle_state_ok():
    """Idle (no session owns it, stopped or not) is OK; a failed stop or reactivation WARN."""
    status = actuator_status(name='/session_manager: actuators', actuators=[
        ActuatorView(name='/base_gate', owner=None, stopped=True),
        ActuatorView(name='/motor', owner=None, stopped=False),
        ActuatorView(name='/pan', owner='0123456789abcdef', stopped=False)])
    assert status.level == DiagnosticStatus.OK
    assert {v.key: v.value for v in status.values} == {
        '/base_gate': IDLE, '/motor': 'idle: no session',
        '/pan': 'owned by session 0123456789abcdef'}
    assert status.message == '3 actuator(s), 1 owned by a session'
    failed = actuator_status(name='m', actuators=[ActuatorView(
        name='/motor', owner='0123456789abcdef', stopped=True,
        problem='reactivation for a new session refused')])
    assert failed.level == DiagnosticStatus.WARN
    assert failed.message == '1 actuator(s), 1 owned by a session; failed: /motor'


# --- the integration example, end to end --------------------------------------------------------


def _example_rig(tmp_path: Path) -> ExternalRobot:
    """config/diff_drive_robot.yaml with its gate, a vendor arm driver and a brake service."""
    description = yaml.safe_load(EXAMPLE.read_text(encoding='utf-8'))['robot']
    gate = description['primary']['nodes'][0]
    parameters = {key: value for key, value in gate['parameters'].items()
                  if key not in ('message_type', 'output_topic')}
    return ExternalRobot(
        workdir=tmp_path, domain_id=next_domain(), description=description, window_s=0.5,
        gates=[GateSpec(name='base_gate', output_topic=gate['parameters']['output_topic'],
                        message_type=gate['parameters']['message_type'],
                        parameters=parameters)],
        lifecycle_nodes=['arm_driver'], triggers=['/base/engage_brake'])


@contextmanager
def _running(request, rig: ExternalRobot, **start: Any) -> Iterator[ExternalRobot]:
    """Start the rig; close it at the end, printing its logs when the test failed."""
    try:
        rig.start(**start)
        yield rig
    finally:
        rig.close()
        report = getattr(request.node, 'report_call', None)
        if report is None or report.failed:
            for log in sorted(rig.workdir.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text()}')


@pytest.fixture
def example(request, tmp_path: Path) -> Iterator[ExternalRobot]:
    """Run the example robot, with the lifecycle supervisor managing its gate."""
    with _running(request, _example_rig(tmp_path)) as rig:
        rig.run('lifecycle_supervisor', 'viam_session.supervisor.supervisor_node', [
            '-p', f'robot_description:={rig.description_path}',
            '-p', 'session_manager:=/session_manager', '-p', 'autostart:=true'])
        yield rig


def _status(rig: ExternalRobot, name: str, after_ns: int, what: str, **expected: Any):
    """Wait for a /diagnostics status `name` with the expected level and message."""
    def matches(status: DiagnosticStatus) -> bool:
        return status.name == name and all(
            getattr(status, key) == value for key, value in expected.items())
    return rig.diagnostics.wait_for(matches, after_ns=after_ns, timeout_s=60.0, what=what).item


def _brake_stop_reported(rig: ExternalRobot, after_ns: int) -> str:
    """Wait for the manager to report the brake's stop done (no retry pending); return it."""
    def reported(status: DiagnosticStatus) -> bool:
        return status.name == '/session_manager: external resources' and any(
            value.key.startswith('/brake ') and value.value.startswith('stopped')
            for value in status.values)
    status = rig.diagnostics.wait_for(reported, after_ns=after_ns, timeout_s=60.0,
                                      what='the brake stop in diagnostics').item
    return next(v.value for v in status.values if v.key.startswith('/brake '))


def _ms(arrival_wall_ns: int, stamp) -> float:
    return (arrival_wall_ns - (stamp.sec * 1_000_000_000 + stamp.nanosec)) / 1e6


def test_the_example_stops_gate_arm_and_brake_when_the_session_is_over(example):
    """
    A session opens the gate and claims the arm, never the brake; then it expires.

    The gate sends its zeros, the arm driver goes inactive, and the brake is called exactly
    once; the idle gate is then OK in the supervisor's and the manager's diagnostics. A second
    session that claims the brake and ends has it called once more, not twice.
    """
    rig = example
    cmd_vel = '/diff_drive_controller/cmd_vel'
    supervised = 'diff_drive_rover/nodes/base_gate'
    _status(rig, supervised, 0, 'the supervisor seeing the gate active',
            level=DiagnosticStatus.OK, message='active')

    operator = rig.client('operator')
    operator.claim('/base_gate')
    operator.claim('/arm')
    rig.wait_owned(operator.handle, ['/arm', '/base_gate'])
    drive = TwistStamped()
    drive.header.frame_id = 'base_link'
    drive.twist.linear.x = 0.3
    rig.teleop('base_gate', drive)
    rig.outputs.wait_for(lambda item: item[0] == cmd_vel and item[1].twist.linear.x == 0.3,
                         what='teleop relayed to the controller')

    silent_since = rig.outputs.snapshot()[-1].t_ns
    operator._stop_heartbeats()      # its link drops
    expired = rig.wait_for_event(operator.handle, SessionEvent.EXPIRED)
    assert sorted(expired.item.owned_resources) == ['/arm', '/base_gate']
    zero = rig.outputs.wait_for(
        lambda item: item[0] == cmd_vel and item[1].twist.linear.x == 0.0
        and item[1].header.frame_id == 'base_link', after_ns=silent_since,
        what='the gate zero burst')
    arm_down = rig.deactivations.wait_for(lambda name: name == '/arm_driver',
                                          after_ns=silent_since, what='the arm deactivated')
    brake = rig.calls.wait_for(lambda call: call[0] == '/base/engage_brake',
                               after_ns=silent_since, what='the brake called')
    assert _brake_stop_reported(rig, expired.t_ns).startswith('stopped: stopped (1 attempt(s)')
    assert rig.call_count('/base/engage_brake') == 1
    assert "stopping ['/arm', '/base_gate']; stopped with them (stop_with): ['/brake']" in (
        rig.log('session_manager'))
    arm = rig.robot_node('arm_driver')
    assert arm._state_machine.current_state[1] == 'inactive'
    assert rig.state('base_gate') == State.PRIMARY_STATE_INACTIVE
    stamp = expired.item.stamp
    print(f'from the expiry event stamp: gate zero {_ms(zero.wall_ns, stamp):.1f} ms, arm '
          f'inactive {_ms(arm_down.wall_ns, stamp):.1f} ms, brake called '
          f'{_ms(brake.wall_ns, stamp):.1f} ms')

    idle = _status(rig, supervised, expired.t_ns, 'the idle gate OK in the supervisor',
                   message='inactive (idle: no session)')
    assert idle.level == DiagnosticStatus.OK
    # Matched by message: a status sent before the gate's transition reached its publisher
    # may arrive after the expiry event.
    part = _status(rig, 'diff_drive_rover/parts/base', expired.t_ns, 'the part idle',
                   message='0 node(s) active, 1 idle (no session)')
    assert part.level == DiagnosticStatus.OK
    actuators = _status(rig, '/session_manager: actuators', expired.t_ns,
                        'the idle gate in the manager',
                        message='1 actuator(s), 0 owned by a session')
    assert actuators.level == DiagnosticStatus.OK
    assert {v.key: v.value for v in actuators.values} == {'/base_gate': IDLE}

    # Claimed and stopped with the gate: still one call for one stop.
    arm.trigger_activate()      # the robot's own tooling brings the arm back
    second = rig.client('operator')
    claimed_ns = time.monotonic_ns()
    second.claim('/base_gate')
    second.claim('/brake')
    rig.wait_owned(second.handle, ['/base_gate', '/brake'])
    _status(rig, supervised, claimed_ns, 'the gate active again',
            level=DiagnosticStatus.OK, message='active')
    # end() returns once every stop is confirmed: the brake's call has been answered.
    assert sorted(second.end()) == ['/base_gate', '/brake']
    assert rig.call_count('/base/engage_brake') == 2
    assert arm._state_machine.current_state[1] == 'active'     # not claimed: left running


def test_the_brake_is_engaged_with_the_gate_when_the_robot_loses_connectivity(
        request, tmp_path):
    """A remote session owns only the gate; the robot's probe fails: gate zeros, brake once."""
    listener = socket.create_server(('127.0.0.1', 0))
    port = listener.getsockname()[1]
    try:
        probe = [f'connectivity_probe:=127.0.0.1:{port}', 'connectivity_period_s:=0.05',
                 'connectivity_probe_timeout_s:=0.2']
        with _running(request, _example_rig(tmp_path), manager_parameters=probe) as rig:
            remote = rig.client('operator')
            remote.claim('/base_gate')
            rig.wait_owned(remote.handle, ['/base_gate'])
            lost_ns = time.monotonic_ns()
            listener.close()       # the robot's uplink is gone
            closed = rig.wait_for_event(remote.handle, SessionEvent.CLOSED_BY_ROBOT)
            assert 'robot lost connectivity' in closed.item.reason
            rig.transitions.wait_for(
                lambda item: item == ('base_gate', State.PRIMARY_STATE_INACTIVE),
                after_ns=lost_ns, what='the gate deactivated')
            brake = rig.calls.wait_for(lambda call: call[0] == '/base/engage_brake',
                                       after_ns=lost_ns, what='the brake called')
            assert _brake_stop_reported(rig, closed.t_ns).startswith('stopped')
            assert rig.call_count('/base/engage_brake') == 1
            assert rig.robot_node('arm_driver')._state_machine.current_state[1] == 'active'
            print(f'brake called {_ms(brake.wall_ns, closed.item.stamp):.1f} ms after the '
                  'closed-by-robot event stamp')
    finally:
        listener.close()
