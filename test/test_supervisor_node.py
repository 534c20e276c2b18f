"""The lifecycle supervisor with real DDS, real lifecycle services and driver processes."""

import os
from pathlib import Path
import signal
import socket
import time
from typing import Any, Dict, List

from supervisor_rig import driver_entry, SupervisorRig

from viam_session.chips.sim_chip import wait_for_line_change
from viam_session_harness.sim_robot import ClientProcess

LEASE_S = 0.5
# Detection needs one lease after the last assertion; the reaction (lifecycle calls between
# processes) comes on top. Generous for a loaded 2-core machine.
REACTION_MARGIN_S = 1.0


def _three_levels(chip: Path) -> Dict[str, Any]:
    return {'name': 'rover', 'primary': {
        'name': 'base', 'nodes': [
            driver_entry('board', 'gpio_output', chip, line=1),
            driver_entry('motor', 'dc_motor', chip, pwm_line=2, direction_line=3,
                         depends_on=['board'])],
        'parts': [{
            'name': 'arm', 'namespace': '/arm', 'nodes': [
                driver_entry('servo_board', 'gpio_output', chip, line=4),
                driver_entry('shoulder', 'servo', chip, pwm_line=5, depends_on=['servo_board'])],
            'parts': [{
                'name': 'gripper', 'namespace': '/arm/gripper', 'nodes': [
                    driver_entry('finger', 'servo', chip, pwm_line=6,
                                 depends_on=['/arm/servo_board'])]}]}]}}


PARENTS = {   # node -> nodes that must be up before it (dependencies and parent parts' nodes)
    '/board': [], '/motor': ['/board'], '/arm/servo_board': ['/board', '/motor'],
    '/arm/shoulder': ['/board', '/motor', '/arm/servo_board'],
    '/arm/gripper/finger': ['/board', '/motor', '/arm/servo_board', '/arm/shoulder']}


def test_three_level_tree_starts_parents_first_and_stops_children_first(
        rig: SupervisorRig) -> None:
    """Partial orders from the drivers' transition events; sessions are closed last."""
    description = rig.description(_three_levels(rig.chip_dir))
    rig.run('session_manager', 'viam_session.sessions.manager_node',
            ['-p', "actuators:=['/motor']", '-p', 'automatic_stop:=false'])
    # Liveliness is not under test here: a long lease keeps a driver that a loaded machine
    # starves for a second from being taken for dead in the middle of the ramp-up.
    rig.start_supervisor(description, list(PARENTS),
                         ['session_manager:=/session_manager', f'transition_timeout_s:={30.0}',
                          'default_liveliness_lease_s:=5.0'])
    client = ClientProcess(['--resource', '/motor', '--value', '0.0', '--window', '2.0'],
                           rig.env, rig.workdir / 'client.log')
    try:
        client.wait_for('started', timeout_s=60)
        rig.wait_discovered()
        started = rig.call('startup')
        assert started.success, started.message
        state = rig.state()
        assert {fqn: node['state'] for fqn, node in state['nodes'].items()} == dict.fromkeys(
            PARENTS, 'active')
        for child, parents in PARENTS.items():
            for parent in parents:
                assert rig.last(parent, 'active') < rig.first(child, 'configuring'), (
                    f'{child} started before {parent} was up')

        stopped = rig.call('shutdown')
        assert stopped.success, stopped.message
        for fqn in PARENTS:
            rig.first(fqn, 'unconfigured')
        for child, parents in PARENTS.items():
            for parent in parents:
                assert rig.last(child, 'unconfigured') < rig.last(parent, 'deactivating'), (
                    f'{parent} stopped before {child} was down')
        closed_t, _ = rig.session_events.wait_for(
            lambda event: event.state == event.CLOSED_BY_ROBOT, timeout_s=30)
        for fqn in ('/arm/servo_board', '/arm/shoulder', '/arm/gripper/finger', '/board'):
            assert rig.last(fqn, 'unconfigured') < closed_t
        downs = [event['part'] for _, event in rig.part_events.items
                 if event['event'] == 'part_down']
        assert downs == ['gripper', 'arm', 'base']
        client.wait_for('lost', timeout_s=30)
    finally:
        client.close()


def test_a_failing_node_stops_the_ramp_up_and_leaves_started_nodes_inactive(
        rig: SupervisorRig) -> None:
    """A motor on a chip that does not exist: the board is deactivated again, arm untouched."""
    robot = _three_levels(rig.chip_dir)
    robot['primary']['nodes'][1]['parameters'].update(chip_backend='lgpio', chip='77')
    rig.start_supervisor(rig.description(robot), list(PARENTS),
                         [f'transition_timeout_s:={30.0}'])
    rig.wait_discovered()
    started = rig.call('startup')
    assert not started.success
    assert '/motor failed to configure refused' in started.message, started.message
    assert 'gpiochip' in started.message or 'chip' in started.message
    nodes = rig.state()['nodes']
    assert nodes['/board']['state'] == 'inactive'
    assert nodes['/board']['idle'] is False     # should be active: WARN, not idle between sessions
    assert nodes['/motor']['state'] == 'unconfigured'
    assert nodes['/motor']['error'], nodes['/motor']
    for fqn in ('/arm/servo_board', '/arm/shoulder', '/arm/gripper/finger'):
        assert nodes[fqn]['state'] == 'unconfigured'
    assert rig.last('/board', 'inactive') > rig.last('/board', 'active')


