"""Chip backend for real boards (Raspberry Pi 5 and earlier) through the lgpio library."""

from typing import Set

import lgpio

from viam_session.chips.base import Chip, ChipError, LineInUseError

__all__ = ['LgpioChip']


class LgpioChip(Chip):
    """A /dev/gpiochipN opened with lgpio; PWM is lgpio's timed `tx_pwm`."""

    def __init__(self, chip_number: int) -> None:
        self._chip_number = chip_number
        self._lines: Set[int] = set()
        try:
            self._handle = lgpio.gpiochip_open(chip_number)
        except lgpio.error as error:
            raise ChipError(
                f'cannot open /dev/gpiochip{chip_number}: lgpio says {error}') from error
        self._closed = False

    def claim_output(self, line: int, level: int) -> None:
        try:
            lgpio.gpio_claim_output(self._handle, line, level)
        except lgpio.error as error:
            if 'busy' in str(error).lower():
                raise LineInUseError(
                    f'line {line} of gpiochip{self._chip_number} is in use by another '
                    f'process (lgpio says {error})') from error
            raise ChipError(f'cannot claim line {line}: lgpio says {error}') from error
        self._lines.add(line)

    def write(self, line: int, level: int) -> None:
        self._call('write', lgpio.gpio_write, line, level)

    def set_pwm(self, line: int, frequency_hz: float, duty: float) -> None:
        self._call('set PWM on', lgpio.tx_pwm, line, frequency_hz, duty * 100.0)

    def release(self, line: int) -> None:
        if line in self._lines:
            self._lines.discard(line)
            self._call('release', lgpio.gpio_free, line)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for line in sorted(self._lines):
            try:
                lgpio.gpio_free(self._handle, line)
            except lgpio.error:
                pass  # closing the chip below frees the line as well
        self._lines.clear()
        lgpio.gpiochip_close(self._handle)

    @property
    def closed(self) -> bool:
        return self._closed

    def _call(self, what: str, function, line: int, *args) -> None:
        try:
            function(self._handle, line, *args)
        except lgpio.error as error:
            raise ChipError(f'cannot {what} line {line}: lgpio says {error}') from error
