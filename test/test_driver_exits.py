"""
Every way a driver process ends, and what the simulated chip shows afterwards.

SIGTERM, an exception in a callback, an error transition and interpreter exit leave outputs
at their safe level and the lines released. SIGKILL cannot: the lines are released by the
kernel-like claim, but they keep their last value, as on real hardware.
"""

import signal
import sys

from lifecycle_msgs.msg import State, Transition
import pytest

from conftest import next_domain  # noqa: I100 - the tests' own helpers
from driver_rig import driver_rig
from viam_session.chips.sim_chip import read_line_changes, read_line_values, SimChip
from viam_session_harness.sim_drivers import command_publisher_qos

DEFAULT_QOS = command_publisher_qos('default')
OFF = {'command_timeout_s': 0.0}
MOTOR = {'pwm_line': 12, 'direction_line': 16, **OFF}

# A motor driver whose command callback raises on power 0.25.
FAULTY_CALLBACK_SCRIPT = """
import sys

from viam_session.drivers.dc_motor import DcMotorDriver
from viam_session.node_runner import run_node


class FaultyMotorDriver(DcMotorDriver):
    def apply(self, device, value):
        if value == 0.25:
            raise RuntimeError('simulated fault in the command callback')
        super().apply(device, value)


sys.exit(run_node(FaultyMotorDriver, args=sys.argv,
                  before_shutdown=FaultyMotorDriver.make_safe))
"""

# A motor driver whose first stop while driving fails, as a chip write can.
FLAKY_STOP_SCRIPT = """
import sys

from viam_session.chips import ChipError
from viam_session.drivers.dc_motor import DcMotorDriver
from viam_session.drivers.h_bridge import HBridgeMotor
from viam_session.node_runner import run_node


class FlakyMotor(HBridgeMotor):
    failures = 1

    def stop(self):
        if self.power != 0.0 and FlakyMotor.failures:
            FlakyMotor.failures -= 1
            raise ChipError('simulated chip write failure')
        super().stop()


class FlakyMotorDriver(DcMotorDriver):
    def create_device(self, chip):
        return FlakyMotor(chip=chip, pwm_line=12, direction_line=16, pwm_frequency_hz=1000.0,
                          max_duty=1.0)


sys.exit(run_node(FlakyMotorDriver, args=sys.argv,
                  before_shutdown=FlakyMotorDriver.make_safe))
"""

# A motor driver in a plain script that drives the motor, then just ends.
EXIT_SCRIPT = """
import sys

import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Float64

from viam_session.chips.sim_chip import read_line_values
from viam_session.drivers.dc_motor import DcMotorDriver

rclpy.init(args=sys.argv)
driver = DcMotorDriver()
driver.trigger_configure()
driver.trigger_activate()
commander = rclpy.create_node('commander')
publisher = commander.create_publisher(Float64, '/motor/command', 10)
executor = SingleThreadedExecutor()
executor.add_node(driver)
chip = driver.get_parameter('chip').value
while read_line_values(chip)[12].value != 0.5:
    publisher.publish(Float64(data=0.5))
    executor.spin_once(timeout_sec=0.1)
print('driving', flush=True)
"""

ACTUATORS = {
    # name: (kind, parameters, command, (line, kind, driven value), (line, kind, safe value))
    'motor': ('dc_motor', MOTOR, 0.5, (12, 'pwm', 0.5), (12, 'pwm', 0.0)),
    'servo': ('servo', {'pwm_line': 18, **OFF}, 45.0, (18, 'servo', 1000.0),
              (18, 'servo', 0.0)),
    'relay': ('gpio_output', {'line': 23, 'active_level': 0, **OFF}, True,
              (23, 'level', 0.0), (23, 'level', 1.0)),
}


@pytest.fixture
def rig(request, tmp_path):
    """Provide driver processes on a simulated chip and an observer, in a domain of their own."""
    yield from driver_rig(request, tmp_path, next_domain())


def script(text):
    """Return the program that runs `text` as a driver process."""
    return [sys.executable, '-c', text]


def assert_safe_and_released(chip_dir, line, kind, safe_value, *, after_ns):
    """Check the line went to its safe value, then was released, after `after_ns`."""
    changes = [c for c in read_line_changes(chip_dir, line) if c.t_ns > after_ns]
    assert [c.kind for c in changes][-1] == 'release'
    current = read_line_values(chip_dir)[line]
    assert (current.kind, current.value) == (kind, safe_value)


def test_sigterm_leaves_every_actuator_safe_and_released(rig):
    """SIGTERM while driving: each driver stops its outputs, releases its lines, exits 0."""
    observer = rig.start({name: spec[:2] for name, spec in ACTUATORS.items()},
                         command_qos=DEFAULT_QOS)
    for name, (_, _, command, driven, _) in ACTUATORS.items():
        observer.bring_up(name)
        rig.wait_for_line(*driven, after_ns=observer.publish(name, command))
    for name, (_, _, _, driven, safe) in ACTUATORS.items():
        signalled_ns = rig.processes[name].send_signal(signal.SIGTERM)
        assert rig.processes[name].wait() == 0
        assert_safe_and_released(rig.chip_dir, *safe, after_ns=signalled_ns)


