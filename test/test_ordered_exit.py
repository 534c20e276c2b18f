"""
Ctrl-C of `ros2 launch`, without launch: SIGINT to every robot process at the same instant.

The robot's processes are started as robot.launch.py starts them: the session manager, the
lifecycle supervisor with `spawn_nodes` false, and every driver as a process of its own on a
simulated chip, all in one process group. A session drives a motor; then the group gets SIGINT,
as from launch's terminal, and each process one more, as launch sends. What must hold: every
driver's outputs safe at once (by the driver itself), the ordered shutdown all the same
(children first, each part reported, the session closed last with `closed by robot`), no
ERROR line in any log, and every process gone before launch would escalate to SIGTERM (5 s).
With the supervisor gone (SIGKILL) the others wait for it at most a bounded time, and
launch's SIGTERM ends that wait.

Also here, because they are what that shutdown relies on: `~/shutdown` succeeds when sessions
own actuators, and a launch-started node only late for its lease comes back like a spawned one.
"""

import os
from pathlib import Path
import re
import signal
import subprocess
import time
from typing import Any, Dict, List, Tuple

import pytest
from supervisor_rig import driver_entry, SupervisorRig

from viam_session.chips.file_watch import FileWatch
from viam_session.chips.sim_chip import read_line_changes, wait_for_line_change
from viam_session_harness.sim_robot import ClientProcess
from viam_session_harness.waiting import poll_until

# launch sends SIGTERM this long after SIGINT (an ordered exit is over before), SIGKILL this
# long after SIGTERM.
LAUNCH_SIGTERM_AFTER_S = 5.0
LAUNCH_SIGKILL_AFTER_SIGTERM_S = 5.0
# A driver's own stop on SIGINT is a chip write in its signal path; generous for a loaded machine.
SAFE_AT_ONCE_S = 1.0
WINDOW_S = 5.0
LEASE_S = 5.0       # liveliness is not under test in the exit test: no false losses under load
MOTOR_LINE, SERVO_LINE, BOARD_LINE, SERVO_BOARD_LINE = 2, 5, 1, 4
# node -> nodes that must be down before it starts going down (dependents, sub-parts' nodes)
CHILDREN = {'/board': ['/left_motor', '/arm/servo_board', '/arm/shoulder'],
            '/left_motor': ['/arm/servo_board', '/arm/shoulder'],
            '/estop': ['/arm/servo_board', '/arm/shoulder'],
            '/arm/servo_board': ['/arm/shoulder'],
            '/arm/shoulder': []}
LOG_ERROR = re.compile(r'\[(ERROR|FATAL)\]|Traceback')


def _rover(chip: Path) -> Dict[str, Any]:
    """Return the rover's kinds of node, and a sub-part, so that children-first means something."""
    return {'name': 'rover', 'primary': {
        'name': 'rover', 'nodes': [
            driver_entry('board', 'gpio_output', chip, line=BOARD_LINE),
            driver_entry('left_motor', 'dc_motor', chip, pwm_line=MOTOR_LINE, direction_line=3,
                         depends_on=['board'], respawn={'max_attempts': 3, 'backoff_s': 1.0}),
            driver_entry('estop', 'digital_input', chip, line=7)],
        'parts': [{
            'name': 'arm', 'namespace': '/arm', 'nodes': [
                driver_entry('servo_board', 'gpio_output', chip, line=SERVO_BOARD_LINE),
                driver_entry('shoulder', 'servo', chip, pwm_line=SERVO_LINE,
                             depends_on=['servo_board'])]}]}}


