"""
A simulated GPIO chip that behaves like the kernel's, shared by every process that opens it.

The chip is a directory. Each line has a lock file; claiming a line takes an exclusive
`flock` on it, so a line has one owner at a time and the claim goes away when the owner closes
the chip or its process dies, as a kernel line request does. Every change is appended to
`changes.jsonl` with a CLOCK_MONOTONIC timestamp (system-wide on Linux), so another process (a
test, the demo, a benchmark) can read when each output changed. A released line keeps its last
value: a driver that dies with PWM on leaves PWM on, as real hardware does.
"""

from dataclasses import dataclass
import fcntl
import json
import math
import os
from pathlib import Path
import time
from typing import Dict, List, Optional, Union

from viam_session.chips.base import Chip, ChipError, LineInUseError

__all__ = ['LineChange', 'SimChip', 'read_line_changes', 'read_line_values']

CHANGES_FILE = 'changes.jsonl'


@dataclass(frozen=True)
class LineChange:
    """One recorded change of a line: `kind` is claim, level, pwm or release."""

    t_ns: int
    line: int
    kind: str
    value: float
    frequency_hz: float
    pid: int
    holder: str


class SimChip(Chip):
    """A simulated chip in directory `path`; `holder` names this claimant in conflicts."""

    def __init__(self, path: Union[str, Path], *, holder: str) -> None:
        self._path = Path(path)
        self._holder = holder
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            self._changes_fd = os.open(
                self._path / CHANGES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise ChipError(f'cannot open simulated chip {self._path}: {error}') from error
        self._claims: Dict[int, int] = {}
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    def claim_output(self, line: int, level: int) -> None:
        self._check_open()
        if line in self._claims:
            raise LineInUseError(
                f'line {line} of {self._path} is already claimed by {self._holder}')
        self._check_level(line, level)
        lock_path = self._path / f'line{line}.lock'
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ChipError(f'cannot claim line {line} of {self._path}: {error}') from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors='replace').strip() or 'another process'
            os.close(fd)
            raise LineInUseError(f'line {line} of {self._path} is in use by {holder}') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{self._holder} (pid {os.getpid()})'.encode(), 0)
        self._claims[line] = fd
        self._record(line, 'claim', float(level))
        self._record(line, 'level', float(level))

    def write(self, line: int, level: int) -> None:
        self._check_claimed(line)
        self._check_level(line, level)
        self._record(line, 'level', float(level))

    def set_pwm(self, line: int, frequency_hz: float, duty: float) -> None:
        self._check_claimed(line)
        if not 0.0 <= duty <= 1.0:
            raise ChipError(f'line {line}: PWM duty must be in [0, 1], got {duty!r}')
        if not (math.isfinite(frequency_hz) and frequency_hz > 0.0):
            raise ChipError(f'line {line}: PWM frequency must be positive, got {frequency_hz!r}')
        self._record(line, 'pwm', duty, frequency_hz)

    def release(self, line: int) -> None:
        fd = self._claims.pop(line, None)
        if fd is None:
            return
        self._record(line, 'release', float('nan'))
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock

    def close(self) -> None:
        if self._closed:
            return
        for line in sorted(self._claims):
            self.release(line)
        os.close(self._changes_fd)
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ChipError(f'simulated chip {self._path} is closed')

    def _check_claimed(self, line: int) -> None:
        self._check_open()
        if line not in self._claims:
            raise ChipError(f'line {line} of {self._path} is not claimed by {self._holder}')

    @staticmethod
    def _check_level(line: int, level: int) -> None:
        if level not in (0, 1) or isinstance(level, float):
            raise ChipError(f'line {line}: level must be 0 or 1, got {level!r}')

    def _record(self, line: int, kind: str, value: float, frequency_hz: float = 0.0) -> None:
        entry = {'t_ns': time.monotonic_ns(), 'line': line, 'kind': kind, 'value': value,
                 'frequency_hz': frequency_hz, 'pid': os.getpid(), 'holder': self._holder}
        # One write of one short line on an O_APPEND descriptor: concurrent writers do not mix.
        os.write(self._changes_fd, (json.dumps(entry) + '\n').encode())


def read_line_changes(path: Union[str, Path], line: Optional[int] = None) -> List[LineChange]:
    """Every change recorded on the chip at `path` (of one line if given), oldest first."""
    changes_path = Path(path) / CHANGES_FILE
    if not changes_path.exists():
        return []
    changes = []
    with open(changes_path, encoding='utf-8') as changes_file:
        for text in changes_file:
            if not text.endswith('\n'):
                break  # a writer is half-way through this line
            change = LineChange(**json.loads(text))
            if line is None or change.line == line:
                changes.append(change)
    return changes


def read_line_values(path: Union[str, Path]) -> Dict[int, LineChange]:
    """Return the last level or PWM change of each line: what each line outputs now."""
    values: Dict[int, LineChange] = {}
    for change in read_line_changes(path):
        if change.kind in ('level', 'pwm'):
            values[change.line] = change
    return values
