"""Driver settings: contradictions fail on_configure; declarations match the checked tables."""

import importlib
import inspect

import pytest
import rclpy
from rclpy.context import Context
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter

from conftest import next_domain  # noqa: I100 - the tests' own helper
from viam_session.chips.sim_chip import read_line_changes
from viam_session.driver_parameters import ROS_NODE
from viam_session.drivers import DRIVER_MODULES
from viam_session.drivers.dc_motor import DcMotorDriver
from viam_session.drivers.encoder import EncoderDriver
from viam_session.drivers.servo import ServoDriver
from viam_session.gate.gate_core import MESSAGE_TYPES
from viam_session.supervisor.tree import DRIVER_TYPES


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


# rcl_interfaces/ParameterType of each spec kind.
PARAMETER_TYPES = {bool: 1, int: 2, float: 3, str: 4}


@pytest.mark.parametrize('driver', sorted(DRIVER_MODULES))
def test_each_driver_declares_exactly_the_parameters_descriptions_are_checked_against(
        tmp_path, driver):
    """Names, types, defaults and ranges the node declares are those of its driver type."""
    module = importlib.import_module(DRIVER_MODULES[driver])
    (node_class,) = [value for value in vars(module).values() if inspect.isclass(value)
                     and issubclass(value, LifecycleNode) and value.__module__ == module.__name__
                     and not value.__name__.startswith('_')]
    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    try:
        node = node_class(context=context, parameter_overrides=[
            Parameter('chip', value=str(tmp_path))] if driver != 'session_gate' else [])
        specs = DRIVER_TYPES[driver].parameters
        assert sorted(node._parameters) == sorted(specs)
        for name, spec in specs.items():
            (descriptor,) = node.describe_parameters([name])
            if spec.dynamic_typing:
                assert descriptor.dynamic_typing, name
                continue
            assert descriptor.type == PARAMETER_TYPES[spec.kind], name
            if name not in ROS_NODE:      # rclpy's own
                assert descriptor.description.startswith(spec.description), name
            if spec.default is not None:
                assert node.get_parameter(name).value == spec.default, name
            ranges = [*descriptor.integer_range, *descriptor.floating_point_range]
            if spec.low is None:
                assert not ranges, name
            else:
                assert [(r.from_value, r.to_value) for r in ranges] == [(spec.low, spec.high)]
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_the_session_gate_message_types_are_its_parameter_choices():
    """The gate's ROS-free parameter table names the message types the gate relays."""
    assert DRIVER_TYPES['session_gate'].parameters['message_type'].choices == \
        tuple(MESSAGE_TYPES)
