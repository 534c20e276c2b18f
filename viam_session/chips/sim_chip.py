"""
A simulated GPIO chip that behaves like the kernel's, shared by every process that opens it.

The chip is a directory. Each line has a lock file; claiming a line takes an exclusive
`flock` on it, so a line has one owner at a time and the claim goes away when the owner closes
the chip or its process dies, as a kernel line request does. Every change is appended to
`changes.jsonl` with a CLOCK_MONOTONIC timestamp (system-wide on Linux), so another process (a
test, the demo, a benchmark) can read when each output changed. A released line keeps its last
value: a driver that dies with PWM on leaves PWM on, as real hardware does.

Inputs: the outside world (a test, a benchmark, another process) sets the level of a line with
`drive_input(line, level)`, which appends an `input` record; a process that claimed the line
as an input reads it with `read()` and, with an edge callback, is told of each change by a
thread that watches the record (woken by inotify) and passes the record's timestamp. A line
nobody has driven reads 0.

Record kinds: `claim` (output, value = level), `claim_input` (value = level read), `level`,
`pwm` (value = duty), `servo` (value = pulse width in µs, 0 = stopped), `input` (value =
level driven from outside) and `release`.
"""

from dataclasses import dataclass
import fcntl
import json
import math
import os
from pathlib import Path
import threading
import time
import traceback
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

from viam_session.chips.base import (
    Chip, ChipError, EdgeCallback, LineInUseError, SERVO_FREQUENCY_RANGE_HZ,
    SERVO_PULSE_RANGE_US)
from viam_session.chips.file_watch import FileWatch

__all__ = ['LineChange', 'SimChip', 'read_line_changes', 'read_line_values',
           'wait_for_line_change']

CHANGES_FILE = 'changes.jsonl'
OUTPUT_KINDS = ('level', 'pwm', 'servo')


@dataclass(frozen=True)
class LineChange:
    """One recorded change of a line; see the module docstring for the kinds."""

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
        self._inputs: Set[int] = set()
        self._levels: Dict[int, int] = {}
        self._watcher: Optional[_EdgeWatcher] = None
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    def claim_output(self, line: int, level: int) -> None:
        self._check_open()
        self._check_level(line, level)
        self._claims[line] = self._lock_line(line)
        self._levels[line] = level
        self._record(line, 'claim', float(level))
        self._record(line, 'level', float(level))

    def claim_input(self, line: int, *, on_edge: Optional[EdgeCallback] = None) -> None:
        self._check_open()
        fd = self._lock_line(line)
        try:
            if on_edge is None:
                level = _input_levels(self._path)[0].get(line, 0)
            else:
                if self._watcher is None:
                    self._watcher = _EdgeWatcher(self._path, name=f'sim_chip_{self._holder}')
                level = self._watcher.watch(line, on_edge)
        except OSError as error:
            os.close(fd)
            raise ChipError(f'cannot watch line {line} of {self._path}: {error}') from error
        self._claims[line] = fd
        self._inputs.add(line)
        self._record(line, 'claim_input', float(level))

    def drive_input(self, line: int, level: int) -> None:
        """Set the level of input `line` from outside, as a switch or a sensor wired to it."""
        self._check_open()
        self._check_level(line, level)
        if line in self._claims and line not in self._inputs:
            raise ChipError(f'line {line} of {self._path} is an output of {self._holder}')
        self._record(line, 'input', float(level))

    def read(self, line: int) -> int:
        self._check_claimed(line)
        if line in self._inputs:
            return _input_levels(self._path)[0].get(line, 0)
        return self._levels[line]

    def write(self, line: int, level: int) -> None:
        self._check_output(line)
        self._check_level(line, level)
        self._levels[line] = level
        self._record(line, 'level', float(level))

    def set_pwm(self, line: int, frequency_hz: float, duty: float) -> None:
        self._check_output(line)
        if not 0.0 <= duty <= 1.0:
            raise ChipError(f'line {line}: PWM duty must be in [0, 1], got {duty!r}')
        if not (math.isfinite(frequency_hz) and frequency_hz > 0.0):
            raise ChipError(f'line {line}: PWM frequency must be positive, got {frequency_hz!r}')
        self._record(line, 'pwm', duty, frequency_hz)

    def set_servo(self, line: int, pulse_width_us: float, frequency_hz: float = 50.0) -> None:
        self._check_output(line)
        low, high = SERVO_PULSE_RANGE_US
        if not (pulse_width_us == 0 or low <= pulse_width_us <= high):
            raise ChipError(f'line {line}: servo pulse width must be 0 or in [{low:g}, '
                            f'{high:g}] us, got {pulse_width_us!r}')
        low, high = SERVO_FREQUENCY_RANGE_HZ
        if not low <= frequency_hz <= high:
            raise ChipError(f'line {line}: servo frequency must be in [{low:g}, {high:g}] Hz, '
                            f'got {frequency_hz!r}')
        self._record(line, 'servo', float(pulse_width_us), float(frequency_hz))

    def release(self, line: int) -> None:
        fd = self._claims.pop(line, None)
        if fd is None:
            return
        if self._watcher is not None:
            self._watcher.unwatch(line)
        self._inputs.discard(line)
        self._levels.pop(line, None)
        self._record(line, 'release', float('nan'))
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock

    def close(self) -> None:
        if self._closed:
            return
        for line in sorted(self._claims):
            self.release(line)
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        os.close(self._changes_fd)
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _lock_line(self, line: int) -> int:
        """Take the line's lock file; return its descriptor, or raise naming the holder."""
        if line in self._claims:
            raise LineInUseError(
                f'line {line} of {self._path} is already claimed by {self._holder}')
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
        return fd

    def _check_open(self) -> None:
        if self._closed:
            raise ChipError(f'simulated chip {self._path} is closed')

    def _check_claimed(self, line: int) -> None:
        self._check_open()
        if line not in self._claims:
            raise ChipError(f'line {line} of {self._path} is not claimed by {self._holder}')

    def _check_output(self, line: int) -> None:
        self._check_claimed(line)
        if line in self._inputs:
            raise ChipError(f'line {line} of {self._path} is an input of {self._holder}')

    @staticmethod
    def _check_level(line: int, level: int) -> None:
        if level not in (0, 1) or isinstance(level, float):
            raise ChipError(f'line {line}: level must be 0 or 1, got {level!r}')

    def _record(self, line: int, kind: str, value: float, frequency_hz: float = 0.0) -> None:
        entry = {'t_ns': time.monotonic_ns(), 'line': line, 'kind': kind, 'value': value,
                 'frequency_hz': frequency_hz, 'pid': os.getpid(), 'holder': self._holder}
        # One write of one short line on an O_APPEND descriptor: concurrent writers do not mix.
        os.write(self._changes_fd, (json.dumps(entry) + '\n').encode())