def _start_robot(rig: SupervisorRig) -> Path:
    """Start manager, drivers and supervisor as robot.launch.py does; then the tree."""
    description = rig.description(_rover(rig.chip_dir))
    rig.run('session_manager', 'viam_session.sessions.manager_node', [
        '-p', f'robot_description:={description}', '-p', 'supervisor:=/lifecycle_supervisor',
        '-p', f'default_window_s:={WINDOW_S}'])
    rig.start_drivers(description, LEASE_S)
    rig.start_supervisor(description, list(CHILDREN), [
        'session_manager:=/session_manager', f'default_liveliness_lease_s:={LEASE_S}',
        f'transition_timeout_s:={30.0}'], spawn_nodes=False)
    rig.wait_discovered()
    started = rig.call('startup')
    assert started.success, started.message
    return description


def _drive(rig: SupervisorRig, power: float) -> ClientProcess:
    client = ClientProcess(['--resource', '/left_motor', '--value', str(power),
                            '--window', str(WINDOW_S)], rig.env, rig.workdir / 'client.log')
    client.wait_for('started', timeout_s=60)
    wait_for_line_change(rig.chip_dir, lambda c: c.line == MOTOR_LINE and c.kind == 'pwm'
                         and abs(c.value - power) < 1e-9, timeout_s=30)
    return client


def _wait_for_logs(rig: SupervisorRig, names: List[str], text: str) -> None:
    deadline = time.monotonic() + 30
    for name in names:
        watch = FileWatch(rig.workdir / f'{name}.log')
        try:
            while text not in rig.log(name):
                assert time.monotonic() < deadline, f'{text!r} not in the log of {name}'
                watch.wait(1.0)
        finally:
            watch.close()


def _error_lines(rig: SupervisorRig) -> List[str]:
    return [f'{name}: {line}' for name in rig.processes for line in rig.log(name).splitlines()
            if LOG_ERROR.search(line)]


def _sigint_as_launch(rig: SupervisorRig) -> Tuple[int, Dict[str, float]]:
    """SIGINT the group, then each process once more; return when, and each exit's delay (s)."""
    signalled_ns = rig.signal_all(signal.SIGINT)
    _wait_for_logs(rig, [rig.driver_name(fqn) for fqn in CHILDREN], 'signalled:')
    for process in rig.processes.values():    # launch sends each of them one more
        process.send_signal(signal.SIGINT)
    exits: Dict[str, float] = {}
    for name, process in rig.processes.items():
        remaining = LAUNCH_SIGTERM_AFTER_S * 3 - (time.monotonic_ns() - signalled_ns) / 1e9
        try:
            code = process.wait(timeout=max(remaining, 0.1))
        except subprocess.TimeoutExpired:
            _dump_stacks(rig)
            pytest.fail(f'{name} did not exit {LAUNCH_SIGTERM_AFTER_S * 3:g} s after SIGINT '
                        f'(still running: {sorted(exits.keys() ^ rig.processes.keys())}; '
                        'their stacks are at the end of their logs)')
        assert code == 0, name
        exits[name] = (time.monotonic_ns() - signalled_ns) / 1e9
    print('exited after SIGINT: ' + ', '.join(f'{name} {s:.2f} s' for name, s in exits.items()))
    return signalled_ns, exits


def _dump_stacks(rig: SupervisorRig) -> None:
    """Have every process still running print its threads' stacks into its log (SIGUSR1)."""
    running = [process for process in rig.processes.values() if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGUSR1)
    logs = [rig.workdir / f'{name}.log' for name, process in rig.processes.items()
            if process in running]
    try:
        poll_until(lambda: all('most recent call first' in log.read_text(errors='replace')
                               for log in logs), timeout_s=10.0, what='every stack printed',
                   interval_s=0.1)
    except TimeoutError:
        pass    # a process too stuck to print: its log says so by having no stack


def _assert_children_first(rig: SupervisorRig) -> None:
    """Children unconfigured before parents deactivate; each part reported down, in order."""
    for parent, children in CHILDREN.items():
        for child in children:
            assert rig.last(child, 'unconfigured') < rig.last(parent, 'deactivating'), (
                f'{parent} went down before {child}')
    downs = [event['part'] for _, event in rig.part_events.items
             if event['event'] == 'part_down']
    assert downs == ['arm', 'rover']
    assert all(not event['problems'] for _, event in rig.part_events.items
               if event['event'] == 'part_down')


