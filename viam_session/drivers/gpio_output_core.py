"""A digital output line (relay, enable line) with an active level and a safe value (no ROS)."""

from viam_session.chips.base import Chip

__all__ = ['GpioOutput']


class GpioOutput:
    """
    A logical on/off value on one line: on drives `active_level`, off the other level.

    The safe value (`safe_value`, off unless a relay must hold, e.g. a brake released by power)
    is what the line is claimed at and what `stop()` returns it to.
    """

    def __init__(self, *, chip: Chip, line: int, active_level: int = 1,
                 safe_value: bool = False) -> None:
        if active_level not in (0, 1) or isinstance(active_level, bool):
            raise ValueError(f'active_level must be 0 or 1, got {active_level!r}')
        if not isinstance(safe_value, bool):
            raise ValueError(f'safe_value must be a bool, got {safe_value!r}')
        self._chip = chip
        self._line = line
        self._active_level = active_level
        self._safe_value = safe_value
        self._value = safe_value
        self._claimed = False

    @property
    def value(self) -> bool:
        """Return the logical value the line outputs (the safe value when stopped)."""
        return self._value

    def claim(self) -> None:
        """Claim the line at the safe value's level."""
        self._chip.claim_output(self._line, self._level(self._safe_value))
        self._value = self._safe_value
        self._claimed = True

    def set_value(self, value: bool) -> None:
        """Drive the line on (True) or off (False); anything but a bool raises ValueError."""
        if not isinstance(value, bool):
            raise ValueError(f'value must be a bool, got {value!r}')
        if not self._claimed:
            raise RuntimeError('output line is not claimed')
        self._chip.write(self._line, self._level(value))
        self._value = value

    def stop(self) -> None:
        """Return the line to the safe value."""
        if self._claimed:
            self.set_value(self._safe_value)

    def release(self) -> None:
        """Stop, then give the line back (it keeps the safe level)."""
        if not self._claimed:
            return
        self.stop()
        self._chip.release(self._line)
        self._claimed = False

    def _level(self, value: bool) -> int:
        return self._active_level if value else 1 - self._active_level
