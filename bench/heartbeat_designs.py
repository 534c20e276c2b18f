"""
Measure what candidate heartbeat designs cost the session manager, at full scale.

The target: 1024 sessions heartbeating at window/5 must leave the session
manager under 5 % of one core. For each design (see `heartbeat_roles.py`) this starts a
receiver process that behaves like the design's manager side and load generator processes
that behave like its clients, waits until the receiver has heard from every session, then
measures the receiver's CPU time (utime + stime of all its threads, /proc/<pid>/stat) over a
steady interval. For the liveliness designs it also stops a few sessions one at a time and
measures how long after last assertion + lease the receiver was told. Every design's receiver
also takes a stream of commands (std_msgs/Float64, 50/s by default), as a manager would.

Run from the repository root with the venv's Python:

    .venv/bin/python bench/heartbeat_designs.py [--designs A,B1,B2,C] [--sessions 1024]
        [--window 2] [--seconds 20]

`--sessions` and `--window` take comma-separated lists; every combination is run. The table
is printed and written as JSON, with a bar chart, to bench_output/.
"""

import argparse
from dataclasses import dataclass, field
import itertools
import json
import os
from pathlib import Path
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from viam_session_harness.ros_domains import domain_range

ROLES = Path(__file__).resolve().parent / 'heartbeat_roles.py'
BEATS_PER_WINDOW = 5
REQUIREMENT_PCT = 5.0
DOMAIN_RANGE = domain_range(range(201, 216))
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')
# How long a generator may stay more than a window behind before the bench stops waiting for
# every session to be alive and measures what it has.
BEHIND_GRACE_S = 20.0
NOTE_BATCHING = ('batching helps only when one process holds many sessions (a fleet '
                 'service), not with 1024 separate clients')
DESCRIPTIONS = {
    'base': 'no sessions: the command traffic alone (the floor under every design)',
    'A': 'a Heartbeat message per heartbeat on one shared topic, one Python callback each',
    'B1': 'liveliness per session topic; one subscription each, on the busy main executor',
    'B2': 'liveliness per session topic; subscriptions on their own node and executor thread',
    'C': 'one String per client process and period listing all its session ids',
}


# --- child processes ----------------------------------------------------------------------------


