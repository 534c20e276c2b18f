"""
The commands each actuator driver type accepts, from its parameters (no ROS).

One function, `command_range(driver, parameters)`, read by both ends: each actuator driver
declares the result as the read-only parameters `command_min` and `command_max`, and the
session manager refuses, before it changes an actuator's owner or relays anything, a command
the driver would refuse: from a robot description it computes the range itself, for an actuator
named only by its `actuators` parameter it reads those two parameters from the driver.

- dc_motor: power in [-1, 1];
- servo: an angle in degrees within [min_angle_deg, max_angle_deg];
- gpio_output: 0 (off) or 1 (on), relayed as std_msgs/Bool;
- session_gate: any finite number (0 closes the gate, anything else opens it).
"""

from dataclasses import dataclass
import math
from typing import Any, Mapping, Optional

from viam_session.driver_parameters import SERVO

__all__ = ['COMMAND_RANGE_DRIVERS', 'CommandRange', 'command_range']

# Driver types whose node takes commands on `<node>/command`.
COMMAND_RANGE_DRIVERS = ('dc_motor', 'servo', 'gpio_output', 'session_gate')


@dataclass(frozen=True)
class CommandRange:
    """The values one actuator accepts: a closed interval, or 0 and 1 for an on/off output."""

    low: float
    high: float
    what: str = 'value'
    on_off: bool = False

    def problem(self, value: float) -> Optional[str]:
        """Return why `value` would be refused, or None if the actuator takes it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            return f'{self.what} must be a finite number, got {value!r}'
        if self.on_off:
            if value not in (0.0, 1.0):
                return f'{self.what} must be 0 (off) or 1 (on), got {value!r}'
        elif not self.low <= value <= self.high:
            return f'{self.what} must be in {self.describe()}, got {value!r}'
        return None

    def describe(self) -> str:
        """Return the range as a client reads it: `[-1, 1]`, `0 or 1`, `any finite number`."""
        if self.on_off:
            return '0 (off) or 1 (on)'
        if math.isinf(self.low) and math.isinf(self.high):
            return 'any finite number'
        return f'[{self.low:g}, {self.high:g}]'


def command_range(driver: str, parameters: Mapping[str, Any]) -> CommandRange:
    """
    Return what a node of `driver` type with these `parameters` accepts on `~/command`.

    Parameters not given take their defaults (`driver_parameters`). Raises ValueError for a
    driver type that takes no commands.
    """
    if driver == 'dc_motor':
        return CommandRange(-1.0, 1.0, 'power')
    if driver == 'servo':
        low = parameters.get('min_angle_deg', SERVO['min_angle_deg'].default)
        high = parameters.get('max_angle_deg', SERVO['max_angle_deg'].default)
        return CommandRange(float(low), float(high), 'angle (degrees)')
    if driver == 'gpio_output':
        return CommandRange(0.0, 1.0, 'output value', on_off=True)
    if driver == 'session_gate':
        return CommandRange(-math.inf, math.inf, 'gate command')
    raise ValueError(f'driver type {driver!r} takes no commands '
                     f'(those that do: {", ".join(COMMAND_RANGE_DRIVERS)})')