def test_sigint_to_every_process_at_once_runs_the_ordered_shutdown(rig: SupervisorRig) -> None:
    """Outputs safe at once; children first; session closed last; no ERROR; all exit in 5 s."""
    _start_robot(rig)
    client = _drive(rig, 0.6)
    try:
        signalled_ns, exits = _sigint_as_launch(rig)
        closed_t, closed = rig.session_events.wait_for(
            lambda event: event.state == event.CLOSED_BY_ROBOT, timeout_s=30)
        assert client.wait_for('lost', timeout_s=30)['reason'].startswith('closed by robot')
    finally:
        client.close()

    # Safe at once, by the driver itself, before the supervisor reached it.
    safe = next(c for c in read_line_changes(rig.chip_dir) if c.t_ns > signalled_ns
                and c.line == MOTOR_LINE and c.kind == 'pwm' and c.value == 0.0)
    print(f'motor PWM 0 {(safe.t_ns - signalled_ns) / 1e6:.1f} ms after SIGINT, by '
          f'{safe.holder}')
    assert safe.holder == '/left_motor'
    assert safe.t_ns - signalled_ns < SAFE_AT_ONCE_S * 1e9
    assert safe.t_ns < rig.last('/left_motor', 'deactivating')

    _assert_children_first(rig)
    assert max(rig.last(fqn, 'unconfigured') for fqn in CHILDREN) < closed_t
    assert list(closed.owned_resources) == ['/left_motor']
    assert not _error_lines(rig)
    assert 'shutdown: every part down; sessions closed' in rig.log('supervisor')
    assert max(exits.values()) < LAUNCH_SIGTERM_AFTER_S, exits


def test_sigint_with_no_session_open_is_as_orderly(rig: SupervisorRig) -> None:
    """The manager, with nothing to close, may leave first: that is no problem either."""
    _start_robot(rig)
    _, exits = _sigint_as_launch(rig)
    _assert_children_first(rig)
    assert not _error_lines(rig)
    assert 'shutdown: every part down; sessions closed' in rig.log('supervisor')
    assert max(exits.values()) < LAUNCH_SIGTERM_AFTER_S, exits


def test_with_the_supervisor_gone_sigterm_ends_the_wait_for_it(rig: SupervisorRig) -> None:
    """
    SIGKILL the supervisor, then SIGINT as launch does, then launch's SIGTERM (sent early).

    A killed supervisor stays in the ROS graph until DDS drops its participant, so the others
    wait for it; outputs are safe from the SIGINT on, and the SIGTERM ends every wait.
    """
    _start_robot(rig)
    client = _drive(rig, 0.6)
    try:
        supervisor = rig.processes.pop('supervisor')
        supervisor.kill()
        supervisor.wait(timeout=30)
        signalled_ns = rig.signal_all(signal.SIGINT)
        _wait_for_logs(rig, [rig.driver_name(fqn) for fqn in CHILDREN], 'signalled:')
        assert all(process.poll() is None for process in rig.processes.values()), (
            'a process did not wait for its supervisor')
        terminated_ns = rig.signal_all(signal.SIGTERM)
        for name, process in rig.processes.items():
            assert process.wait(timeout=30) == 0, name
        exited_s = (time.monotonic_ns() - terminated_ns) / 1e9
        _, closed = rig.session_events.wait_for(
            lambda event: event.state == event.CLOSED_BY_ROBOT, timeout_s=30)
        assert client.wait_for('lost', timeout_s=30)['reason'].startswith('closed by robot')
    finally:
        client.close()
    print(f'every process gone {exited_s:.2f} s after SIGTERM')
    assert exited_s < LAUNCH_SIGKILL_AFTER_SIGTERM_S
    safe = next(c for c in read_line_changes(rig.chip_dir) if c.t_ns > signalled_ns
                and c.line == MOTOR_LINE and c.kind == 'pwm' and c.value == 0.0)
    assert safe.holder == '/left_motor' and safe.t_ns - signalled_ns < SAFE_AT_ONCE_S * 1e9
    assert safe.t_ns < terminated_ns


