"""Helpers to declare node parameters with descriptors (type, description, ranges)."""

from typing import Any, Optional

from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor)
from rclpy.node import Node
from rclpy.parameter import Parameter

from viam_session.command_ranges import command_range, CommandRange
from viam_session.driver_parameters import DRIVER_PARAMETERS, ParameterSpec

__all__ = ['declare', 'declare_bool', 'declare_command_range', 'declare_float', 'declare_int',
           'declare_string', 'declare_string_array']


def declare(node: Node, spec: ParameterSpec, *, default: Any = None) -> Any:
    """
    Declare the parameter `spec` describes and return its value.

    `default` stands in for a spec without one (a default the node computes).
    """
    value = spec.default if spec.default is not None else default
    if spec.read_only:
        return _declare_read_only(node, spec, value)
    if spec.dynamic_typing:
        return node.declare_parameter(spec.name, value, ParameterDescriptor(
            description=spec.description, dynamic_typing=True)).value
    if spec.kind is bool:
        return declare_bool(node, spec.name, value, spec.description)
    if spec.kind is int:
        return declare_int(node, spec.name, value, spec.description,
                           low=int(spec.low), high=int(spec.high))
    if spec.kind is float:
        return declare_float(node, spec.name, value, spec.description,
                             low=spec.low, high=spec.high)
    return declare_string(node, spec.name, value, spec.description, choices=spec.choices)


def declare_command_range(node: Node, driver: str) -> CommandRange:
    """
    Declare `command_min` and `command_max` from the node's other parameters; return the range.

    Call it after every other parameter is declared. The session manager reads the two to
    refuse what the node would refuse (`viam_session.command_ranges`).
    """
    values = {name: parameter.value
              for name, parameter in node.get_parameters_by_prefix('').items()}
    accepted = command_range(driver, values)
    specs = DRIVER_PARAMETERS[driver]
    declare(node, specs['command_min'], default=accepted.low)
    declare(node, specs['command_max'], default=accepted.high)
    return accepted


def _declare_read_only(node: Node, spec: ParameterSpec, value: Any) -> Any:
    """Declare a computed parameter; raise ValueError if something tried to set it."""
    descriptor = ParameterDescriptor(description=spec.description, read_only=True)
    declared = node.declare_parameter(spec.name, spec.kind(value), descriptor).value
    if declared != value:
        raise ValueError(f'parameter {spec.name!r} is read-only: the node computes it '
                         f'({value!r}), got {declared!r}')
    return declared


def declare_bool(node: Node, name: str, default: bool, description: str) -> bool:
    """Declare a boolean parameter and return its value."""
    return node.declare_parameter(name, bool(default),
                                  ParameterDescriptor(description=description)).value


def declare_float(node: Node, name: str, default: float, description: str, *,
                  low: float, high: float) -> float:
    """Declare a float parameter limited to [low, high] and return its value."""
    descriptor = ParameterDescriptor(
        description=description,
        floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)])
    return node.declare_parameter(name, float(default), descriptor).value


def declare_int(node: Node, name: str, default: int, description: str, *,
                low: int, high: int) -> int:
    """Declare an integer parameter limited to [low, high] and return its value."""
    descriptor = ParameterDescriptor(
        description=description,
        integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])
    return node.declare_parameter(name, int(default), descriptor).value


def declare_string(node: Node, name: str, default: str, description: str,
                   *, choices: Optional[tuple] = None) -> str:
    """Declare a string parameter; with `choices`, other values raise ValueError."""
    text = description if choices is None else f'{description} One of: {", ".join(choices)}.'
    value = node.declare_parameter(name, default, ParameterDescriptor(description=text)).value
    if choices is not None and value not in choices:
        raise ValueError(f'parameter {name!r} must be one of {choices}, got {value!r}')
    return value


def declare_string_array(node: Node, name: str, description: str) -> list:
    """Declare a string-array parameter that defaults to empty."""
    descriptor = ParameterDescriptor(description=description)
    return list(node.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor).value or [])
