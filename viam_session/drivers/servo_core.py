"""A hobby servo: an angle in degrees as a servo pulse width, released = no pulses (no ROS)."""

import math
from typing import Optional

from viam_session.chips.base import Chip, SERVO_FREQUENCY_RANGE_HZ, SERVO_PULSE_RANGE_US

__all__ = ['HobbyServo']


class HobbyServo:
    """
    An angle in degrees sent as a servo pulse width, linear over the servo's travel.

    Angle a in [min_angle_deg, max_angle_deg] is a pulse of
    min_pulse_us + a / travel_deg * (max_pulse_us - min_pulse_us) every 1/frequency_hz.
    `min_pulse_us` and `max_pulse_us` are the pulses at the two ends of the servo's travel
    (0 and `travel_deg`); the angle limits keep commands inside what the mechanism allows.
    The safe state is released: no pulses, the line low. The line is claimed released.
    """

    def __init__(self, *, chip: Chip, line: int, min_pulse_us: float = 500.0,
                 max_pulse_us: float = 2500.0, travel_deg: float = 180.0,
                 min_angle_deg: float = 0.0, max_angle_deg: float = 180.0,
                 frequency_hz: float = 50.0) -> None:
        low, high = SERVO_PULSE_RANGE_US
        if not low <= min_pulse_us < max_pulse_us <= high:
            raise ValueError(f'servo pulses must satisfy {low:g} <= min_pulse_us < max_pulse_us '
                             f'<= {high:g} us, got {min_pulse_us} and {max_pulse_us}')
        low, high = SERVO_FREQUENCY_RANGE_HZ
        if not low <= frequency_hz <= high:
            raise ValueError(f'frequency_hz must be in [{low:g}, {high:g}], got {frequency_hz}')
        if max_pulse_us >= 1e6 / frequency_hz:
            raise ValueError(f'max_pulse_us {max_pulse_us} does not fit in the period of '
                             f'{frequency_hz} Hz ({1e6 / frequency_hz:g} us)')
        if not (math.isfinite(travel_deg) and travel_deg > 0.0):
            raise ValueError(f'travel_deg must be positive, got {travel_deg}')
        if not 0.0 <= min_angle_deg < max_angle_deg <= travel_deg:
            raise ValueError(f'angle limits must satisfy 0 <= min_angle_deg < max_angle_deg <= '
                             f'travel_deg ({travel_deg}), got {min_angle_deg} and '
                             f'{max_angle_deg}')
        self._chip = chip
        self._line = line
        self._min_pulse_us = min_pulse_us
        self._max_pulse_us = max_pulse_us
        self._travel_deg = travel_deg
        self._min_angle_deg = min_angle_deg
        self._max_angle_deg = max_angle_deg
        self._frequency_hz = frequency_hz
        self._angle_deg: Optional[float] = None
        self._claimed = False

    @property
    def angle_deg(self) -> Optional[float]:
        """Return the angle last commanded, or None while released."""
        return self._angle_deg

    def pulse_width_us(self, angle_deg: float) -> float:
        """Return the pulse width of `angle_deg` (not checked against the limits)."""
        span = self._max_pulse_us - self._min_pulse_us
        return self._min_pulse_us + angle_deg / self._travel_deg * span

    def claim(self) -> None:
        """Claim the line low: no pulses until the first angle."""
        self._chip.claim_output(self._line, 0)
        self._claimed = True

    def set_angle(self, angle_deg: float) -> None:
        """Move to `angle_deg`; NaN, infinities and angles outside the limits raise ValueError."""
        if isinstance(angle_deg, bool) or not (
                isinstance(angle_deg, (int, float)) and math.isfinite(angle_deg)):
            raise ValueError(f'angle must be a finite number, got {angle_deg!r}')
        if not self._min_angle_deg <= angle_deg <= self._max_angle_deg:
            raise ValueError(f'angle must be in [{self._min_angle_deg:g}, '
                             f'{self._max_angle_deg:g}] degrees, got {angle_deg}')
        if not self._claimed:
            raise RuntimeError('servo line is not claimed')
        self._chip.set_servo(self._line, self.pulse_width_us(angle_deg), self._frequency_hz)
        self._angle_deg = float(angle_deg)

    def stop(self) -> None:
        """Stop the pulses: the servo is released (it no longer holds its position)."""
        if not self._claimed:
            return
        self._chip.set_servo(self._line, 0, self._frequency_hz)
        self._angle_deg = None

    def release(self) -> None:
        """Stop the pulses, then give the line back."""
        if not self._claimed:
            return
        self.stop()
        self._chip.release(self._line)
        self._claimed = False
