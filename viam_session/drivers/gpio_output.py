"""
Lifecycle driver of one digital output line: a relay, an enable line, a light.

Commands on `~/command` (std_msgs/Bool: on or off) act only while active; outside active, and
on every way out of it, the line holds the safe value (see `drivers.base`). `active_level` is
the line level that means on; `safe_value` is the value held when safe (off by default).
State on `~/joint_state` (sensor_msgs/JointState, position 1.0 on, 0.0 off).
"""

import math
import sys
from typing import Any, Dict, List, Optional, Tuple

from std_msgs.msg import Bool

from viam_session.chips import Chip
from viam_session.driver_parameters import GPIO_OUTPUT
from viam_session.drivers.base import ActuatorDriver, run_driver
from viam_session.drivers.gpio_output_core import GpioOutput
from viam_session.parameters import declare, declare_command_range

__all__ = ['GpioOutputDriver', 'main']


class GpioOutputDriver(ActuatorDriver):
    """A lifecycle node that owns one output line."""

    command_type = Bool

    def __init__(self, node_name: str = 'gpio_output', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._line = declare(self, GPIO_OUTPUT['line'])
        self._active_level = declare(self, GPIO_OUTPUT['active_level'])
        self._safe_value = declare(self, GPIO_OUTPUT['safe_value'])
        declare_command_range(self, 'gpio_output')

    def create_device(self, chip: Chip) -> GpioOutput:
        return GpioOutput(chip=chip, line=self._line, active_level=self._active_level,
                          safe_value=self._safe_value)

    def active_levels(self) -> Dict[int, int]:
        return {self._line: self._active_level}

    def apply(self, device: GpioOutput, value: bool) -> None:
        device.set_value(value)

    def joint_values(self) -> Tuple[float, float, float]:
        with self._lock:
            value = self._device.value if self._device is not None else self._safe_value
        return float(value), math.nan, math.nan


def main(args: Optional[List[str]] = None) -> int:
    """Run the driver until SIGINT/SIGTERM; the line is left safe on every way out."""
    return run_driver(GpioOutputDriver, args)


if __name__ == '__main__':
    sys.exit(main())
