"""
Lifecycle driver of a hobby servo on one line (servo pulses).

Commands on `~/command` (std_msgs/Float64, angle in degrees within [min_angle_deg,
max_angle_deg]) move the servo only while active; outside active, and on every way out of it,
the servo is released: no pulses (see `drivers.base`). State on `~/joint_state`
(sensor_msgs/JointState, position = commanded angle in radians, NaN while released).
"""

import math
import sys
from typing import Any, List, Optional, Tuple

from viam_session.chips import Chip
from viam_session.driver_parameters import SERVO
from viam_session.drivers.base import ActuatorDriver, run_driver
from viam_session.drivers.servo_core import HobbyServo
from viam_session.parameters import declare, declare_command_range

__all__ = ['ServoDriver', 'main']


class ServoDriver(ActuatorDriver):
    """A lifecycle node that owns one hobby servo."""

    def __init__(self, node_name: str = 'servo', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._line = declare(self, SERVO['pwm_line'])
        self._frequency_hz = declare(self, SERVO['pwm_frequency_hz'])
        self._min_pulse_us = declare(self, SERVO['min_pulse_us'])
        self._max_pulse_us = declare(self, SERVO['max_pulse_us'])
        self._travel_deg = declare(self, SERVO['travel_deg'])
        self._min_angle_deg = declare(self, SERVO['min_angle_deg'])
        self._max_angle_deg = declare(self, SERVO['max_angle_deg'])
        declare_command_range(self, 'servo')

    def create_device(self, chip: Chip) -> HobbyServo:
        return HobbyServo(
            chip=chip, line=self._line, min_pulse_us=self._min_pulse_us,
            max_pulse_us=self._max_pulse_us, travel_deg=self._travel_deg,
            min_angle_deg=self._min_angle_deg, max_angle_deg=self._max_angle_deg,
            frequency_hz=self._frequency_hz)

    def apply(self, device: HobbyServo, value: float) -> None:
        device.set_angle(value)

    def joint_values(self) -> Tuple[float, float, float]:
        with self._lock:
            angle = self._device.angle_deg if self._device is not None else None
        return (math.nan if angle is None else math.radians(angle)), math.nan, math.nan


def main(args: Optional[List[str]] = None) -> int:
    """Run the driver until SIGINT/SIGTERM; the servo is released on every way out."""
    return run_driver(ServoDriver, args)


if __name__ == '__main__':
    sys.exit(main())
