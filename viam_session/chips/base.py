"""The interface every GPIO chip backend implements."""

from abc import ABC, abstractmethod

__all__ = ['Chip', 'ChipError', 'LineInUseError']


class ChipError(RuntimeError):
    """A chip could not be opened or a line operation failed."""


class LineInUseError(ChipError):
    """A line is already claimed by another holder."""


class Chip(ABC):
    """
    A GPIO chip whose lines a driver claims, writes and releases.

    Backends must override every abstract method. `close()` must release every line the chip
    still holds, must be safe to call twice, and leaves each line at its last value (as the
    kernel does), so drivers drive their outputs safe *before* they close the chip.
    """

    @abstractmethod
    def claim_output(self, line: int, level: int) -> None:
        """Claim `line` as an output driven at `level`; raise LineInUseError if it is held."""

    @abstractmethod
    def write(self, line: int, level: int) -> None:
        """Drive a claimed output line to `level` (0 or 1)."""

    @abstractmethod
    def set_pwm(self, line: int, frequency_hz: float, duty: float) -> None:
        """Drive hardware-timed PWM on a claimed output; `duty` is a fraction in [0, 1]."""

    @abstractmethod
    def release(self, line: int) -> None:
        """Give a claimed line back; it keeps its last value."""

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
