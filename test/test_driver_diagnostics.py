"""
Drivers' `/diagnostics`: the ROS-free status building, then real driver processes.

The processes run on a simulated chip with real DDS and real lifecycle services (see
driver_rig.py); a listener in this process, in a ROS context of its own, records every
DiagnosticStatus they publish.
"""

import sys
import threading
import time
from typing import Callable, Dict, List

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from conftest import next_domain  # noqa: I100 - the tests' own helpers
from driver_rig import driver_rig
from viam_session.chips.sim_chip import SimChip
from viam_session.drivers.diagnostics import (
    driver_status, LineRecord, LineUse, status_signature, WatchdogState)

TIMEOUT_S = 60.0     # a loaded 2-core machine starts Python processes slowly


class DiagnosticsListener:
    """Every DiagnosticStatus on /diagnostics of one domain, in order of arrival."""

    def __init__(self, domain_id: int) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node('diagnostics_listener', context=self._context, enable_rosout=False)
        self._statuses: List[DiagnosticStatus] = []
        self._changed = threading.Condition()
        self._node.create_subscription(DiagnosticArray, '/diagnostics', self._on_array, 100)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def _on_array(self, array: DiagnosticArray) -> None:
        with self._changed:
            self._statuses.extend(array.status)
            self._changed.notify_all()

    def wait_for(self, name: str, predicate: Callable[[Dict[str, str]], bool], *,
                 after: int = 0, timeout_s: float = TIMEOUT_S) -> tuple:
        """Wait for status `name` whose values meet `predicate`; return (it, its index)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for index in range(after, len(self._statuses)):
                    status = self._statuses[index]
                    if status.name == name and predicate(values(status)):
                        return status, index
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(s.message, values(s)) for s in self._statuses if s.name == name]
                    raise TimeoutError(f'no matching {name!r} within {timeout_s} s; '
                                       f'last seen: {seen[-3:]}')
                self._changed.wait(remaining)

    def count(self) -> int:
        with self._changed:
            return len(self._statuses)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=5)
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)


def values(status: DiagnosticStatus) -> Dict[str, str]:
    return {value.key: value.value for value in status.values}


@pytest.fixture
def rig(request, tmp_path):
    """Provide driver processes on a simulated chip and an observer, in a domain of their own."""
    yield from driver_rig(request, tmp_path, next_domain())


@pytest.fixture
def listener(rig):
    """Record /diagnostics in the rig's domain."""
    listening = DiagnosticsListener(rig.domain_id)
    yield listening
    listening.close()


# ROS-free status building.

def test_line_record_remembers_what_the_driver_put_on_each_line(tmp_path):
    """Levels, PWM, servo pulses and inputs are recorded as set; release forgets the line."""
    with LineRecord(SimChip(str(tmp_path), holder='test')) as chip:
        chip.claim_output(12, 0)
        chip.claim_output(16, 0)
        chip.claim_output(18, 0)
        chip.claim_input(22)
        chip.set_pwm(12, 1000.0, 0.25)
        chip.write(16, 1)
        chip.set_servo(18, 1500.0, 50.0)
        uses = chip.uses()
        assert uses[12].describe() == 'PWM duty 0.250 at 1000 Hz'
        assert uses[16].describe() == 'level 1'
        assert uses[18].describe() == 'servo pulse 1500 us at 50 Hz'
        assert uses[22].describe() == 'input'
        chip.set_servo(18, 0, 50.0)
        assert chip.uses()[18].describe() == 'servo released (no pulses)'
        chip.release(16)
        assert 16 not in chip.uses()
        assert chip.read(22) in (0, 1)
    assert chip.closed and chip.uses() == {}


def test_status_names_the_node_and_chip_and_says_why_outputs_are_safe():
    """A tripped watchdog is WARN with its reason; the lines are named by their parameter."""
    lines = {12: LineUse('pwm', duty=0.0, frequency_hz=1000.0), 16: LineUse('level', level=0),
             22: LineUse('input')}
    roles = {12: 'pwm_line', 16: 'direction_line', 22: 'line'}
    status = driver_status(
        node='/arm/motor', kind='dc_motor', state='active', backend='lgpio', chip='0',
        lines=lines, roles=roles, input_levels={22: 1},
        watchdog=WatchdogState(timeout_s=0.5, tripped='no valid command for 0.5 s'))
    assert status.name == '/arm/motor: dc_motor driver'
    assert status.hardware_id == 'gpiochip0'
    assert status.level == DiagnosticStatus.WARN
    assert 'watchdog tripped (no valid command for 0.5 s)' in status.message
    assert values(status) == {
        'lifecycle state': 'active', 'chip': 'lgpio 0',
        'watchdog': 'tripped: no valid command for 0.5 s', 'commands from': 'any publisher',
        'driving': 'no',
        'line 12 (pwm_line)': 'PWM duty 0.000 at 1000 Hz',
        'line 16 (direction_line)': 'level 0', 'line 22 (line)': 'input, level 1'}