def _board_and_motors(chip: Path, respawn: Dict[str, Any],
                      lease_s: float = LEASE_S) -> Dict[str, Any]:
    return {'name': 'cart', 'primary': {'name': 'base', 'nodes': [
        driver_entry('board', 'gpio_output', chip, line=1, liveliness_lease_s=lease_s),
        driver_entry('left', 'dc_motor', chip, pwm_line=2, direction_line=3, depends_on=['board'],
                     command_timeout_s=0.0,
                     liveliness_lease_s=lease_s, respawn=respawn),
        driver_entry('right', 'dc_motor', chip, pwm_line=4, direction_line=5, depends_on=['board'],
                     liveliness_lease_s=lease_s)]}}


def _wait_seen_alive(rig: SupervisorRig, fqn: str, timeout_s: float = 30.0) -> None:
    """Wait until the supervisor has seen the node's liveliness (so a kill is a loss of it)."""
    deadline = time.monotonic() + timeout_s
    while rig.state()['nodes'][fqn]['alive'] is not True:
        assert time.monotonic() < deadline, f'the supervisor never saw {fqn} alive'


def test_sigkill_of_a_board_deactivates_its_motors_within_the_lease(rig: SupervisorRig) -> None:
    """No respawn for the board: its motors are deactivated and stay so; it is reported."""
    rig.start_supervisor(rig.description(_board_and_motors(rig.chip_dir, {'max_attempts': 0})),
                         ['/board', '/left', '/right'])
    rig.wait_discovered()
    started = rig.call('startup')
    assert started.success, started.message
    pid = rig.state()['nodes']['/board']['pid']
    _wait_seen_alive(rig, '/board')
    killed_ns = time.monotonic_ns()
    os.kill(pid, signal.SIGKILL)
    delays: List[float] = []
    for motor, line in (('/left', 2), ('/right', 4)):   # deactivation puts PWM 0 on the chip
        change = wait_for_line_change(
            rig.chip_dir, lambda c, m=motor, n=line: c.line == n and c.kind == 'pwm'
            and c.value == 0.0 and c.holder == m, after_ns=killed_ns, timeout_s=30)
        delays.append((change.t_ns - killed_ns) / 1e9)
    print(f'motors deactivated {[f"{d * 1e3:.0f} ms" for d in delays]} after SIGKILL '
          f'(lease {LEASE_S} s)')
    assert max(delays) < LEASE_S + REACTION_MARGIN_S
    _, lost = rig.part_events.wait_for(lambda e: e['event'] == 'node_lost', timeout_s=10)
    assert lost['node'] == '/board' and sorted(lost['dependents_deactivated']) == [
        '/left', '/right']
    assert lost['parked']
    nodes = rig.state()['nodes']
    assert nodes['/board']['alive'] is False and nodes['/board']['parked']
    _, diagnostics = rig.diagnostics.wait_for(
        lambda array: any(s.name == 'cart/nodes/board' and s.level == b'\x02'
                          for s in array.status), timeout_s=10)


def test_a_driver_process_that_exits_is_dead_at_once_not_a_lease_later(
        rig: SupervisorRig) -> None:
    """
    With a 60 s lease, only its process exit can report the killed board within the test.

    (A driver asserts a lease this long every 40 s, so its liveliness need not be seen first.)
    """
    lease_s = 60.0
    rig.start_supervisor(
        rig.description(_board_and_motors(rig.chip_dir, {'max_attempts': 0}, lease_s)),
        ['/board', '/left', '/right'])
    rig.wait_discovered()
    started = rig.call('startup')
    assert started.success, started.message
    pid = rig.state()['nodes']['/board']['pid']
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    _, lost = rig.part_events.wait_for(lambda e: e['event'] == 'node_lost', timeout_s=30)
    print(f'board reported dead {(time.monotonic() - killed) * 1e3:.0f} ms after SIGKILL '
          f'(lease {lease_s:g} s)')
    assert lost['node'] == '/board' and lost['parked']
    assert sorted(lost['dependents_deactivated']) == ['/left', '/right']
    assert rig.state()['nodes']['/board']['alive'] is False


