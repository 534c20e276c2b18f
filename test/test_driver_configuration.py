"""Settings that contradict each other fail on_configure with a message, claiming nothing."""

import pytest
import rclpy
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from conftest import next_domain  # noqa: I100 - the tests' own helper
from viam_session.chips.sim_chip import read_line_changes
from viam_session.drivers.dc_motor import DcMotorDriver
from viam_session.drivers.encoder import EncoderDriver
from viam_session.drivers.servo import ServoDriver


@pytest.mark.parametrize('driver_class, parameters, message', [
    (ServoDriver, {'min_angle_deg': 120.0, 'max_angle_deg': 60.0}, 'angle limits must satisfy'),
    (ServoDriver, {'travel_deg': 90.0}, 'angle limits must satisfy'),
    (ServoDriver, {'min_pulse_us': 2000.0, 'max_pulse_us': 1000.0}, 'servo pulses must'),
    (ServoDriver, {'pwm_frequency_hz': 450.0}, 'max_pulse_us 2500.0 does not fit'),
    (DcMotorDriver, {'direction_line': 12}, 'pwm_line and direction_line must differ'),
    (DcMotorDriver, {'enable_line': 16}, 'enable_line must differ'),
    (EncoderDriver, {'b_line': 17}, 'a_line and b_line must differ'),
])
def test_contradictory_settings_fail_configure(
        tmp_path, capfd, driver_class, parameters, message):
    """The node stays unconfigured, says why, and claims no line."""
    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    try:
        overrides = {'chip': str(tmp_path), **parameters}
        node = driver_class(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in overrides.items()])
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert f'configure failed: {message}' in capfd.readouterr().err
        assert read_line_changes(tmp_path) == []
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
