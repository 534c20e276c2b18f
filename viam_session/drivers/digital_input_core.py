"""A digital input line (switch, bumper) with an active level, reporting changes (no ROS)."""

import threading
from typing import Callable

from viam_session.chips.base import Chip

__all__ = ['DigitalInput']


class DigitalInput:
    """
    A logical value read from one line: True when the line is at `active_level`.

    Each change is passed to `on_change(value, t_ns)` from the chip's thread, with the edge's
    timestamp; a level reported again without a change is not.
    """

    def __init__(self, *, chip: Chip, line: int, active_level: int = 1,
                 on_change: Callable[[bool, int], None]) -> None:
        if active_level not in (0, 1) or isinstance(active_level, bool):
            raise ValueError(f'active_level must be 0 or 1, got {active_level!r}')
        self._chip = chip
        self._line = line
        self._active_level = active_level
        self._on_change = on_change
        self._lock = threading.Lock()
        self._value = False
        self._claimed = False

    @property
    def value(self) -> bool:
        """Return the logical value last seen."""
        with self._lock:
            return self._value

    def claim(self) -> None:
        """Claim the line as an input and read its value."""
        with self._lock:  # edges wait until the value read below is in place
            self._chip.claim_input(self._line, on_edge=self._on_edge)
            self._value = self._chip.read(self._line) == self._active_level
            self._claimed = True

    def stop(self) -> None:
        """Do nothing: an input drives no output."""

    def release(self) -> None:
        """Give the line back; changes are no longer reported."""
        with self._lock:
            if not self._claimed:
                return
            self._claimed = False
        self._chip.release(self._line)

    def _on_edge(self, line: int, level: int, t_ns: int) -> None:
        value = level == self._active_level
        with self._lock:
            if not self._claimed or value == self._value:
                return
            self._value = value
        self._on_change(value, t_ns)
