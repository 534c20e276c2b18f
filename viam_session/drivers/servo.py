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

from viam_session.chips import Chip, SERVO_FREQUENCY_RANGE_HZ, SERVO_PULSE_RANGE_US
from viam_session.drivers.base import ActuatorDriver, run_driver
from viam_session.drivers.servo_core import HobbyServo
from viam_session.parameters import declare_float, declare_int

__all__ = ['ServoDriver', 'main']


class ServoDriver(ActuatorDriver):
    """A lifecycle node that owns one hobby servo."""

    def __init__(self, node_name: str = 'servo', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._line = declare_int(self, 'pwm_line', 18, 'Line carrying the servo pulses.',
                                 low=0, high=1023)
        self._frequency_hz = declare_float(
            self, 'pwm_frequency_hz', 50.0, 'Servo pulses per second.',
            low=SERVO_FREQUENCY_RANGE_HZ[0], high=SERVO_FREQUENCY_RANGE_HZ[1])
        self._min_pulse_us = declare_float(
            self, 'min_pulse_us', 500.0, 'Pulse width at angle 0.',
            low=SERVO_PULSE_RANGE_US[0], high=SERVO_PULSE_RANGE_US[1])
        self._max_pulse_us = declare_float(
            self, 'max_pulse_us', 2500.0, 'Pulse width at angle travel_deg.',
            low=SERVO_PULSE_RANGE_US[0], high=SERVO_PULSE_RANGE_US[1])
        self._travel_deg = declare_float(
            self, 'travel_deg', 180.0, "The servo's full travel, degrees.", low=1.0, high=360.0)
        self._min_angle_deg = declare_float(
            self, 'min_angle_deg', 0.0, 'Smallest angle a command may ask for.',
            low=0.0, high=360.0)
        self._max_angle_deg = declare_float(
            self, 'max_angle_deg', 180.0, 'Largest angle a command may ask for.',
            low=0.0, high=360.0)

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
