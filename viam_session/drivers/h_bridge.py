"""A DC motor behind an H-bridge driven by a PWM line and a direction line (no ROS)."""

import math

from viam_session.chips.base import Chip

__all__ = ['HBridgeMotor']


class HBridgeMotor:
    """
    Power in [-1, 1] mapped to PWM duty |power| * max_duty and direction line (1 = reverse).

    The safe state is PWM duty 0 and direction low. Lines are claimed in that state, and
    `stop()` puts them back in it, PWM first so the motor is unpowered before direction moves.
    """

    def __init__(self, *, chip: Chip, pwm_line: int, direction_line: int,
                 pwm_frequency_hz: float, max_duty: float) -> None:
        if pwm_line == direction_line:
            raise ValueError(f'pwm_line and direction_line must differ, both are {pwm_line}')
        if not 0.0 < max_duty <= 1.0:
            raise ValueError(f'max_duty must be in (0, 1], got {max_duty}')
        if not (math.isfinite(pwm_frequency_hz) and pwm_frequency_hz > 0.0):
            raise ValueError(f'pwm_frequency_hz must be positive, got {pwm_frequency_hz}')
        self._chip = chip
        self._pwm_line = pwm_line
        self._direction_line = direction_line
        self._frequency_hz = pwm_frequency_hz
        self._max_duty = max_duty
        self._power = 0.0
        self._claimed = False

    @property
    def power(self) -> float:
        """Power last applied (0 when stopped)."""
        return self._power

    def claim(self) -> None:
        """Claim both lines in the safe state; on failure nothing stays claimed."""
        self._chip.claim_output(self._pwm_line, 0)
        try:
            self._chip.claim_output(self._direction_line, 0)
        except Exception:
            self._chip.release(self._pwm_line)
            raise
        self._claimed = True
        self.stop()

    def set_power(self, power: float) -> None:
        """Apply `power`; NaN, infinities and values outside [-1, 1] raise ValueError."""
        if isinstance(power, bool) or not (
                isinstance(power, (int, float)) and math.isfinite(power)):
            raise ValueError(f'power must be a finite number, got {power!r}')
        if not -1.0 <= power <= 1.0:
            raise ValueError(f'power must be in [-1, 1], got {power}')
        if not self._claimed:
            raise RuntimeError('motor lines are not claimed')
        reverse = power < 0.0
        if reverse != (self._power < 0.0):
            # Changing direction under power would shoot through the bridge: unpower first.
            self._chip.set_pwm(self._pwm_line, self._frequency_hz, 0.0)
            self._chip.write(self._direction_line, int(reverse))
        self._chip.set_pwm(self._pwm_line, self._frequency_hz, abs(power) * self._max_duty)
        self._power = float(power)

    def stop(self) -> None:
        """PWM duty 0, then direction low."""
        if not self._claimed:
            return
        self._chip.set_pwm(self._pwm_line, self._frequency_hz, 0.0)
        self._chip.write(self._direction_line, 0)
        self._power = 0.0

    def release(self) -> None:
        """Stop, then give both lines back (they keep the safe levels)."""
        if not self._claimed:
            return
        self.stop()
        self._chip.release(self._pwm_line)
        self._chip.release(self._direction_line)
        self._claimed = False