def test_lines_with_an_active_level_say_what_their_level_means():
    """An active-low output at level 0 is on; an input at its active level is active."""
    lines = {5: LineUse('level', level=0), 6: LineUse('level', level=0),
             16: LineUse('level', level=1), 22: LineUse('input'), 23: LineUse('input')}
    roles = {5: 'line', 6: 'enable_line', 16: 'direction_line', 22: 'line', 23: 'line'}
    status = driver_status(
        node='/relay', kind='gpio_output', state='active', backend='sim', chip='/tmp/chip',
        lines=lines, roles=roles, input_levels={22: 0, 23: 1}, watchdog=None,
        active_levels={5: 0, 6: 1, 22: 1, 23: 1})
    assert {key: value for key, value in values(status).items() if key.startswith('line')} == {
        'line 5 (line)': 'level 0 (on)', 'line 6 (enable_line)': 'level 0 (off)',
        'line 16 (direction_line)': 'level 1', 'line 22 (line)': 'input, level 0 (inactive)',
        'line 23 (line)': 'input, level 1 (active)'}


@pytest.mark.parametrize('state, watchdog, error, level, message', [
    ('active', WatchdogState(timeout_s=0.5), '', DiagnosticStatus.OK,
     'active, waiting for commands'),
    ('active', None, '', DiagnosticStatus.OK, 'active'),
    ('inactive', WatchdogState(timeout_s=0.0), '', DiagnosticStatus.OK,
     'inactive: outputs at their safe level'),
    ('unconfigured', None, 'configure failed: line 12 in use by /other', DiagnosticStatus.WARN,
     'unconfigured: configure failed: line 12 in use by /other'),
    ('errorprocessing', None, '', DiagnosticStatus.ERROR,
     'error processing: outputs being made safe'),
])
def test_levels_follow_the_lifecycle_state(state, watchdog, error, level, message):
    """OK when working as configured, WARN when safe for a reason, ERROR while in error."""
    status = driver_status(node='/x', kind='servo', state=state, backend='sim', chip='/tmp/c',
                           lines={}, roles={}, input_levels={}, watchdog=watchdog,
                           error=error)
    assert (status.level, status.message) == (level, message)
    assert status.hardware_id == 'sim chip /tmp/c'
    assert ('watchdog' in values(status)) == (watchdog is not None)


def test_watchdog_states():
    """Off at timeout 0, armed with its timeout, tripped with its reason."""
    assert WatchdogState(timeout_s=0.0).describe() == 'off'
    assert WatchdogState(timeout_s=0.3).describe() == 'armed (0.3 s)'
    assert WatchdogState(timeout_s=0.3, tripped='x').describe() == 'tripped: x'


def test_signature_ignores_input_levels_only():
    """An encoder edge is no change worth publishing; an output level is."""
    def status(inputs: Dict[int, int], pwm: float) -> DiagnosticStatus:
        return driver_status(
            node='/e', kind='encoder', state='active', backend='sim', chip='c',
            lines={17: LineUse('input'), 12: LineUse('pwm', duty=pwm, frequency_hz=50.0)},
            roles={}, input_levels=inputs, watchdog=None)
    assert status_signature(status({17: 0}, 0.0)) == status_signature(status({17: 1}, 0.0))
    assert status_signature(status({17: 0}, 0.0)) != status_signature(status({17: 0}, 0.5))


# Real driver processes.

