"""Quadrature encoder decoding (x4) on two input lines, position and velocity (no ROS)."""

import math
import threading
from typing import Optional, Tuple

from viam_session.chips.base import Chip

__all__ = ['QuadratureDecoder', 'QuadratureEncoder']

# Position of each (A << 1 | B) state in the forward cycle 00 -> 10 -> 11 -> 01 (A leads B).
_CYCLE_INDEX = {0b00: 0, 0b10: 1, 0b11: 2, 0b01: 3}


class QuadratureDecoder:
    """
    Count x4 quadrature steps: +1 for each forward state change, -1 for each backward one.

    A change of both channels at once cannot be told apart (a step was missed); it counts
    nothing and adds one to `errors`.
    """

    def __init__(self, *, a: int, b: int) -> None:
        self._index = _CYCLE_INDEX[a << 1 | b]
        self.count = 0
        self.errors = 0

    def update(self, a: int, b: int) -> int:
        """Take the channels' levels now; return the step counted (-1, 0 or +1)."""
        index = _CYCLE_INDEX[a << 1 | b]
        delta = (index - self._index) % 4
        self._index = index
        if delta == 2:
            self.errors += 1
            return 0
        step = (0, 1, 0, -1)[delta]
        self.count += step
        return step


class QuadratureEncoder:
    """
    An encoder on input lines `a_line` and `b_line`, counted on every edge of both.

    `counts_per_revolution` is the number of x4 counts (edges of both channels) per turn;
    position is in radians, velocity in radians per second between two `sample()` calls.
    Edges come from the chip's thread; `sample()` may be called from any other.
    """

    def __init__(self, *, chip: Chip, a_line: int, b_line: int,
                 counts_per_revolution: float) -> None:
        if a_line == b_line:
            raise ValueError(f'a_line and b_line must differ, both are {a_line}')
        if not (math.isfinite(counts_per_revolution) and counts_per_revolution > 0.0):
            raise ValueError(
                f'counts_per_revolution must be positive, got {counts_per_revolution}')
        self._chip = chip
        self._lines = (a_line, b_line)
        self._counts_per_radian = counts_per_revolution / (2.0 * math.pi)
        self._lock = threading.Lock()
        self._levels = [0, 0]
        self._decoder: Optional[QuadratureDecoder] = None
        self._last_sample: Optional[Tuple[int, int]] = None

    @property
    def count(self) -> int:
        """Return the steps counted since the lines were claimed."""
        with self._lock:
            return 0 if self._decoder is None else self._decoder.count

    @property
    def errors(self) -> int:
        """Return how many times both channels changed at once (missed steps)."""
        with self._lock:
            return 0 if self._decoder is None else self._decoder.errors

    def claim(self) -> None:
        """Claim both lines as inputs with edge callbacks; on failure nothing stays claimed."""
        with self._lock:  # edges wait until the decoder starts from the levels read below
            self._chip.claim_input(self._lines[0], on_edge=self._on_edge)
            try:
                self._chip.claim_input(self._lines[1], on_edge=self._on_edge)
            except Exception:
                self._chip.release(self._lines[0])
                raise
            self._levels = [self._chip.read(line) for line in self._lines]
            self._decoder = QuadratureDecoder(a=self._levels[0], b=self._levels[1])
            self._last_sample = None

    def sample(self, t_ns: int) -> Tuple[float, float]:
        """Return (position rad, velocity rad/s since the previous sample; 0 the first time)."""
        with self._lock:
            count = 0 if self._decoder is None else self._decoder.count
            previous, self._last_sample = self._last_sample, (t_ns, count)
        position = count / self._counts_per_radian
        if previous is None or t_ns <= previous[0]:
            return position, 0.0
        return position, (count - previous[1]) / self._counts_per_radian / (
            (t_ns - previous[0]) * 1e-9)

    def stop(self) -> None:
        """Do nothing: an encoder drives no output."""

    def release(self) -> None:
        """Give both lines back; edges are no longer counted."""
        with self._lock:
            if self._decoder is None:
                return
            self._decoder = None
        for line in self._lines:
            self._chip.release(line)

    def _on_edge(self, line: int, level: int, t_ns: int) -> None:
        with self._lock:
            if self._decoder is None:
                return
            self._levels[self._lines.index(line)] = level
            self._decoder.update(*self._levels)
