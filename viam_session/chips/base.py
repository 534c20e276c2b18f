"""The interface every GPIO chip backend implements."""

from abc import ABC, abstractmethod
from typing import Callable, Optional

__all__ = ['Chip', 'ChipError', 'EdgeCallback', 'LineInUseError', 'SERVO_FREQUENCY_RANGE_HZ',
           'SERVO_PULSE_RANGE_US']

# Called with (line, new level 0 or 1, timestamp in nanoseconds) for each edge of an input.
EdgeCallback = Callable[[int, int, int], None]

# What lgpio's tx_servo accepts (besides a pulse width of 0, which stops the pulses).
SERVO_PULSE_RANGE_US = (500.0, 2500.0)
SERVO_FREQUENCY_RANGE_HZ = (40.0, 500.0)


class ChipError(RuntimeError):
    """A chip could not be opened or a line operation failed."""


class LineInUseError(ChipError):
    """A line is already claimed by another holder."""


class Chip(ABC):
    """
    A GPIO chip whose lines a driver claims, writes or reads, and releases.

    Backends must override every abstract method. A line has one holder at a time; claiming a
    held line raises LineInUseError naming the holder. `close()` must release every line the
    chip still holds, must be safe to call twice, and leaves each line at its last value (as
    the kernel does), so drivers drive their outputs safe *before* they close the chip.
    Edge callbacks run in a thread of the backend's own, never in the caller's.
    """

    @abstractmethod
    def claim_output(self, line: int, level: int) -> None:
        """Claim `line` as an output driven at `level`; raise LineInUseError if it is held."""

    @abstractmethod
    def claim_input(self, line: int, *, on_edge: Optional[EdgeCallback] = None) -> None:
        """
        Claim `line` as an input; raise LineInUseError if it is held.

        With `on_edge`, every later change of the line's level (both edges) is reported as
        `on_edge(line, level, t_ns)` from the backend's thread, until the line is released.
        """

    @abstractmethod
    def read(self, line: int) -> int:
        """Return the level (0 or 1) of a claimed line."""

    @abstractmethod
    def write(self, line: int, level: int) -> None:
        """Drive a claimed output line to `level` (0 or 1)."""

    @abstractmethod
    def set_pwm(self, line: int, frequency_hz: float, duty: float) -> None:
        """Drive timed PWM on a claimed output; `duty` is a fraction in [0, 1]."""

    @abstractmethod
    def set_servo(self, line: int, pulse_width_us: float, frequency_hz: float = 50.0) -> None:
        """
        Send servo pulses on a claimed output: `pulse_width_us` high every 1/frequency_hz.

        A pulse width of 0 stops the pulses (the line stays low: the servo is released);
        otherwise it must be in SERVO_PULSE_RANGE_US, and the frequency in
        SERVO_FREQUENCY_RANGE_HZ.
        """

    @abstractmethod
    def release(self, line: int) -> None:
        """Give a claimed line back; it keeps its last value, and its edge callback stops."""

    @abstractmethod
    def close(self) -> None:
        """Release every line still held and close the chip; safe to call twice."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether close() has run."""

    def __enter__(self) -> 'Chip':
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