def test_motor_diagnostics_report_the_watchdog_tripped_when_commands_stop(rig, listener):
    """Armed while active, driving with its PWM and direction, tripped once commands stop."""
    timeout_s = 0.3
    name = '/motor: dc_motor driver'
    observer = rig.start({'motor': ('dc_motor', {'command_timeout_s': timeout_s,
                                                 'pwm_line': 12, 'direction_line': 16})})
    listener.wait_for(name, lambda v: v['lifecycle state'] == 'unconfigured')
    observer.bring_up('motor')
    active, index = listener.wait_for(
        name, lambda v: v['lifecycle state'] == 'active' and v['watchdog'] == 'armed (0.3 s)')
    assert active.level == DiagnosticStatus.OK
    assert active.hardware_id == f'sim chip {rig.chip_dir}'
    assert values(active)['line 12 (pwm_line)'] == 'PWM duty 0.000 at 1000 Hz'

    observer.publish('motor', -0.5)
    driving, index = listener.wait_for(
        name, lambda v: v['driving'] == 'yes', after=index)
    assert values(driving)['line 12 (pwm_line)'] == 'PWM duty 0.500 at 1000 Hz'
    assert values(driving)['line 16 (direction_line)'] == 'level 1'
    tripped, index = listener.wait_for(
        name, lambda v: v['watchdog'].startswith('tripped'), after=index)
    assert tripped.level == DiagnosticStatus.WARN
    assert values(tripped)['watchdog'] == f'tripped: no valid command for {timeout_s:g} s'
    assert values(tripped)['lifecycle state'] == 'active'
    assert values(tripped)['line 12 (pwm_line)'] == 'PWM duty 0.000 at 1000 Hz'
    assert values(tripped)['line 16 (direction_line)'] == 'level 0'
    # Still tripped a published second later (1 Hz), until a command or a transition.
    listener.wait_for(name, lambda v: v['watchdog'].startswith('tripped'), after=index + 1)

    assert observer.change_state('motor', Transition.TRANSITION_DEACTIVATE)
    inactive, _ = listener.wait_for(name, lambda v: v['lifecycle state'] == 'inactive',
                                    after=index)
    assert inactive.level == DiagnosticStatus.OK
    assert values(inactive)['watchdog'] == 'armed (0.3 s)'


def test_board_enables_its_line_while_active_and_reports_it(rig, listener):
    """The board driver holds enable_line high while active, low otherwise; diagnostics too."""
    name = '/board: board driver'
    observer = rig.start({'board': ('board', {'enable_line': 5})},
                         commands={'board': [sys.executable, '-m', 'viam_session.drivers.board']})
    observer.bring_up('board')
    enabled = rig.wait_for_line(5, 'level', 1.0)
    active, index = listener.wait_for(name, lambda v: v['lifecycle state'] == 'active')
    assert values(active)['line 5 (enable_line)'] == 'level 1 (on)'
    assert 'watchdog' not in values(active)
    assert observer.change_state('board', Transition.TRANSITION_DEACTIVATE)
    rig.wait_for_line(5, 'level', 0.0, after_ns=enabled.t_ns)
    inactive, _ = listener.wait_for(name, lambda v: v['lifecycle state'] == 'inactive',
                                    after=index)
    assert values(inactive)['line 5 (enable_line)'] == 'level 0 (off)'


def test_estop_diagnostics_say_whether_it_is_active(rig, listener):
    """A digital input reports its level and what it means (active_level 1: high is active)."""
    name = '/estop: digital_input driver'
    observer = rig.start({'estop': ('digital_input', {'line': 22, 'active_level': 1})})
    with SimChip(rig.chip_dir, holder='test') as world:
        world.drive_input(22, 0)
        observer.bring_up('estop')
        _, index = listener.wait_for(
            name, lambda v: v.get('line 22 (line)') == 'input, level 0 (inactive)')
        world.drive_input(22, 1)
        pressed, _ = listener.wait_for(
            name, lambda v: v.get('line 22 (line)') == 'input, level 1 (active)', after=index)
    assert pressed.level == DiagnosticStatus.OK


def test_configure_failure_is_reported(rig, listener):
    """A line held by another holder: configure fails, the status says why (WARN)."""
    with SimChip(str(rig.chip_dir), holder='someone else') as other:
        other.claim_output(23, 0)
        observer = rig.start({'light': ('gpio_output', {'line': 23})})
        assert not observer.change_state('light', Transition.TRANSITION_CONFIGURE)
        failed, _ = listener.wait_for('/light: gpio_output driver',
                                      lambda v: 'last error' in v)
    assert failed.level == DiagnosticStatus.WARN
    assert 'someone else' in values(failed)['last error']
    assert failed.message.startswith('unconfigured: configure failed')
