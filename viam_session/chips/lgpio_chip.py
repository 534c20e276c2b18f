"""Chip backend for real boards (Raspberry Pi 5 and earlier) through the lgpio library."""

import traceback
from typing import Any, Callable, Dict, Optional, Set

import lgpio

from viam_session.chips.base import Chip, ChipError, EdgeCallback, LineInUseError

__all__ = ['LgpioChip']


class LgpioChip(Chip):
    """
    A /dev/gpiochipN opened with lgpio.

    PWM and servo pulses are lgpio's `tx_pwm` and `tx_servo` (timed by lgpio's own thread).
    Edge callbacks come from lgpio's notification thread (`gpio_claim_alert` + `callback`),
    with the kernel's event timestamp (CLOCK_MONOTONIC on current kernels).
    """

    def __init__(self, chip_number: int) -> None:
        self._chip_number = chip_number
        self._lines: Set[int] = set()
        self._callbacks: Dict[int, Any] = {}
        try:
            self._handle = lgpio.gpiochip_open(chip_number)
        except lgpio.error as error:
            raise ChipError(
                f'cannot open /dev/gpiochip{chip_number}: lgpio says {error}') from error
        self._closed = False

    def claim_output(self, line: int, level: int) -> None:
        self._claim(line, lgpio.gpio_claim_output, line, level)

    def claim_input(self, line: int, *, on_edge: Optional[EdgeCallback] = None) -> None:
        if on_edge is None:
            self._claim(line, lgpio.gpio_claim_input, line)
            return
        self._claim(line, lgpio.gpio_claim_alert, line, lgpio.BOTH_EDGES)

        def forward(_chip: int, gpio: int, level: int, tick: int) -> None:
            if level not in (0, 1):
                return  # 2 is lgpio's watchdog report, not an edge
            try:
                on_edge(gpio, level, tick)
            except Exception:  # noqa: B902 - lgpio's one notification thread must go on
                traceback.print_exc()

        self._callbacks[line] = lgpio.callback(self._handle, line, lgpio.BOTH_EDGES, forward)

    def read(self, line: int) -> int:
        return self._call('read', lgpio.gpio_read, line)

    def write(self, line: int, level: int) -> None:
        self._call('write', lgpio.gpio_write, line, level)

    def set_pwm(self, line: int, frequency_hz: float, duty: float) -> None:
        self._call('set PWM on', lgpio.tx_pwm, line, frequency_hz, duty * 100.0)

    def set_servo(self, line: int, pulse_width_us: float, frequency_hz: float = 50.0) -> None:
        self._call('set servo pulses on', lgpio.tx_servo, line, int(round(pulse_width_us)),
                   int(round(frequency_hz)))

    def release(self, line: int) -> None:
        if line in self._lines:
            self._lines.discard(line)
            callback = self._callbacks.pop(line, None)
            if callback is not None:
                callback.cancel()
            self._call('release', lgpio.gpio_free, line)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for callback in self._callbacks.values():
            callback.cancel()
        self._callbacks.clear()
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

    def _claim(self, line: int, function: Callable[..., int], *args: Any) -> None:
        if self._closed:
            raise ChipError(f'gpiochip{self._chip_number} is closed')
        if line in self._lines:
            raise LineInUseError(
                f'line {line} of gpiochip{self._chip_number} is already claimed by this process')
        try:
            function(self._handle, *args)
        except lgpio.error as error:
            if 'busy' in str(error).lower():
                raise LineInUseError(
                    f'line {line} of gpiochip{self._chip_number} is in use by '
                    f'{self._consumer(line)} (lgpio says {error})') from error
            raise ChipError(f'cannot claim line {line}: lgpio says {error}') from error
        self._lines.add(line)

    def _consumer(self, line: int) -> str:
        """Name the kernel's consumer label of a held line, as far as it is known."""
        try:
            consumer = lgpio.gpio_get_line_info(self._handle, line)[4]
        except lgpio.error:
            consumer = ''
        return f"'{consumer}'" if consumer else 'another process'

    def _call(self, what: str, function: Callable[..., int], line: int, *args: Any) -> int:
        if self._closed:
            raise ChipError(f'gpiochip{self._chip_number} is closed')
        try:
            return function(self._handle, line, *args)
        except lgpio.error as error:
            raise ChipError(f'cannot {what} line {line}: lgpio says {error}') from error
