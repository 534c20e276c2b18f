"""
Lifecycle driver of a DC motor behind an H-bridge (PWM + direction lines, or two PWM lines).

Commands on `~/command` (std_msgs/Float64, power in [-1, 1]) move the motor only while active;
every way out of active stops it (see `drivers.base`). State on `~/joint_state`
(sensor_msgs/JointState, effort = applied power). Self-protection: `command_timeout_s`
(default 0.5 s, as every actuator: the session manager re-sends a driven motor's command every
0.1 s, so only a dead or stalled command stream trips it; 0 switches it off).
"""

import math
import sys
from typing import Any, List, Optional, Tuple

from viam_session.chips import Chip
from viam_session.driver_parameters import DC_MOTOR
from viam_session.drivers.base import ActuatorDriver, run_driver
from viam_session.drivers.h_bridge import HBridgeMotor
from viam_session.parameters import declare, declare_command_range

__all__ = ['DcMotorDriver', 'main']


class DcMotorDriver(ActuatorDriver):
    """A lifecycle node that owns one H-bridge motor."""

    def __init__(self, node_name: str = 'dc_motor', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._mode = declare(self, DC_MOTOR['mode'])
        self._pwm_line = declare(self, DC_MOTOR['pwm_line'])
        self._direction_line = declare(self, DC_MOTOR['direction_line'])
        self._enable_line = declare(self, DC_MOTOR['enable_line'])
        self._frequency_hz = declare(self, DC_MOTOR['pwm_frequency_hz'])
        self._max_duty = declare(self, DC_MOTOR['max_duty'])
        declare_command_range(self, 'dc_motor')

    def create_device(self, chip: Chip) -> HBridgeMotor:
        return HBridgeMotor(
            chip=chip, pwm_line=self._pwm_line, direction_line=self._direction_line,
            pwm_frequency_hz=self._frequency_hz, max_duty=self._max_duty, mode=self._mode,
            enable_line=None if self._enable_line < 0 else self._enable_line)

    def apply(self, device: HBridgeMotor, value: float) -> None:
        device.set_power(value)

    def joint_values(self) -> Tuple[float, float, float]:
        with self._lock:
            power = self._device.power if self._device is not None else 0.0
        return math.nan, math.nan, power


def main(args: Optional[List[str]] = None) -> int:
    """Run the driver until SIGINT/SIGTERM; the motor is stopped on every way out."""
    return run_driver(DcMotorDriver, args)


if __name__ == '__main__':
    sys.exit(main())
