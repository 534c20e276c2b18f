"""A DC motor behind an H-bridge: PWM + direction lines, or two PWM lines (no ROS)."""

import math
from typing import List, Optional

from viam_session.chips.base import Chip

__all__ = ['H_BRIDGE_MODES', 'HBridgeMotor']

H_BRIDGE_MODES = ('pwm_direction', 'two_pwm')


class HBridgeMotor:
    """
    Power in [-1, 1] on an H-bridge wired in one of two ways (`mode`).

    - 'pwm_direction': `pwm_line` carries PWM duty |power| * max_duty, `direction_line` is
      high for reverse.
    - 'two_pwm': `pwm_line` carries the forward PWM (IN1), `direction_line` the reverse PWM
      (IN2); the line of the other direction stays at duty 0.

    An optional `enable_line` goes high with the first `set_power` and low in `stop()`.
    The safe state is every duty 0 and every level low. Lines are claimed in that state, and
    `stop()` puts them back in it, PWM first so the motor is unpowered before direction moves.
    """

    def __init__(self, *, chip: Chip, pwm_line: int, direction_line: int,
                 pwm_frequency_hz: float, max_duty: float, mode: str = 'pwm_direction',
                 enable_line: Optional[int] = None) -> None:
        if pwm_line == direction_line:
            raise ValueError(f'pwm_line and direction_line must differ, both are {pwm_line}')
        if enable_line in (pwm_line, direction_line):
            raise ValueError(
                f'enable_line must differ from pwm_line and direction_line, got {enable_line}')
        if mode not in H_BRIDGE_MODES:
            raise ValueError(f'mode must be one of {H_BRIDGE_MODES}, got {mode!r}')
        if not 0.0 < max_duty <= 1.0:
            raise ValueError(f'max_duty must be in (0, 1], got {max_duty}')
        if not (math.isfinite(pwm_frequency_hz) and pwm_frequency_hz > 0.0):
            raise ValueError(f'pwm_frequency_hz must be positive, got {pwm_frequency_hz}')
        self._chip = chip
        self._pwm_line = pwm_line
        self._direction_line = direction_line
        self._enable_line = enable_line
        self._two_pwm = mode == 'two_pwm'
        self._frequency_hz = pwm_frequency_hz
        self._max_duty = max_duty
        self._power = 0.0
        self._enabled = False
        self._claimed = False

    @property
    def power(self) -> float:
        """Power last applied (0 when stopped)."""
        return self._power

    def claim(self) -> None:
        """Claim every line in the safe state; on failure nothing stays claimed."""
        claimed: List[int] = []
        try:
            for line in self._lines():
                self._chip.claim_output(line, 0)
                claimed.append(line)
        except Exception:
            for line in claimed:
                self._chip.release(line)
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
        if self._enable_line is not None and not self._enabled:
            self._chip.write(self._enable_line, 1)
            self._enabled = True
        reverse = power < 0.0
        reversing = reverse != (self._power < 0.0)
        duty = abs(power) * self._max_duty
        if self._two_pwm:
            driven, idle = ((self._direction_line, self._pwm_line) if reverse
                            else (self._pwm_line, self._direction_line))
            if reversing:
                self._chip.set_pwm(idle, self._frequency_hz, 0.0)
            self._chip.set_pwm(driven, self._frequency_hz, duty)
        else:
            if reversing:
                # Changing direction under power would shoot through the bridge: unpower first.
                self._chip.set_pwm(self._pwm_line, self._frequency_hz, 0.0)
                self._chip.write(self._direction_line, int(reverse))
            self._chip.set_pwm(self._pwm_line, self._frequency_hz, duty)
        self._power = float(power)

    def stop(self) -> None:
        """PWM duty 0, then direction low (or its PWM 0), then enable low."""
        if not self._claimed:
            return
        self._chip.set_pwm(self._pwm_line, self._frequency_hz, 0.0)
        if self._two_pwm:
            self._chip.set_pwm(self._direction_line, self._frequency_hz, 0.0)
        else:
            self._chip.write(self._direction_line, 0)
        if self._enable_line is not None:
            self._chip.write(self._enable_line, 0)
            self._enabled = False
        self._power = 0.0

    def release(self) -> None:
        """Stop, then give every line back (they keep the safe levels)."""
        if not self._claimed:
            return
        self.stop()
        for line in self._lines():
            self._chip.release(line)
        self._claimed = False

    def _lines(self) -> List[int]:
        lines = [self._pwm_line, self._direction_line]
        return lines if self._enable_line is None else [*lines, self._enable_line]