def test_shutdown_succeeds_when_sessions_own_actuators(rig: SupervisorRig) -> None:
    """The manager stops what the supervisor has taken down already: that is stopped."""
    _start_robot(rig)
    client = _drive(rig, 0.4)
    try:
        stopped = rig.call('shutdown')
        assert stopped.success, stopped.message
        assert stopped.message == 'every part down; sessions closed'
        _, event = rig.part_events.wait_for(lambda e: e['event'] == 'sessions_closed')
        assert "stopped ['/left_motor']" in event['message'], event
        assert client.wait_for('lost', timeout_s=30)['reason'].startswith('closed by robot')
    finally:
        client.close()
    assert all(node['state'] == 'unconfigured' for node in rig.state()['nodes'].values())
    assert 'could not stop' not in rig.log('session_manager')


def _late_board(chip: Path, lease_s: float) -> Dict[str, Any]:
    """Return a board (no respawn) and a motor that depends on it."""
    return {'name': 'cart', 'primary': {'name': 'base', 'nodes': [
        driver_entry('board', 'gpio_output', chip, line=BOARD_LINE, liveliness_lease_s=lease_s),
        driver_entry('left', 'dc_motor', chip, pwm_line=MOTOR_LINE, direction_line=3,
                     depends_on=['board'], liveliness_lease_s=lease_s)]}}


@pytest.mark.parametrize('spawned', [True, False], ids=['spawned', 'launch_started'])
def test_a_node_only_late_for_its_lease_comes_back_without_spending_an_attempt(
        rig: SupervisorRig, spawned: bool) -> None:
    """
    SIGSTOP the board until the supervisor sees it dead, then SIGCONT: it is back, active.

    Without `respawn` the board has no attempt to spend, which is what once gave a late node
    up as 'dead; not brought back after 0 attempt(s)' while it was active.
    """
    lease_s = 1.0
    description = rig.description(_late_board(rig.chip_dir, lease_s))
    if not spawned:
        rig.start_drivers(description, lease_s)
    rig.start_supervisor(description, ['/board', '/left'], [f'transition_timeout_s:={30.0}'],
                         spawn_nodes=spawned)
    rig.wait_discovered()
    started = rig.call('startup')
    assert started.success, started.message
    deadline = time.monotonic() + 30
    while rig.state()['nodes']['/board']['alive'] is not True:
        assert time.monotonic() < deadline, 'the supervisor never saw /board alive'
    pid = rig.state()['nodes']['/board']['pid'] if spawned else rig.driver('/board').pid

    stopped_ns = time.monotonic_ns()
    os.kill(pid, signal.SIGSTOP)
    try:
        rig.diagnostics.wait_for(lambda array: any(
            s.name == 'cart/nodes/board' and s.message.startswith('dead') for s in array.status),
            after_ns=stopped_ns, timeout_s=30)
        rig.transitions.wait_for(lambda item: item == ('/left', 'inactive'),   # held down
                                 after_ns=stopped_ns, timeout_s=30)
    finally:
        os.kill(pid, signal.SIGCONT)
    _, back = rig.part_events.wait_for(
        lambda e: e['event'] == 'node_recovered' and e['node'] == '/board', timeout_s=30)
    assert back['dependents_activated'] == ['/left']
    nodes = rig.state()['nodes']
    assert {fqn: (node['state'], node['alive'], node['error'], node['attempts'])
            for fqn, node in nodes.items()} == {
        '/board': ('active', True, '', 0), '/left': ('active', True, '', 0)}
    assert nodes['/board']['pid'] in (pid, None)
    assert not [e for _, e in rig.part_events.items if e['event'] == 'node_given_up']