class Lines:
    """JSON lines a child printed, in order; the bench waits on them with deadlines."""

    def __init__(self) -> None:
        self._items: List[dict] = []
        self._changed = threading.Condition()

    def append(self, item: dict) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def count(self) -> int:
        with self._changed:
            return len(self._items)

    def find(self, predicate: Callable[[dict], bool], start: int = 0) -> Optional[dict]:
        """Return the first line from index `start` on that meets `predicate`, or None."""
        with self._changed:
            return next((item for item in self._items[start:] if predicate(item)), None)

    def every(self, event: str) -> List[dict]:
        """Return every line of type `event`, in order."""
        with self._changed:
            return [item for item in self._items if item['event'] == event]

    def last(self, event: str) -> Optional[dict]:
        """Return the latest line of type `event`, or None."""
        with self._changed:
            return next((item for item in reversed(self._items) if item['event'] == event),
                        None)

    def wait_for(self, predicate: Callable[[dict], bool], timeout_s: float,
                 start: int = 0) -> Optional[dict]:
        """Wait for a line from index `start` on that meets `predicate`; None at the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((item for item in self._items[start:] if predicate(item)), None)
                remaining = deadline - time.monotonic()
                if found is not None or remaining <= 0:
                    return found
                self._changed.wait(min(remaining, 1.0))


class Child:
    """A role process of `heartbeat_roles.py`; its JSON lines are collected as they come."""

    def __init__(self, name: str, args: Sequence[str], env: Dict[str, str],
                 log_path: Path) -> None:
        self.name = name
        self._log = open(log_path, 'w', encoding='utf-8')
        self.process = subprocess.Popen(
            [sys.executable, str(ROLES), *args], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, start_new_session=True)
        self.log_path = log_path
        self.lines = Lines()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for text in self.process.stdout:
            self._log.write(text)  # the log keeps everything the child said, for post-mortems
            self._log.flush()
            try:
                self.lines.append(json.loads(text))
            except json.JSONDecodeError:
                pass

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, command: str) -> int:
        """Send one command line; return the line count before it, to wait for the answer."""
        start = self.lines.count()
        try:
            self.process.stdin.write(command + '\n')
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        return start

    def request(self, command: str, event: str, timeout_s: float = 30.0) -> dict:
        """Send a command and return the child's next line of type `event`."""
        start = self.send(command)
        answer = self.lines.wait_for(lambda line: line['event'] == event, timeout_s, start)
        if answer is None:
            raise TimeoutError(f'{self.name}: no {event!r} within {timeout_s} s; '
                               f'see {self.log_path}')
        return answer

    def check_running(self) -> None:
        """Raise if the process has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f'{self.name} exited with {self.process.returncode}; '
                               f'see {self.log_path}')

    def close(self, timeout_s: float = 30.0) -> None:
        """Ask the child to quit (end of stdin); SIGKILL it if it has not within the timeout."""
        if self.process.poll() is None:
            self.send('quit')
            try:
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        self.process.stdout.close()
        self._log.close()


# --- what /proc says ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """Return the process's user + system CPU time, all threads, in seconds."""
    text = Path(f'/proc/{pid}/stat').read_text()
    fields = text[text.rindex(')') + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> Dict[str, float]:
    """Return CPU seconds per thread, keyed by '<name>/<tid>' ('main' for the main thread)."""
    threads = {}
    for task in Path(f'/proc/{pid}/task').iterdir():
        try:
            text = (task / 'stat').read_text()
        except OSError:
            continue  # the thread ended
        name = 'main' if task.name == str(pid) else text[text.index('(') + 1:text.rindex(')')]
        fields = text[text.rindex(')') + 2:].split()
        threads[f'{name}/{task.name}'] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return threads


def busiest_threads(before: Dict[str, float], after: Dict[str, float], wall_s: float,
                    count: int = 4) -> List[Tuple[str, float]]:
    """Return the `count` threads that used most CPU between two samples, in % of a core."""
    used = {key: after[key] - before.get(key, 0.0) for key in after}
    top = sorted(used.items(), key=lambda item: -item[1])[:count]
    return [(key.split('/')[0], percent_of_core(seconds, wall_s)) for key, seconds in top]


def rss_mib(pid: int) -> float:
    """Return the process's resident set size (VmRSS) in MiB."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def machine_ticks() -> Tuple[int, int]:
    """Return (busy, total) CPU ticks of the whole machine since boot."""
    values = [int(v) for v in Path('/proc/stat').read_text().split('\n')[0].split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def loadavg() -> str:
    """Return the 1, 5 and 15 minute load averages as /proc/loadavg shows them."""
    return ' '.join(Path('/proc/loadavg').read_text().split()[:3])


@dataclass
class CpuSample:
    """CPU times of the bench's processes and the machine at one instant."""

    t: float
    receiver: float
    generators: float
    machine_busy: int
    machine_total: int

    @staticmethod
    def take(receiver: Child, generators: Sequence[Child]) -> 'CpuSample':
        busy, total = machine_ticks()
        return CpuSample(time.monotonic(), cpu_seconds(receiver.pid),
                         sum(cpu_seconds(g.pid) for g in generators), busy, total)


def percent_of_core(cpu_s: float, wall_s: float) -> float:
    return 100.0 * cpu_s / wall_s if wall_s > 0 else float('nan')


# --- one design -----------------------------------------------------------------------------


@dataclass
class Run:
    """One design at one scale: its settings and, once run, its measured figures."""

    design: str
    sessions: int
    window_s: float
    domain: int
    executor: str
    figures: Dict[str, object] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f'{self.design} {self.sessions}@{self.window_s:g}s'

    @property
    def offered_per_s(self) -> float:
        """Return the session heartbeats per second the design is asked to carry."""
        return self.sessions * BEATS_PER_WINDOW / self.window_s


def ros_environment(domain: int) -> Dict[str, str]:
    """Return the children's environment: DDS on this machine, in the bench's own domain."""
    env = dict(os.environ)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['ROS_DOMAIN_ID'] = str(domain)
    env['RCUTILS_COLORIZED_OUTPUT'] = '0'
    env['PYTHONUNBUFFERED'] = '1'
    return env


def split_sessions(sessions: int, processes: int) -> List[Tuple[int, int]]:
    """Return (first, count) of each heartbeating generator process."""
    processes = min(processes, sessions)
    if processes <= 0:
        return []
    size, extra = divmod(sessions, processes)
    slices, first = [], 0
    for index in range(processes):
        count = size + (1 if index < extra else 0)
        slices.append((first, count))
        first += count
    return slices


class DesignRun:
    """Start a design's processes, wait for discovery, measure, and stop them."""

    def __init__(self, run: Run, options: argparse.Namespace, workdir: Path) -> None:
        self.run = run
        self.options = options
        self.workdir = workdir
        self.receiver: Optional[Child] = None
        self.generators: List[Child] = []
        self.slices: List[Tuple[int, int]] = []
        self._spawn_t = 0.0

    def say(self, text: str) -> None:
        print(f'[{self.run.label}] {text}', flush=True)

    def execute(self) -> Run:
        """Run the whole measurement; always stop the processes."""
        try:
            self._start()
            self._wait_until_alive()
            self._measure()
            if self.run.design in ('B1', 'B2') and self.options.latency_sessions > 0:
                if self.run.figures['generator_behind']:
                    self.run.notes.append('detection latency not measured: the generator '
                                          'cannot keep the sessions alive')
                else:
                    self._measure_detection_latency()
        finally:
            self._stop()
        return self.run

    # --- start-up and discovery -------------------------------------------------------------

    def _start(self) -> None:
        run, options = self.run, self.options
        self.workdir.mkdir(parents=True, exist_ok=True)
        ids_path = self.workdir / 'session_ids.txt'
        ids_path.write_text(''.join(secrets.token_hex(16) + '\n' for _ in range(run.sessions)))
        env = ros_environment(run.domain)
        common = ['--design', run.design, '--window', str(run.window_s), '--ids', str(ids_path)]
        self.say(f'domain {run.domain}: starting the receiver and generators '
                 f'({DESCRIPTIONS[run.design]})')
        self._spawn_t = time.monotonic()
        self.receiver = Child('receiver', ['receiver', *common, '--executor', run.executor],
                              env, self.workdir / 'receiver.log')
        self.slices = split_sessions(run.sessions, options.processes)
        for index, (first, count) in enumerate(self.slices):
            self.generators.append(Child(
                f'generator{index}', ['generator', *common, '--first', str(first),
                                      '--count', str(count)],
                env, self.workdir / f'generator{index}.log'))
        if options.command_rate > 0:
            # A process of its own, so a publish that blocks cannot hold up heartbeats.
            self.generators.append(Child(
                'commander', ['generator', *common, '--command-rate', str(options.command_rate)],
                env, self.workdir / 'commander.log'))

    def _wait_line(self, child: Child, event: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            line = child.lines.wait_for(lambda item: item['event'] == event, 1.0)
            if line is not None:
                return line
            child.check_running()
            if time.monotonic() > deadline:
                raise TimeoutError(f'{child.name}: no {event!r} within {timeout_s} s')

    def _wait_until_alive(self) -> None:
        timeout_s = self.options.discovery_timeout
        created = self._wait_line(self.receiver, 'created', timeout_s)
        ready = [self._wait_line(g, 'ready', timeout_s) for g in self.generators]
        entities_t = max([created['t']] + [line['t'] for line in ready])
        self.run.figures['receiver_create_s'] = created['seconds']
        self.run.figures['generators_create_s'] = max(line['t'] for line in ready) - self._spawn_t
        self.say(f'receiver created its entities in {created["seconds"]:.2f} s, generators '
                 f'ready {entities_t - self._spawn_t:.1f} s after start')
        if not self.run.sessions:
            return
        self.say('waiting for every session to be '
                 + ('alive' if self.run.design.startswith('B') else 'heard from'))
        complete = self._wait_complete(timeout_s)
        if complete is not None:
            self.run.figures['discovery_s'] = complete['t'] - entities_t
            self.run.figures['startup_s'] = complete['t'] - self._spawn_t
            self.say(f'all {self.run.sessions} alive {complete["t"] - entities_t:.1f} s after '
                     f'the entities were created ({complete["t"] - self._spawn_t:.1f} s after '
                     f'start)')

    def _wait_complete(self, timeout_s: float) -> Optional[dict]:
        """Wait for `complete`, printing progress; None if it did not come (see notes)."""
        deadline = time.monotonic() + timeout_s
        behind_since: Optional[float] = None
        last_printed = ''
        while True:
            complete = self.receiver.lines.wait_for(
                lambda line: line['event'] == 'complete', 2.0)
            if complete is not None:
                return complete
            for child in [self.receiver, *self.generators]:
                child.check_running()
            last_printed = self._print_progress(last_printed)
            if behind_since is None and self._generator_behind():
                behind_since = time.monotonic()
                self.say('a generator is more than a window behind its schedule')
            reason = self._give_up_reason(deadline, behind_since, timeout_s)
            if reason:
                self.run.notes.append(reason)
                self.say(reason + '; measuring anyway')
                return None

    def _give_up_reason(self, deadline: float, behind_since: Optional[float],
                        timeout_s: float) -> str:
        progress = self.receiver.lines.last('progress')
        alive = f'{progress["alive"]}/{progress["total"]}' if progress else '?'
        if behind_since is not None and time.monotonic() - behind_since > BEHIND_GRACE_S:
            return (f'a generator fell more than a window behind its schedule; only {alive} '
                    'sessions alive at once')
        if time.monotonic() > deadline:
            return f'not all sessions alive within {timeout_s:g} s ({alive})'
        return ''

    def _print_progress(self, last_printed: str) -> str:
        progress = self.receiver.lines.last('progress')
        if progress is None:
            return last_printed
        text = f'alive {progress["alive"]}/{progress["total"]}'
        if text != last_printed:
            self.say(f'{text} ({time.monotonic() - self._spawn_t:.0f} s)')
        return text

    def _generator_behind(self) -> bool:
        return any(g.lines.find(lambda line: line['event'] == 'behind') for g in self.generators)

    # --- the steady measurement -------------------------------------------------------------

    def _marks(self) -> Tuple[dict, List[dict]]:
        return (self.receiver.request('mark', 'mark'),
                [g.request('mark', 'mark') for g in self.generators])

    def _measure(self) -> None:
        options = self.options
        if options.warmup > 0:
            self.say(f'warm-up {options.warmup:g} s')
            time.sleep(options.warmup)  # a steady interval, not a wait for an event
        self.say(f'measuring {options.seconds:g} s')
        load_start = loadavg()
        samples = [CpuSample.take(self.receiver, self.generators)]
        threads_start = thread_cpu_seconds(self.receiver.pid)
        marks_start = self._marks()
        slice_s = options.seconds / options.slices
        for index in range(options.slices):
            time.sleep(max(0.0, samples[0].t + slice_s * (index + 1) - time.monotonic()))
            samples.append(CpuSample.take(self.receiver, self.generators))
        threads_end = thread_cpu_seconds(self.receiver.pid)
        marks_end = self._marks()
        self._record(samples, marks_start, marks_end)
        self.run.figures['receiver_busiest_threads_pct'] = busiest_threads(
            threads_start, threads_end, samples[-1].t - samples[0].t)
        self.run.figures['rss_mib'] = rss_mib(self.receiver.pid)
        self.run.figures['loadavg'] = [load_start, loadavg()]
        self._add_notes(marks_end)
        figures = self.run.figures
        self.say(f'receiver {figures["receiver_cpu_pct"]:.2f} % of a core, '
                 f'RSS {figures["rss_mib"]:.0f} MiB, generators '
                 f'{figures["generator_cpu_pct"]:.1f} %')

    def _record(self, samples: List[CpuSample], marks_start: Tuple[dict, List[dict]],
                marks_end: Tuple[dict, List[dict]]) -> None:
        first, last = samples[0], samples[-1]
        wall_s = last.t - first.t
        figures = self.run.figures
        figures['measured_s'] = wall_s
        figures['receiver_cpu_pct'] = percent_of_core(last.receiver - first.receiver, wall_s)
        figures['receiver_cpu_slices_pct'] = [
            percent_of_core(b.receiver - a.receiver, b.t - a.t)
            for a, b in zip(samples, samples[1:])]
        figures['generator_cpu_pct'] = percent_of_core(last.generators - first.generators,
                                                       wall_s)
        busy = last.machine_busy - first.machine_busy
        total = last.machine_total - first.machine_total
        figures['machine_busy_cores'] = busy / total * os.cpu_count()
        self._record_rates(marks_start, marks_end)

    def _record_rates(self, marks_start: Tuple[dict, List[dict]],
                      marks_end: Tuple[dict, List[dict]]) -> None:
        (r0, g0), (r1, g1) = marks_start, marks_end
        wall_s = r1['t'] - r0['t']
        sent = sum(b['sent'] - a['sent'] for a, b in zip(g0, g1)) / (g1[-1]['t'] - g0[0]['t'])
        if self.run.design == 'C':
            sent *= self.run.sessions / len(self.slices)  # each batch beats for its sessions
        figures = self.run.figures
        figures['sent_per_s'] = sent
        figures['received_msgs_per_s'] = (r1['received'] - r0['received']) / wall_s
        if self.run.design in ('A', 'C'):
            per_message = self.run.sessions / len(self.slices) if self.run.design == 'C' else 1
            figures['received_per_s'] = figures['received_msgs_per_s'] * per_message
        figures['commands_per_s'] = (r1['commands'] - r0['commands']) / wall_s
        figures['commands_sent_per_s'] = sum(
            b['commands'] - a['commands'] for a, b in zip(g0, g1)) / (g1[-1]['t'] - g0[0]['t'])
        figures['lost_during_measurement'] = r1['lost'] - r0['lost']
        figures['unknown_ids'] = r1['unknown'] - r0['unknown']
        figures['alive_at_end'] = r1['alive']

    def _add_notes(self, marks_end: Tuple[dict, List[dict]]) -> None:
        run, figures = self.run, self.run.figures
        if run.sessions and figures['sent_per_s'] < 0.95 * run.offered_per_s:
            run.notes.append(f'generators sent only {figures["sent_per_s"]:.0f} heartbeats/s '
                             f'of {run.offered_per_s:.0f} offered')
        figures['generator_behind'] = self._generator_behind()
        if figures['generator_behind']:
            run.notes.append('a generator fell behind its schedule: it sends in catch-up '
                             'bursts, so sessions miss their windows (a load this machine '
                             'cannot generate evenly)')
        if figures['alive_at_end'] < run.sessions:
            run.notes.append(f'only {figures["alive_at_end"]}/{run.sessions} sessions alive '
                             'at the end of the measurement')
        if figures['lost_during_measurement']:
            run.notes.append(f'{figures["lost_during_measurement"]} liveliness losses during '
                             f'the measurement, in {self._loss_bursts(marks_end)} burst(s)')
        expected = self.options.command_rate
        if expected and figures['commands_per_s'] < 0.95 * expected:
            run.notes.append(f'receiver took only {figures["commands_per_s"]:.1f} of '
                             f'{figures["commands_sent_per_s"]:.1f} commands/s sent '
                             f'({expected:g} asked)')
        if figures['unknown_ids']:
            run.notes.append(f'{figures["unknown_ids"]} heartbeats with unknown ids')
        if run.design == 'C':
            run.notes.append(f'{figures["received_msgs_per_s"]:.0f} batch msgs/s; '
                             + NOTE_BATCHING)
        if run.executor != 'single':
            run.notes.append(f'receiver on rclpy {run.executor} executor')

    def _loss_bursts(self, marks_end: Tuple[dict, List[dict]]) -> int:
        """Count the separate instants (50 ms apart or more) at which sessions were lost."""
        start_t = marks_end[0]['t'] - self.run.figures['measured_s']
        times = sorted(line['lost_t'] for line in self.receiver.lines.every('lost')
                       if start_t <= line['lost_t'] <= marks_end[0]['t'])
        return sum(1 for a, b in zip([None] + times, times) if a is None or b - a > 0.05)

    # --- detection latency (liveliness designs) -------------------------------------------

    def _owner(self, index: int) -> Tuple[Child, int]:
        for generator, (first, count) in zip(self.generators, self.slices):
            if first <= index < first + count:
                return generator, index - first
        raise ValueError(index)

    def _measure_detection_latency(self) -> None:
        run = self.run
        count = min(self.options.latency_sessions, run.sessions)
        latencies = []
        for k in range(count):
            index = (2 * k + 1) * run.sessions // (2 * count)  # spread over the generators
            latency = self._one_detection(index)
            if latency is not None:
                latencies.append(latency)
        run.figures['detection_latency_ms'] = latencies
        if latencies:
            self.say('detection latency (lost callback - (last assertion + lease)): '
                     + ', '.join(f'{value:.1f}' for value in latencies) + ' ms')

    def _one_detection(self, index: int) -> Optional[float]:
        generator, local = self._owner(index)
        timeout_s = 3 * self.run.window_s + 10.0
        start = self.receiver.lines.count()
        stopped = generator.request(f'stop {local}', 'stopped', timeout_s)
        lost = self.receiver.lines.wait_for(
            lambda line: line['event'] == 'lost' and line['index'] == index, timeout_s, start)
        if lost is None:
            self.run.notes.append(f'session {index}: no liveliness loss within {timeout_s:g} s')
            return None
        return 1000.0 * (lost['lost_t'] - (stopped['last_assert_t'] + self.run.window_s))

    # --- shutdown ---------------------------------------------------------------------------

    def _stop(self) -> None:
        children = ([self.receiver] if self.receiver else []) + self.generators
        for child in children:
            child.close()


# --- report -------------------------------------------------------------------------------------


COLUMNS = (
    ('design', 6, lambda r: r.design),
    ('sessions', 8, lambda r: str(r.sessions)),
    ('window s', 8, lambda r: f'{r.window_s:g}'),
    ('hb/s offered', 12, lambda r: f'{r.offered_per_s:.0f}'),
    ('hb/s sent', 9, lambda r: _figure(r, 'sent_per_s', '.0f')),
    ('hb/s recv', 9, lambda r: _figure(r, 'received_per_s', '.0f')),
    ('cmd/s', 5, lambda r: _figure(r, 'commands_per_s', '.0f')),
    ('recv CPU %', 10, lambda r: _figure(r, 'receiver_cpu_pct', '.2f')),
    ('RSS MiB', 7, lambda r: _figure(r, 'rss_mib', '.0f')),
    ('gen CPU %', 9, lambda r: _figure(r, 'generator_cpu_pct', '.1f')),
    ('discovery s', 11, lambda r: _figure(r, 'discovery_s', '.1f')),
    ('machine busy', 12, lambda r: _figure(r, 'machine_busy_cores', '.2f') + ' cores'),
)


def _figure(run: Run, key: str, spec: str) -> str:
    value = run.figures.get(key)
    return '-' if value is None else format(value, spec)


def format_table(runs: Sequence[Run]) -> str:
    """Return the results table, then each row's notes and detection latencies."""
    header = '  '.join(name.rjust(width) for name, width, _ in COLUMNS)
    lines = [header, '-' * len(header)]
    for run in runs:
        lines.append('  '.join(value(run).rjust(width) for _, width, value in COLUMNS))
    lines.append('')
    for run in runs:
        details = list(run.notes)
        latencies = run.figures.get('detection_latency_ms')
        if latencies:
            details.append('detection latency ms: ' + ', '.join(f'{v:.1f}' for v in latencies)
                           + f' (median {statistics.median(latencies):.1f})')
        threads = run.figures.get('receiver_busiest_threads_pct')
        if threads:
            details.append('busiest receiver threads %: '
                           + ', '.join(f'{name} {value:.1f}' for name, value in threads))
        slices = run.figures.get('receiver_cpu_slices_pct')
        if slices:
            details.append('receiver CPU % per slice: ' + ', '.join(f'{v:.2f}' for v in slices))
        if 'receiver_create_s' in run.figures:
            details.append(f'receiver created its entities in '
                           f'{run.figures["receiver_create_s"]:.2f} s; loadavg '
                           + ' -> '.join(run.figures.get('loadavg', [])))
        lines.append(f'{run.label}: ' + '; '.join(details))
    return '\n'.join(lines)


def write_json(runs: Sequence[Run], meta: dict, path: Path) -> None:
    """Write every run's settings, figures and notes as JSON."""
    rows = [{'design': r.design, 'label': r.label, 'sessions': r.sessions,
             'window_s': r.window_s, 'offered_heartbeats_per_s': r.offered_per_s,
             'domain': r.domain, 'executor': r.executor, **r.figures, 'notes': r.notes}
            for r in runs]
    path.write_text(json.dumps({'meta': meta, 'rows': rows}, indent=2) + '\n')


def write_chart(runs: Sequence[Run], path: Path) -> None:
    """Save a bar chart of the receiver's CPU per design, with the 5 % requirement."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.patches import Patch
    import matplotlib.pyplot as plt

    measured = [r for r in runs if 'receiver_cpu_pct' in r.figures]
    values = [r.figures['receiver_cpu_pct'] for r in measured]
    colours = {'base': 'tab:gray', 'A': 'tab:red', 'B1': 'tab:orange', 'B2': 'tab:green',
               'C': 'tab:blue'}
    figure, axes = plt.subplots(figsize=(min(16.0, max(6.0, 0.8 * len(measured) + 2)), 6.0))
    bars = axes.bar([r.label.replace(' ', '\n') for r in measured], values,
                    color=[colours.get(r.design, 'tab:purple') for r in measured],
                    edgecolor='black', linewidth=0.5)
    for bar, run in zip(bars, measured):
        if run.figures.get('generator_behind'):
            bar.set_hatch('//')
    axes.bar_label(bars, labels=[f'{v:.2f}' for v in values], padding=2, fontsize=8,
                   bbox={'facecolor': 'white', 'edgecolor': 'none', 'pad': 1})
    axes.axhline(REQUIREMENT_PCT, color='black', linestyle='--', linewidth=1,
                 label=f'requirement: under {REQUIREMENT_PCT:g} % of a core')
    handles, _ = axes.get_legend_handles_labels()
    if any(run.figures.get('generator_behind') for run in measured):
        handles.append(Patch(facecolor='white', edgecolor='black', hatch='//',
                             label='generator fell behind (uneven load)'))
    axes.legend(handles=handles, loc='upper right', fontsize=8)
    axes.tick_params(axis='x', labelsize=8)
    axes.set_ylabel('receiver CPU, % of one core')
    axes.set_title('Heartbeat designs: session manager side CPU (measured)')
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- main ---------------------------------------------------------------------------------------


def comma_list(kind: Callable[[str], object]) -> Callable[[str], list]:
    return lambda text: [kind(item) for item in text.split(',') if item.strip()]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse the bench's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--designs', type=comma_list(str), default=['A', 'B1', 'B2', 'C'],
                        help='comma list of base, A, B1, B2, C (default A,B1,B2,C)')
    parser.add_argument('--sessions', type=comma_list(int), default=[1024])
    parser.add_argument('--window', type=comma_list(float), default=[2.0],
                        help='window(s) in seconds; heartbeats at window/5')
    parser.add_argument('--seconds', type=float, default=20.0, help='measurement interval')
    parser.add_argument('--slices', type=int, default=4, help='CPU figures per interval')
    parser.add_argument('--warmup', type=float, default=2.0,
                        help='steady seconds after discovery before measuring')
    parser.add_argument('--processes', type=int, default=4, help='generator processes')
    parser.add_argument('--command-rate', type=float, default=50.0,
                        help='commands/s the receiver also takes (std_msgs/Float64)')
    parser.add_argument('--latency-sessions', type=int, default=5,
                        help='sessions stopped one at a time to time detection (B1, B2)')
    parser.add_argument('--discovery-timeout', type=float, default=300.0)
    parser.add_argument('--domain', type=int, default=DOMAIN_RANGE[0],
                        help='first ROS domain; each run takes the next (201-215)')
    parser.add_argument('--executor', choices=('single', 'events'), default='single',
                        help="receiver's executor (events = rclpy.experimental)")
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    args = parser.parse_args(argv)
    unknown = set(args.designs) - set(DESCRIPTIONS)
    if unknown or args.domain not in DOMAIN_RANGE:
        parser.error(f'unknown designs {sorted(unknown)}' if unknown
                     else f'--domain must be in {DOMAIN_RANGE[0]}-{DOMAIN_RANGE[-1]}')
    return args


def plan(args: argparse.Namespace) -> List[Run]:
    """Return the runs: every window, session count and design, in that order."""
    runs = []
    for window_s, sessions, design in itertools.product(
            args.window, args.sessions, args.designs):
        if design == 'base' and any(run.design == 'base' and run.window_s == window_s
                                    for run in runs):
            continue  # the floor does not depend on the session count
        offset = (args.domain - DOMAIN_RANGE[0] + len(runs)) % len(DOMAIN_RANGE)
        runs.append(Run(design, 0 if design == 'base' else sessions, window_s,
                        DOMAIN_RANGE[offset], args.executor))
    return runs


def machine_summary() -> str:
    return (f'{os.cpu_count()} cores, loadavg {loadavg()}, Python '
            f'{sys.version.split()[0]}, {time.strftime("%Y-%m-%d %H:%M:%S")}')


def report(runs: Sequence[Run], args: argparse.Namespace, meta: dict) -> None:
    """Print the table and write the JSON and the chart."""
    print()
    print(format_table(runs))
    print(f'\nmachine at start: {meta["machine_at_start"]}')
    print(f'machine at end:   {meta["machine_at_end"]}')
    print('receiver CPU = utime + stime of the receiver process (all threads) over the '
          'measurement, in % of one core; machine busy = all CPUs of the machine, in cores.')
    if any(run.design == 'C' for run in runs):
        print(f'C: {NOTE_BATCHING}.')
    args.output.mkdir(parents=True, exist_ok=True)
    json_path = args.output / 'heartbeat_designs.json'
    png_path = args.output / 'heartbeat_designs.png'
    write_json(runs, meta, json_path)
    write_chart(runs, png_path)
    print(f'wrote {json_path} and {png_path}')


def execute(run: Run, args: argparse.Namespace) -> Run:
    """Run one design; a failure becomes a note of its row, and the bench goes on."""
    workdir = args.output / 'logs' / run.label.replace(' ', '_').replace('@', '_')
    try:
        return DesignRun(run, args, workdir).execute()
    except (RuntimeError, TimeoutError, OSError) as error:
        run.notes.append(f'failed: {error}')
        print(f'[{run.label}] failed: {error}', flush=True)
        return run


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run every planned design, then report."""
    args = parse_args(argv)
    # Ctrl-C and SIGTERM unwind through `finally`, which stops the children (a shell may have
    # started the bench with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    meta = {'command': ' '.join([Path(sys.executable).name, *sys.argv]),
            'machine_at_start': machine_summary(), 'options': {
                k: str(v) for k, v in vars(args).items()}}
    print(f'heartbeat designs bench: {meta["machine_at_start"]}', flush=True)
    runs = plan(args)
    done: List[Run] = []
    try:
        for run in runs:
            done.append(execute(run, args))
    except KeyboardInterrupt:
        print('\ninterrupted; children stopped', flush=True)
        print(format_table(done))
        return 130
    meta['machine_at_end'] = machine_summary()
    report(done, args, meta)
    return 0


if __name__ == '__main__':
    sys.exit(main())
