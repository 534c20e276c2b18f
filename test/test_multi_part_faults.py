"""
A multi-part robot across two hosts: the link to the sub-part's host drops, then returns.

The primary part (host `primary`: session manager, lifecycle supervisor, one local driver, the
session clients) runs in namespace `a`; the sub-part `/arm` (host `arm-host`: a board, a DC
motor and a servo on a simulated chip of its own) in namespace `b`, joined to `a` by the
impairment link of `viam_session_harness.netfault` (`MultiPartRobot`). Skipped where
namespaces cannot be used.
"""

from pathlib import Path
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest

from viam_session.chips.sim_chip import LineChange, wait_for_line_change
from viam_session_harness.netfault import ImpairedPair, netns_unavailable_reason
from viam_session_harness.netfault.multi_part_robot import JsonLines, MultiPartRobot
from viam_session_harness.waiting import poll_until
import yaml

from conftest import next_domain  # noqa: I100 - the tests' own helper

DEADLINE_S = 60.0
STATE_POLL_S = 0.2  # how often the supervisor's view is read while it settles
WINDOW_S = 2.0
# The supervisor's liveliness lease of the arm's nodes, and of the primary's node: long enough
# that a loaded machine seldom makes a healthy node look dead (see README, supervisor timing).
LEASE_S = 2.0
PRIMARY_LEASE_S = 5.0
COMMAND_TIMEOUT_S = 0.5  # the drivers' default command_timeout_s
# Generous: on this 2-core machine under other jobs' load the sub-part's drivers were seen
# starved for 0.8 s (both watchdogs firing together, 1.27 s after the cut).
STOP_MARGIN_S = 1.0
REACTION_MARGIN_S = 1.0  # lifecycle calls and events between processes, on a loaded machine
MOTOR_LINE, SERVO_LINE = 2, 4
BOARD, MOTOR, SERVO = '/arm/arm_board', '/arm/motor', '/arm/servo'
ARM_NODES = (BOARD, MOTOR, SERVO)
# Each return of a node spends one attempt: room for the returns of a healthy node that a
# loaded machine made late (startup included), beside the one under test.
RESPAWN = {'max_attempts': 10, 'backoff_s': 0.5}

pytestmark = pytest.mark.netns
netns_only = pytest.mark.skipif(netns_unavailable_reason() is not None,
                                reason=str(netns_unavailable_reason()))


def _description(workdir: Path) -> Dict[str, Any]:
    def arm_node(name: str, driver: str, **parameters: Any) -> Dict[str, Any]:
        depends_on = parameters.pop('depends_on', [])
        return {'name': name, 'driver': driver, 'depends_on': depends_on,
                'parameters': {'chip': str(workdir / 'arm_chip'), **parameters},
                'liveliness_lease_s': LEASE_S,
                'respawn': RESPAWN}

    return {'name': 'two_hosts', 'primary': {
        'name': 'base', 'host': 'primary', 'nodes': [
            {'name': 'base_light', 'driver': 'gpio_output',
             'parameters': {'chip': str(workdir / 'base_chip'), 'line': 1},
             'liveliness_lease_s': PRIMARY_LEASE_S, 'respawn': RESPAWN}],
        'parts': [{'name': 'arm', 'namespace': '/arm', 'host': 'arm-host', 'nodes': [
            arm_node('arm_board', 'board', enable_line=1),
            arm_node('motor', 'dc_motor', pwm_line=MOTOR_LINE, direction_line=3,
                     depends_on=['arm_board']),
            arm_node('servo', 'servo', pwm_line=SERVO_LINE, depends_on=['arm_board'])]}]}}