class _EdgeWatcher:
    """A thread that follows a chip's record and calls each watched input line's callback."""

    def __init__(self, path: Path, *, name: str) -> None:
        self._path = path
        self._watch = FileWatch(path / CHANGES_FILE)
        self._lock = threading.Lock()
        # line -> (callback, last level, offset of the first record that may be an edge)
        self._watched: Dict[int, Tuple[EdgeCallback, int, int]] = {}
        self._offset = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def watch(self, line: int, callback: EdgeCallback) -> int:
        """Watch `line` from now on; return its level now."""
        with self._lock:
            levels, end = _input_levels(self._path)
            level = levels.get(line, 0)
            if not self._watched and not self._started:
                self._offset = end
            self._watched[line] = (callback, level, end)
        if not self._started:
            self._started = True
            self._thread.start()
        return level

    def unwatch(self, line: int) -> None:
        """Stop calling `line`'s callback (one already running may still finish)."""
        with self._lock:
            self._watched.pop(line, None)

    def stop(self) -> None:
        self._watch.interrupt()
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._watch.close()

    def _run(self) -> None:
        while True:
            for callback, line, level, t_ns in self._new_edges():
                try:
                    callback(line, level, t_ns)
                except Exception:  # noqa: B902 - a failing callback must not end the watch
                    traceback.print_exc()
            if not self._watch.wait(1.0):
                return

    def _new_edges(self) -> List[Tuple[EdgeCallback, int, int, int]]:
        edges = []
        with self._lock:
            changes, self._offset = _read_records(self._path, self._offset)
            for offset, change in changes:
                watched = self._watched.get(change.line)
                if change.kind != 'input' or watched is None or offset < watched[2]:
                    continue
                callback, level, start = watched
                if int(change.value) != level:
                    self._watched[change.line] = (callback, int(change.value), start)
                    edges.append((callback, change.line, int(change.value), change.t_ns))
        return edges


def _read_records(path: Path, offset: int = 0) -> Tuple[List[Tuple[int, LineChange]], int]:
    """Return the complete records from byte `offset` on, each with its offset, and the end."""
    try:
        with open(path / CHANGES_FILE, 'rb') as changes_file:
            changes_file.seek(offset)
            data = changes_file.read()
    except FileNotFoundError:
        return [], offset
    records = []
    position = 0
    while True:
        end = data.find(b'\n', position)
        if end < 0:
            break  # nothing more, or a writer is half-way through this line
        records.append((offset + position, LineChange(**json.loads(data[position:end]))))
        position = end + 1
    return records, offset + position


def _input_levels(path: Path) -> Tuple[Dict[int, int], int]:
    """Return the level last driven on each input line, and where the record ends now."""
    records, end = _read_records(path)
    levels = {change.line: int(change.value) for _, change in records if change.kind == 'input'}
    return levels, end


def read_line_changes(path: Union[str, Path], line: Optional[int] = None) -> List[LineChange]:
    """Every change recorded on the chip at `path` (of one line if given), oldest first."""
    records, _ = _read_records(Path(path))
    return [change for _, change in records if line is None or change.line == line]


def read_line_values(path: Union[str, Path]) -> Dict[int, LineChange]:
    """Return the last level, PWM or servo change of each line: what each line outputs now."""
    values: Dict[int, LineChange] = {}
    for change in read_line_changes(path):
        if change.kind in OUTPUT_KINDS:
            values[change.line] = change
    return values


def wait_for_line_change(path: Union[str, Path], predicate: Callable[[LineChange], bool], *,
                         timeout_s: float, after_ns: int = 0) -> LineChange:
    """
    Return the first change recorded after `after_ns` that meets `predicate`.

    Waits for it (woken by each write to the chip, no polling); TimeoutError past `timeout_s`.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    watch = FileWatch(path)  # the directory: the record may not exist yet
    try:
        offset = 0
        while True:
            changes, offset = _read_records(path, offset)
            for _, change in changes:
                if change.t_ns > after_ns and predicate(change):
                    return change
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f'no matching change on {path} within {timeout_s} s')
            watch.wait(remaining)
    finally:
        watch.close()