def test_sigkill_leaves_the_last_value_but_frees_the_lines(rig):
    """SIGKILL: the PWM stays on (nothing runs to stop it); a new driver can claim the lines."""
    observer = rig.start({'motor': ('dc_motor', MOTOR)}, command_qos=DEFAULT_QOS)
    observer.bring_up('motor')
    driving = rig.wait_for_line(12, 'pwm', 0.5, after_ns=observer.publish('motor', 0.5))
    killed = rig.processes['motor']
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert [c.kind for c in read_line_changes(rig.chip_dir) if c.t_ns > driving.t_ns] == []
    assert read_line_values(rig.chip_dir)[12].value == 0.5
    replacement = rig.spawn('motor', 'dc_motor', MOTOR)
    # Only the replacement can answer: once it has, it is the one the observer talks to.
    assert observer.state('motor') == State.PRIMARY_STATE_UNCONFIGURED
    assert observer.change_state('motor', Transition.TRANSITION_CONFIGURE)
    claim = [c for c in read_line_changes(rig.chip_dir, 12) if c.kind == 'claim'][-1]
    assert claim.pid == replacement.pid
    assert read_line_values(rig.chip_dir)[12].value == 0.0


def test_exception_in_a_command_callback_leaves_the_motor_safe(rig):
    """A callback that raises ends the process (exit 1) with the motor stopped and released."""
    observer = rig.start({'motor': ('dc_motor', MOTOR)}, command_qos=DEFAULT_QOS,
                         commands={'motor': script(FAULTY_CALLBACK_SCRIPT)})
    observer.bring_up('motor')
    driving = rig.wait_for_line(12, 'pwm', 0.5, after_ns=observer.publish('motor', 0.5))
    observer.publish('motor', 0.25)
    assert rig.processes['motor'].wait() == 1
    assert_safe_and_released(rig.chip_dir, 12, 'pwm', 0.0, after_ns=driving.t_ns)
    log = rig.processes['motor'].log()
    assert 'stopped after an error in a callback' in log
    assert 'simulated fault in the command callback' in log


def test_error_transition_leaves_the_motor_safe_and_unconfigured(rig):
    """A deactivate whose stop fails goes through on_error, which stops and releases."""
    observer = rig.start({'motor': ('dc_motor', MOTOR)}, command_qos=DEFAULT_QOS,
                         commands={'motor': script(FLAKY_STOP_SCRIPT)})
    observer.bring_up('motor')
    driving = rig.wait_for_line(12, 'pwm', 0.5, after_ns=observer.publish('motor', 0.5))
    assert not observer.change_state('motor', Transition.TRANSITION_DEACTIVATE)
    assert observer.state('motor') == State.PRIMARY_STATE_UNCONFIGURED
    assert_safe_and_released(rig.chip_dir, 12, 'pwm', 0.0, after_ns=driving.t_ns)
    assert 'deactivate failed: simulated chip write failure' in rig.processes['motor'].log()
    assert rig.processes['motor'].process.poll() is None  # still serving, unconfigured


def test_interpreter_exit_leaves_the_motor_safe(rig):
    """A program that ends with the motor driven has it stopped by the exit hook."""
    process = rig.spawn('motor', 'dc_motor', MOTOR, command=script(EXIT_SCRIPT))
    assert process.wait() == 0
    assert 'driving' in process.log()
    driven = [c for c in read_line_changes(rig.chip_dir, 12) if c.value == 0.5][-1]
    assert_safe_and_released(rig.chip_dir, 12, 'pwm', 0.0, after_ns=driven.t_ns)


def test_conflicting_claim_fails_configure_naming_the_line_and_holder(rig):
    """A line held by another driver fails on_configure with who holds it; nothing moves."""
    observer = rig.start({'motor': ('dc_motor', MOTOR),
                          'brake': ('gpio_output', {'line': 16, 'safe_value': True, **OFF})})
    assert observer.change_state('motor', Transition.TRANSITION_CONFIGURE)
    before = read_line_changes(rig.chip_dir)
    assert not observer.change_state('brake', Transition.TRANSITION_CONFIGURE)
    assert observer.state('brake') == State.PRIMARY_STATE_UNCONFIGURED
    motor_pid = rig.processes['motor'].pid
    rig.processes['brake'].wait_for_log(
        f'configure failed: line 16 of {rig.chip_dir} is in use by /motor (pid {motor_pid})')
    assert read_line_changes(rig.chip_dir) == before


def test_lines_held_by_a_test_process_fail_configure_of_an_input(rig):
    """The same holds for inputs: the encoder names the test process holding its B line."""
    with SimChip(rig.chip_dir, holder='bench_probe') as probe:
        probe.claim_output(27, 0)
        observer = rig.start({'encoder': ('encoder', {'a_line': 17, 'b_line': 27})})
        assert not observer.change_state('encoder', Transition.TRANSITION_CONFIGURE)
        rig.processes['encoder'].wait_for_log('line 27 of')
        assert 'is in use by bench_probe' in rig.processes['encoder'].log()
    assert [c.kind for c in read_line_changes(rig.chip_dir, 17)] == [
        'claim_input', 'release']