@pytest.fixture
def robot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MultiPartRobot]:
    """Provide the two-host robot, started, with the link between its hosts up."""
    description = tmp_path / 'robot.yaml'
    description.write_text(yaml.safe_dump({'robot': _description(tmp_path)}), encoding='utf-8')
    with ImpairedPair(seed=7) as pair:
        two_hosts = MultiPartRobot(
            pair=pair, description=description, workdir=tmp_path,
            domain_id=next_domain(), primary_host='primary', sub_host='arm-host',
            supervisor_parameters=['transition_timeout_s:=30.0'], deadline_s=DEADLINE_S)
        failed = True
        try:
            two_hosts.start()
            yield two_hosts
            report = getattr(request.node, 'report_call', None)
            failed = report is None or report.failed
        finally:
            two_hosts.close()
            if failed:
                for log in sorted(tmp_path.glob('*.log')):
                    print(f'--- {log.name}\n{log.read_text(errors="replace")[-4000:]}')
                for index, client in enumerate(two_hosts.clients):
                    print(f'--- client_{index} lines', *client.snapshot()[-12:], sep='\n')


def _output(chip: Path, line: int, kind: str, predicate: Callable[[float], bool],
            after_ns: int = 0, holder: str = '') -> LineChange:
    """Wait for a change of `kind` on `line` after `after_ns` (by `holder` if given)."""
    return wait_for_line_change(
        chip, lambda c: c.line == line and c.kind == kind and predicate(c.value)
        and (not holder or c.holder == holder), after_ns=after_ns, timeout_s=DEADLINE_S)


def _wait_arm_seen_alive(robot: MultiPartRobot) -> None:
    """Wait until the supervisor has seen each arm node alive (so a cut is a loss of it)."""
    deadline = time.monotonic() + DEADLINE_S
    while not all(robot.state()['nodes'][fqn]['alive'] is True for fqn in ARM_NODES):
        assert time.monotonic() < deadline, 'the supervisor never saw every arm node alive'


def _drive_the_arm(robot: MultiPartRobot) -> List[JsonLines]:
    """Start one session driving the arm's motor, one its servo; wait until both move."""
    arm_chip = robot.workdir / 'arm_chip'
    clients = [robot.start_client(resource=MOTOR, value=0.5, window_s=WINDOW_S),
               robot.start_client(resource=SERVO, value=90.0, window_s=WINDOW_S)]
    for client in clients:
        client.wait_for(lambda line: line['event'] == 'started', DEADLINE_S, 'session start')
    _output(arm_chip, MOTOR_LINE, 'pwm', lambda duty: duty == 0.5)
    _output(arm_chip, SERVO_LINE, 'servo', lambda pulse_us: pulse_us > 0.0)
    _wait_arm_seen_alive(robot)
    return clients


def _cut_the_arm_off(robot: MultiPartRobot, clients: List[JsonLines],
                     record_property: Callable[[str, object], None]) -> None:
    """
    Take the link down: the arm's own drivers stop it; the supervisor reports it lost.

    The primary's node and the sessions (their clients run on the primary) are untouched.
    """
    pair, arm_chip = robot.pair, robot.workdir / 'arm_chip'
    down_ns = time.monotonic_ns()
    pair.set_link(pair.b.ns, pair.b.dev, up=False)
    stops = [_output(arm_chip, MOTOR_LINE, 'pwm', lambda duty: duty == 0.0, down_ns, MOTOR),
             _output(arm_chip, SERVO_LINE, 'servo', lambda pulse: pulse == 0.0, down_ns, SERVO)]
    stop_s = max(stop.t_ns - down_ns for stop in stops) * 1e-9
    lost = {fqn: robot.part_event('node_lost', fqn, after_ns=down_ns) for fqn in ARM_NODES}
    lost_s = max(event['t_ns'] - down_ns for event in lost.values()) * 1e-9
    state = robot.state()
    record_property('arm_safe_after_link_down_s', round(stop_s, 3))
    record_property('arm_lost_reported_after_link_down_s', round(lost_s, 3))
    print(f'link down: arm outputs safe after {stop_s * 1e3:.0f} ms (command timeout '
          f'{COMMAND_TIMEOUT_S} s), reported lost after {lost_s * 1e3:.0f} ms (lease {LEASE_S} s)')
    assert stop_s <= COMMAND_TIMEOUT_S + STOP_MARGIN_S
    assert lost_s <= LEASE_S + REACTION_MARGIN_S
    assert all(event['data']['part'] == 'arm' for event in lost.values())
    assert all(state['nodes'][fqn]['alive'] is False for fqn in ARM_NODES), state['nodes']
    assert state['parts']['arm']['level'] == 2  # diagnostic_msgs ERROR
    assert state['nodes']['/base_light']['state'] == 'active'
    assert [line for client in clients for line in client.snapshot()
            if line['event'] == 'lost'] == []