def test_sigkill_of_a_motor_mid_motion_parks_its_lines_then_respawns_it(
        rig: SupervisorRig) -> None:
    """The supervisor holds PWM 0 within the lease, then brings the motor back active."""
    rig.start_supervisor(
        rig.description(_board_and_motors(rig.chip_dir,
                                          {'max_attempts': 2, 'backoff_s': 0.5})),
        ['/board', '/left', '/right'], command_topics=['/left/command'])
    rig.wait_discovered()
    started = rig.call('startup')
    assert started.success, started.message
    rig.publish('/left/command', 0.8)
    wait_for_line_change(rig.chip_dir, lambda c: c.line == 2 and c.kind == 'pwm'
                         and abs(c.value - 0.8) < 1e-9, timeout_s=30)
    pid = rig.state()['nodes']['/left']['pid']
    _wait_seen_alive(rig, '/left')
    killed_ns = time.monotonic_ns()
    os.kill(pid, signal.SIGKILL)
    parked = wait_for_line_change(
        rig.chip_dir, lambda c: c.line == 2 and c.kind == 'pwm' and c.value == 0.0
        and 'parking /left' in c.holder, after_ns=killed_ns, timeout_s=30)
    delay_s = (parked.t_ns - killed_ns) / 1e9
    print(f'PWM 0 held by the supervisor {delay_s * 1e3:.0f} ms after SIGKILL '
          f'(lease {LEASE_S} s)')
    assert delay_s < LEASE_S + REACTION_MARGIN_S
    # Another motor may be late under load and come back first: its recovery is not this one.
    rig.part_events.wait_for(
        lambda e: e['event'] == 'node_recovered' and e['node'] == '/left', timeout_s=60)
    nodes = rig.state()['nodes']
    assert nodes['/left']['state'] == 'active' and nodes['/left']['pid'] != pid
    assert not nodes['/left']['parked']


def test_connectivity_loss_with_policy_shutdown_runs_the_ordered_shutdown(
        rig: SupervisorRig) -> None:
    """The manager's TCP probe target goes away: children down first, then sessions closed."""
    with socket.create_server(('127.0.0.1', 0)) as probe_target:
        port = probe_target.getsockname()[1]
        rig.run('session_manager', 'viam_session.sessions.manager_node', [
            '-p', "actuators:=['/motor']", '-p', f'connectivity_probe:=127.0.0.1:{port}',
            '-p', 'connectivity_period_s:=0.05'])
        rig.start_supervisor(rig.description(_three_levels(rig.chip_dir)), list(PARENTS), [
            'session_manager:=/session_manager', 'connectivity_loss_policy:=shutdown',
            f'transition_timeout_s:={30.0}', 'default_liveliness_lease_s:=5.0'])
        rig.wait_discovered()
        started = rig.call('startup')
        assert started.success, started.message
        lost_ns = time.monotonic_ns()
    # The listening socket is closed: the probe is refused from now on.
    _, event = rig.part_events.wait_for(lambda e: e['event'] == 'connectivity_lost',
                                        after_ns=lost_ns, timeout_s=30)
    assert event['policy'] == 'shutdown'
    rig.part_events.wait_for(lambda e: e['event'] == 'sessions_closed', timeout_s=60)
    downs = [event['part'] for _, event in rig.part_events.items
             if event['event'] == 'part_down']
    assert downs == ['gripper', 'arm', 'base']
    for child, parents in PARENTS.items():
        for parent in parents:
            assert rig.last(child, 'unconfigured') < rig.last(parent, 'deactivating'), (
                f'{parent} stopped before {child} was down')
    assert all(node['state'] == 'unconfigured' for node in rig.state()['nodes'].values())


def test_connectivity_loss_with_policy_stop_leaves_the_tree_up(rig: SupervisorRig) -> None:
    """The default policy: the manager closes remote sessions; the drivers stay active."""
    with socket.create_server(('127.0.0.1', 0)) as probe_target:
        port = probe_target.getsockname()[1]
        rig.run('session_manager', 'viam_session.sessions.manager_node', [
            '-p', "actuators:=['/motor']", '-p', f'connectivity_probe:=127.0.0.1:{port}',
            '-p', 'connectivity_period_s:=0.05'])
        rig.start_supervisor(rig.description(_three_levels(rig.chip_dir)), list(PARENTS), [
            'session_manager:=/session_manager', f'transition_timeout_s:={30.0}',
            'default_liveliness_lease_s:=5.0'])
        client = ClientProcess(['--resource', '/motor', '--value', '0.5', '--window', '5.0'],
                               rig.env, rig.workdir / 'client.log')
        try:
            rig.wait_discovered()
            started = rig.call('startup')
            assert started.success, started.message
            client.wait_for('started', timeout_s=60)
            wait_for_line_change(rig.chip_dir, lambda c: c.line == 2 and c.kind == 'pwm'
                                 and abs(c.value - 0.5) < 1e-9, timeout_s=30)
            lost_ns = time.monotonic_ns()
            probe_target.close()
            wait_for_line_change(rig.chip_dir, lambda c: c.line == 2 and c.kind == 'pwm'
                                 and c.value == 0.0, after_ns=lost_ns, timeout_s=30)
            client.wait_for('lost', timeout_s=30)
        finally:
            client.close()
    states = {fqn: node['state'] for fqn, node in rig.state()['nodes'].items()}
    assert states == {**dict.fromkeys(PARENTS, 'active'), '/motor': 'inactive'}
    assert not [e for _, e in rig.part_events.items if e['event'] == 'part_down']