def _link_up_brings_the_arm_back(robot: MultiPartRobot,
                                 record_property: Callable[[str, object], None]) -> int:
    """
    Bring the link up: the board is reported back before its dependents, all active again.

    The sessions, alive on the primary all along, drive the arm again. Return when the link
    came up (CLOCK_MONOTONIC ns).
    """
    pair, arm_chip = robot.pair, robot.workdir / 'arm_chip'
    up_ns = time.monotonic_ns()
    pair.set_link(pair.b.ns, pair.b.dev, up=True)
    back = {fqn: robot.part_event('node_recovered', fqn, after_ns=up_ns) for fqn in ARM_NODES}
    back_s = max(event['t_ns'] - up_ns for event in back.values()) * 1e-9
    moving = _output(arm_chip, MOTOR_LINE, 'pwm', lambda duty: duty == 0.5, up_ns)
    _output(arm_chip, SERVO_LINE, 'servo', lambda pulse_us: pulse_us > 0.0, up_ns)
    record_property('arm_back_and_active_after_link_up_s', round(back_s, 3))
    record_property('arm_motor_driven_after_link_up_s', round((moving.t_ns - up_ns) * 1e-9, 3))
    print(f'link up: arm back and active after {back_s * 1e3:.0f} ms, motor driven again '
          f'after {(moving.t_ns - up_ns) * 1e-6:.0f} ms')
    for dependent in (MOTOR, SERVO):
        assert back[BOARD]['data']['t_ns'] < back[dependent]['data']['t_ns'], (
            f'{dependent} reported back before the board it depends on: {back}')

    # The supervisor's view of every node, active and seen alive: a node's liveliness report
    # can come a moment after its state (seen: a primary node still 'alive: None' just after
    # the arm was back), so the view is read until it holds or the deadline passes.
    def every_node_active_and_alive() -> bool:
        nodes = robot.state()['nodes']
        return all((node['state'], node['alive']) == ('active', True) for node in nodes.values())

    poll_until(every_node_active_and_alive, timeout_s=DEADLINE_S,
               what="the supervisor's view: not every node active and seen alive",
               interval_s=STATE_POLL_S)
    return up_ns


@netns_only
def test_link_to_the_sub_part_host_drops_then_returns(
        robot: MultiPartRobot, record_property: Callable[[str, object], None]) -> None:
    """The arm goes safe by itself and is reported lost; back, it is brought up in order."""
    clients = _drive_the_arm(robot)
    _cut_the_arm_off(robot, clients, record_property)
    _link_up_brings_the_arm_back(robot, record_property)


@netns_only
def test_sub_part_host_restarted_while_cut_off_is_started_again_parents_first(
        robot: MultiPartRobot, record_property: Callable[[str, object], None]) -> None:
    """
    The arm's host restarts its drivers while cut off: back, they are unconfigured.

    The supervisor configures and activates them as at startup: the board is enabled
    (activated) before the motor and the servo claim their lines (configured).
    """
    clients = _drive_the_arm(robot)
    _cut_the_arm_off(robot, clients, record_property)
    robot.sub_part_host.close()
    restarted_ns = time.monotonic_ns()
    robot.sub_part_host.start()
    up_ns = _link_up_brings_the_arm_back(robot, record_property)
    arm_chip = robot.workdir / 'arm_chip'
    enabled = _output(arm_chip, 1, 'level', lambda level: level == 1, restarted_ns, BOARD)
    claims = [wait_for_line_change(
        arm_chip, lambda c, line=line, fqn=fqn: c.line == line and c.kind == 'claim'
        and c.holder == fqn, after_ns=restarted_ns, timeout_s=DEADLINE_S)
        for line, fqn in ((MOTOR_LINE, MOTOR), (SERVO_LINE, SERVO))]
    assert enabled.t_ns > up_ns
    assert all(enabled.t_ns < claim.t_ns for claim in claims), (enabled, claims)
