"""
Measure the real session manager at scale: expiry overhead and CPU with up to 1024 sessions.

It measures (1) the expiry-check overhead, `expiry time - window` with the window counted
from the client's last liveliness assertion, for windows of 100 ms and 2 s with 1, 100 and 1024
live sessions, and (2) the manager's CPU (% of one core) with 1024 sessions heartbeating at the
default 2 s window (target: under 5 %).

A `SimRobot` runs the real session manager and a DC motor driver on a simulated chip as
processes. The load generator runs in this process, in a ROS context of its own: one node with
a command publisher (the manager waits to discover it before answering a start request), one
heartbeat writer per session (`heartbeat_qos(window)`, a topic of its own under
`/session_manager/heartbeat/`), and one plain thread that asserts every writer's liveliness
at the client library's rate (`session_client.assertion_period_s`), spread evenly over the
period.

Background sessions use the 2 s window. For each number of sessions N (ascending), N - 1
background sessions run while a probe session with the window under test is measured K times:
it drives the motor at 0.5, stops asserting, and the bench records its EXPIRED event (the
manager's stamp) and PWM 0 on the chip. Then one more background session is started and the
manager's CPU is measured over a steady interval with N sessions and no probe.

Run from the repository root with the venv's Python:

    .venv/bin/python bench/session_scale.py [--sessions 1,100,1024] [--windows 0.1,2]
        [--repeats 5] [--cpu-seconds 20]

The table is printed and written as JSON, with a plot, to bench_output/session_scale.*.
"""

import argparse
from dataclasses import asdict, dataclass, field
import heapq
import itertools
import json
import os
from pathlib import Path
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from lifecycle_msgs.msg import State
import rclpy
from rclpy.context import Context
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions

import viam_session
from viam_session.client.session_client import assertion_period_s
from viam_session.service_call import call_service
from viam_session.sessions.command_auth import CommandSigner
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.sessions.manager_node import STATE_NAMES
from viam_session.time_convert import seconds_to_duration, time_to_seconds
from viam_session_harness.ros_domains import domain_range
from viam_session_harness.sim_robot import MotorSpec, SimRobot
from viam_session_interfaces.msg import Heartbeat, SessionCommand, SessionEvent
from viam_session_interfaces.srv import ListSessions, StartSession

MANAGER = '/session_manager'
MOTOR = 'motor'
POWER = 0.5
BACKGROUND_WINDOW_S = 2.0
CPU_TARGET_PCT = 5.0
DOMAIN_RANGE = domain_range(range(216, 231))
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')
PAGE_SIZE = os.sysconf('SC_PAGE_SIZE')
# The assertion thread never sleeps less than this: with 1024 writers it asserts a few at each
# wake-up instead of waking up 2560 times a second.
MIN_SLEEP_S = 0.001
START_TIMEOUT_S = 30.0
EVENT_MARGIN_S = 30.0
# A probe is stopped only once it has outlived the deadline of a session that never became
# alive (start + window) by this much, so the expiry measured is the liveliness one.
HOLD_MARGIN = 0.2
HOLD_MARGIN_S = 0.1
PROGRESS_PARTS = 8
# The manager fails at 1024 sessions (see the report); the bench restarts it at most this often.
MAX_RESTARTS = 12


class ManagerStalled(RuntimeError):
    """The session manager left a start request unanswered."""


def _say(text: str) -> None:
    print(text, flush=True)


# --- the load generator ------------------------------------------------------------------------


@dataclass(eq=False)
class Writer:
    """One session's heartbeat writer and its assertion schedule (monotonic ns)."""

    topic: str
    window_s: float
    publisher: Publisher
    period_ns: int
    due_ns: int = 0
    last_ns: int = 0
    active: bool = True
    handle: str = ''
    signer: Optional[CommandSigner] = None
    started_s: float = 0.0  # when the manager answered the start request (monotonic)


@dataclass
class AssertionStats:
    """What the assertion thread did since the last reset."""

    assertions: int = 0
    max_gap_ratio: float = 0.0  # longest gap between two assertions of one writer / its period
    max_gap_topic: str = ''


class LoadGenerator:
    """Many sessions from one node, in a ROS context of its own; one thread asserts them all."""

    def __init__(self, domain_id: int) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(f'session_scale_{secrets.token_hex(3)}', context=self._context,
                         enable_rosout=False, start_parameter_services=False)
        self._commands = self.node.create_publisher(SessionCommand, f'{MANAGER}/command', 10)
        self._start = self.node.create_client(StartSession, f'{MANAGER}/start_session')
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()
        self._lock = threading.Lock()
        self._heap: List[Tuple[int, int, Writer]] = []
        self._serial = itertools.count()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stats = AssertionStats()
        self._thread_id = 0
        self._asserter = threading.Thread(target=self._assert_loop, daemon=True)
        self._asserter.start()

    # --- sessions ------------------------------------------------------------------------------

    def add_writer(self, topic: str, window_s: float) -> Writer:
        """Create a heartbeat writer, assert its liveliness once and schedule it."""
        publisher = self.node.create_publisher(
            Heartbeat, topic, heartbeat_qos(window_s),
            event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))
        writer = Writer(topic, window_s, publisher,
                        period_ns=int(assertion_period_s(window_s) * 1e9))
        with self._lock:
            publisher.assert_liveliness()
            writer.last_ns = time.monotonic_ns()
            writer.due_ns = writer.last_ns + writer.period_ns
            self._push(writer)
        self._wake.set()
        return writer

    def start_session(self, writer: Writer, client: str) -> str:
        """Ask the manager for a session on `writer`'s topic; return its handle."""
        request = StartSession.Request(
            client=client, client_node=self.node.get_fully_qualified_name(),
            heartbeat_topic=writer.topic)
        request.requested_window = seconds_to_duration(writer.window_s)
        response = call_service(self._start, request, START_TIMEOUT_S)
        if not response.success:
            raise RuntimeError(f'start refused for {client}: {response.message}')
        writer.handle = response.handle
        writer.signer = CommandSigner(response.session_id, response.handle,
                                      response.command_sequence)
        writer.started_s = time.monotonic()
        return response.handle

    def command(self, writer: Writer, resource: str, value: float) -> None:
        """Publish one command of `writer`'s session, tagged with its secret."""
        sequence, tag = writer.signer.sign(resource, value)
        self._commands.publish(SessionCommand(handle=writer.handle, resource=resource,
                                              value=value, sequence=sequence, tag=tag))

    def stop_writer(self, writer: Writer) -> int:
        """Stop asserting `writer`; return when its last assertion returned (monotonic ns)."""
        with self._lock:
            writer.active = False
            return writer.last_ns

    def destroy_writer(self, writer: Writer) -> None:
        """Stop asserting `writer` and destroy its publisher."""
        self.stop_writer(writer)
        self.node.destroy_publisher(writer.publisher)

    def spread(self, writers: Sequence[Writer]) -> None:
        """Spread the next assertions of `writers` (one period each) evenly over the period."""
        if not writers:
            return
        with self._lock:
            base = time.monotonic_ns()
            for index, writer in enumerate(writers):
                writer.due_ns = base + writer.period_ns * index // len(writers)
                self._push(writer)
        self._wake.set()

    # --- measurements --------------------------------------------------------------------------

    def take_stats(self) -> AssertionStats:
        """Return the assertion statistics since the last call and reset them."""
        with self._lock:
            stats, self._stats = self._stats, AssertionStats()
        return stats

    def thread_cpu_s(self) -> float:
        """Return the CPU time of the assertion thread so far."""
        return task_cpu_seconds(os.getpid(), self._thread_id)

    def close(self) -> None:
        """Stop the assertion thread and the ROS context."""
        self._stopping.set()
        self._wake.set()
        self._asserter.join(timeout=5)
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self._context)

    # --- the assertion thread ------------------------------------------------------------------

    def _push(self, writer: Writer) -> None:
        heapq.heappush(self._heap, (writer.due_ns, next(self._serial), writer))

    def _assert_loop(self) -> None:
        self._thread_id = threading.get_native_id()
        while not self._stopping.is_set():
            with self._lock:
                next_due = self._assert_due()
            timeout = None if next_due is None else max(
                (next_due - time.monotonic_ns()) * 1e-9, MIN_SLEEP_S)
            self._wake.wait(timeout)
            self._wake.clear()

    def _assert_due(self) -> Optional[int]:
        """Assert every writer that is due (lock held); return the next due instant."""
        now = time.monotonic_ns()
        while self._heap and self._heap[0][0] <= now:
            due, _, writer = heapq.heappop(self._heap)
            if not writer.active or due != writer.due_ns:
                continue  # stopped, or rescheduled by spread()
            writer.publisher.assert_liveliness()
            asserted = time.monotonic_ns()
            self._record(writer, asserted)
            writer.due_ns = due + writer.period_ns
            if writer.due_ns < asserted:  # more than a period behind: do not catch up in a burst
                writer.due_ns = asserted + writer.period_ns
            self._push(writer)
            now = asserted
        return self._heap[0][0] if self._heap else None

    def _record(self, writer: Writer, asserted_ns: int) -> None:
        ratio = (asserted_ns - writer.last_ns) / writer.period_ns
        if ratio > self._stats.max_gap_ratio:
            self._stats.max_gap_ratio, self._stats.max_gap_topic = ratio, writer.topic
        writer.last_ns = asserted_ns
        self._stats.assertions += 1


# --- what /proc says ---------------------------------------------------------------------------


def _stat_fields(path: Path) -> List[str]:
    text = path.read_text()
    return text[text.rindex(')') + 2:].split()


def cpu_seconds(pid: int) -> float:
    """Return the process's user + system CPU time (all threads) in seconds."""
    fields = _stat_fields(Path(f'/proc/{pid}/stat'))
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def task_cpu_seconds(pid: int, tid: int) -> float:
    """Return one thread's user + system CPU time in seconds."""
    fields = _stat_fields(Path(f'/proc/{pid}/task/{tid}/stat'))
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def threads_cpu_seconds(pid: int) -> Dict[str, float]:
    """Return CPU seconds per thread of a process, keyed by '<name>/<tid>'."""
    result = {}
    for task in Path(f'/proc/{pid}/task').iterdir():
        try:
            text = (task / 'stat').read_text()
        except OSError:
            continue  # the thread has ended
        name = text[text.index('(') + 1:text.rindex(')')]
        fields = text[text.rindex(')') + 2:].split()
        result[f'{name}/{task.name}'] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return result


def rss_mib(pid: int) -> float:
    """Return the resident set size of a process in MiB."""
    return int(_stat_fields(Path(f'/proc/{pid}/stat'))[21]) * PAGE_SIZE / 2**20


def loadavg() -> str:
    """Return the 1, 5 and 15 minute load averages as /proc/loadavg gives them."""
    return ' '.join(Path('/proc/loadavg').read_text().split()[:3])


# --- results -----------------------------------------------------------------------------------


@dataclass
class ProbeRun:
    """One probe: how long after its last assertion + window the robot reacted (ms)."""

    expiry_ms: Optional[float] = None
    pwm_zero_ms: Optional[float] = None
    error: str = ''


@dataclass
class ExpiryResult:
    """The probe runs of one (window, sessions) configuration."""

    window_s: float
    sessions: int
    runs: List[ProbeRun] = field(default_factory=list)
    discarded: List[ProbeRun] = field(default_factory=list)
    generator_max_gap_ratio: float = 0.0

    def values(self, name: str) -> List[float]:
        return [getattr(run, name) for run in self.runs if getattr(run, name) is not None]


@dataclass
class CpuResult:
    """The manager's CPU with `sessions` sessions at the 2 s window, no probe."""

    sessions: int
    seconds: float
    manager_pct: float
    manager_rss_mib: float
    manager_threads: List[Tuple[str, float]]
    generator_thread_pct: float
    bench_process_pct: float
    assertions_per_s: float
    generator_max_gap_ratio: float
    live_sessions_listed: int
    manager_failed: Optional[str]


@dataclass
class StartUp:
    """How long starting a batch of background sessions took."""

    first: int
    last: int
    seconds: float
    manager_cpu_s: float


@dataclass
class Report:
    """Everything one run measured."""

    command: str
    domain_id: int
    loadavg_start: str
    transports: str = ''  # FASTDDS_BUILTIN_TRANSPORTS as set
    manager_transports: str = ''  # what the manager's threads show it really uses
    source: str = ''
    loadavg_end: str = ''
    total_s: float = 0.0
    start_ups: List[StartUp] = field(default_factory=list)
    expiry: List[ExpiryResult] = field(default_factory=list)
    cpu: List[CpuResult] = field(default_factory=list)
    false_expiries: List[dict] = field(default_factory=list)
    manager_failures: List[dict] = field(default_factory=list)
    rejections: List[dict] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


# --- the phases --------------------------------------------------------------------------------


class Bench:
    """The robot, the generator and the background sessions, grown as the run goes."""

    def __init__(self, args: argparse.Namespace, report: Report, workdir: Path) -> None:
        self.report = report
        self.background: List[Writer] = []
        self.robot: Optional[SimRobot] = None
        self.generator: Optional[LoadGenerator] = None
        self._env = dict(os.environ, ROS_DOMAIN_ID=str(report.domain_id))
        self._parameters = [f'max_sessions:={max(1024, max(args.sessions) + 1)}']
        self._workdir = workdir
        self._robots = 0
        self._log_offset = 0
        self._token = secrets.token_hex(3)
        self._last_start = time.monotonic()

    # --- the robot -----------------------------------------------------------------------------

    @property
    def manager_pid(self) -> int:
        return self.robot.process('session_manager').pid

    def start_robot(self) -> None:
        """
        Start a fresh robot (manager and motor driver processes) and a fresh load generator.

        A generator that knew an earlier manager may still list its services, and would send
        its first start request before the new manager's service has matched it.
        """
        self._robots += 1
        self.generator = LoadGenerator(self.report.domain_id)
        workdir = self._workdir / f'robot{self._robots}'
        robot = SimRobot(workdir=workdir, motors=(MotorSpec(MOTOR, 12, 16),), env=self._env,
                         default_window_s=BACKGROUND_WINDOW_S,
                         manager_parameters=self._parameters)
        self.robot = robot.__enter__()
        self._log_offset = 0
        threads = threads_cpu_seconds(self.manager_pid)
        self.report.manager_transports = '+'.join(
            kind.upper() for kind in ('shm', 'udp')
            if any(name.startswith(f'dds.{kind}.') for name in threads))
        _say(f'robot up (manager pid {self.manager_pid}); logs in {workdir}')

    def close_robot(self) -> None:
        """Record what the robot rejected, then stop its processes and the generator."""
        robot, self.robot = self.robot, None
        generator, self.generator = self.generator, None
        self.background = []
        try:
            if robot is not None:
                self.report.rejections += [
                    {'handle': s.message.handle, 'subject': s.message.subject,
                     'reason': s.message.reason} for s in robot.rejections.snapshot()]
                robot.close()
        finally:
            if generator is not None:
                generator.close()

    def manager_failure(self) -> Optional[str]:
        """Return the manager's exit or the traceback it logged since the last check, if any."""
        code = self.robot.process('session_manager').poll()
        if code is not None:
            return f'session manager exited with code {code}'
        with open(self.robot.log_path('session_manager'), encoding='utf-8') as log:
            log.seek(self._log_offset)
            text = log.read()
            self._log_offset = log.tell()
        if 'Traceback' not in text:
            return None
        return _traceback(text[text.index('Traceback'):].splitlines())

    def ensure_healthy(self, sessions: int, after: str, failure: Optional[str] = None) -> bool:
        """
        Check the manager (or take `failure` as found); return False if it is fine.

        If it failed, record the failure, restart the robot, start `sessions` background
        sessions again and return True.
        """
        failure = failure or self.manager_failure()
        if failure is None:
            return False
        self.check_background()
        self.report.manager_failures.append(
            {'robot': self._robots, 'live_sessions': len(self.background), 'after': after,
             'log': str(self.robot.log_path('session_manager')), 'failure': failure})
        _say(f'  MANAGER FAILURE (robot {self._robots}) found after {after}:\n    '
             + failure.replace('\n', '\n    '))
        if len(self.report.manager_failures) > MAX_RESTARTS:
            raise RuntimeError(f'more than {MAX_RESTARTS} manager failures; giving up')
        _say('  restarting the robot and the background sessions')
        self.close_robot()
        self.start_robot()
        self.prepare(sessions)
        return True

    # --- background sessions -------------------------------------------------------------------

    def prepare(self, sessions: int) -> None:
        """Start background sessions up to `sessions` and let them settle; restart on a stall."""
        try:
            self.grow(sessions)
        except ManagerStalled as stall:
            self.ensure_healthy(sessions, 'a start request', failure=str(stall))
            return
        self.settle()

    def grow(self, target: int) -> None:
        """Start background sessions (2 s window) until there are `target`, with progress."""
        first = len(self.background)
        if target <= first:
            return
        started, cpu_before = time.monotonic(), cpu_seconds(self.manager_pid)
        step = max(1, -(-(target - first) // PROGRESS_PARTS))
        for index in range(first, target):
            writer = self.generator.add_writer(
                f'{MANAGER}/heartbeat/scale_{self._token}_{self._robots}_{index:04d}',
                BACKGROUND_WINDOW_S)
            try:
                self.generator.start_session(writer, f'scale_{index:04d}')
            except TimeoutError as error:
                raise ManagerStalled(f'{error} ({index} sessions live); '
                                     + self._stall_diagnosis()) from error
            self.background.append(writer)
            done = index + 1
            if (done - first) % step == 0 or done == target:
                _say(f'  started {done}/{target} sessions, {time.monotonic() - started:.1f} s')
        self._last_start = time.monotonic()
        self.report.start_ups.append(StartUp(
            first + 1, target, self._last_start - started,
            cpu_seconds(self.manager_pid) - cpu_before))
        self.generator.spread(self.background)

    def _stall_diagnosis(self) -> str:
        """Describe a manager that left a start request unanswered; dump its stacks if gdb is."""
        log = self.robot.log_path('session_manager').read_text(encoding='utf-8')
        text = f'its log shows {log.count(" started for ")} sessions started; '
        try:
            listed = self.robot.call(f'{MANAGER}/list_sessions', ListSessions.Request(),
                                     timeout_s=5.0)
            text += f'it answers list_sessions ({len(listed.sessions)} sessions); '
        except TimeoutError:
            text += 'it does not answer list_sessions within 5 s either; '
        pid = self.manager_pid
        before = threads_cpu_seconds(pid)
        threading.Event().wait(1.0)
        busy = busiest_threads(before, threads_cpu_seconds(pid), 1.0)
        text += f'busiest threads over 1 s (%): {busy}'
        if shutil.which('gdb'):
            stacks = self.robot.workdir / 'manager_stacks.txt'
            with open(stacks, 'w', encoding='utf-8') as out:
                subprocess.run(['gdb', '-p', str(pid), '-batch', '-ex', 'thread apply all bt 30'],
                               stdout=out, stderr=subprocess.DEVNULL, timeout=60, check=False)
            text += f'; thread stacks in {stacks}'
        return text

    def settle(self) -> None:
        """Wait until every background session has had a full window to become alive."""
        deadline = self._last_start + BACKGROUND_WINDOW_S * (1 + HOLD_MARGIN) + HOLD_MARGIN_S
        remaining = deadline - time.monotonic()
        if remaining > 0:
            threading.Event().wait(remaining)
        self.check_background()

    def check_background(self) -> None:
        """Record any background session the manager ended (a false expiry)."""
        ids = {writer.handle: writer for writer in self.background}
        seen = {entry['handle'] for entry in self.report.false_expiries}
        for stamped in self.robot.events.snapshot():
            event = stamped.message
            if event.handle in ids and event.state != SessionEvent.STARTED \
                    and event.handle not in seen:
                self._record_false_expiry(ids[event.handle], event)
                seen.add(event.handle)

    def _record_false_expiry(self, writer: Writer, event: SessionEvent) -> None:
        wall_minus_mono = time.time() - time.monotonic()
        ended = time_to_seconds(event.stamp) - wall_minus_mono
        entry = {'handle': event.handle, 'topic': writer.topic,
                 'state': STATE_NAMES.get(event.state, event.state), 'reason': event.reason,
                 'ms_after_start': round((ended - writer.started_s) * 1000, 1),
                 'robot': self._robots}
        self.report.false_expiries.append(entry)
        _say(f'  FALSE EXPIRY of a background session: {entry}')

    # --- probes --------------------------------------------------------------------------------

    def probe_configuration(self, window_s: float, sessions: int, repeats: int) -> None:
        """
        Measure the probe `repeats` times with `window_s` among `sessions` sessions.

        A run that failed on a manager found failed right after it is discarded and run
        again on the restarted robot (at most `repeats` times).
        """
        result = ExpiryResult(window_s, sessions)
        self.generator.take_stats()
        while len(result.runs) < repeats:
            repeat = len(result.runs) + 1
            run = self._probe_once(window_s, f'probe_{self._token}_{sessions}_{repeat}')
            _say(f'  window {window_s * 1000:.0f} ms, {sessions} sessions, run '
                 f'{repeat}/{repeats}: ' + (
                     f'FAILED {run.error}' if run.error else
                     f'expiry - window {run.expiry_ms:.1f} ms, PWM 0 - window '
                     f'{run.pwm_zero_ms:.1f} ms'))
            self.check_background()
            failed = self.ensure_healthy(sessions - 1, f'probe {window_s * 1000:.0f} ms run '
                                                       f'{repeat}')
            if run.error and failed and len(result.discarded) < repeats:
                _say(f'  run {repeat} discarded (the manager had failed); running it again')
                result.discarded.append(run)
                continue
            if run.error:
                self.report.errors.append(f'{window_s * 1000:.0f} ms, {sessions} sessions, '
                                          f'run {repeat}: {run.error}')
            result.runs.append(run)
        result.generator_max_gap_ratio = self.generator.take_stats().max_gap_ratio
        self.report.expiry.append(result)

    def _probe_once(self, window_s: float, name: str) -> ProbeRun:
        writer = self.generator.add_writer(f'{MANAGER}/heartbeat/{name}', window_s)
        try:
            return self._measure_probe(writer, name)
        except (TimeoutError, RuntimeError) as error:
            return ProbeRun(error=str(error))
        finally:
            self.generator.destroy_writer(writer)

    def _measure_probe(self, writer: Writer, name: str) -> ProbeRun:
        window_s = writer.window_s
        handle = self.generator.start_session(writer, name)
        commanded_ns = time.monotonic_ns()
        self.generator.command(writer, f'/{MOTOR}', POWER)
        self.robot.wait_for_duty(MOTOR, lambda duty: abs(duty - POWER) < 1e-9,
                                 after_ns=commanded_ns, timeout_s=EVENT_MARGIN_S)
        # A session whose writer never became alive expires one window after its start.
        hold_s = writer.started_s + window_s * (1 + HOLD_MARGIN) + HOLD_MARGIN_S
        try:
            early = self.robot.wait_for_event(handle, SessionEvent.EXPIRED,
                                              timeout_s=max(hold_s - time.monotonic(), 0.0))
        except TimeoutError:
            early = None
        if early is not None:
            raise RuntimeError(f'expired while still asserting: {early.message.reason}')
        last_ns = self.generator.stop_writer(writer)
        expired = self.robot.wait_for_event(handle, SessionEvent.EXPIRED,
                                            timeout_s=window_s + EVENT_MARGIN_S)
        wall_minus_mono = time.time() - time.monotonic()
        pwm_zero = self.robot.wait_for_duty(MOTOR, lambda duty: duty == 0.0, after_ns=last_ns,
                                            timeout_s=EVENT_MARGIN_S)
        self.robot.wait_for_transition(MOTOR, State.PRIMARY_STATE_INACTIVE, after_ns=last_ns,
                                       timeout_s=EVENT_MARGIN_S)
        expiry_s = time_to_seconds(expired.message.stamp) - wall_minus_mono
        return ProbeRun(expiry_ms=(expiry_s - last_ns * 1e-9 - window_s) * 1000,
                        pwm_zero_ms=(pwm_zero.t_ns - last_ns) * 1e-6 - window_s * 1000)

    # --- CPU -----------------------------------------------------------------------------------

    def measure_cpu(self, seconds: float) -> None:
        """Measure the manager's CPU over `seconds` with the background sessions only."""
        pid = self.manager_pid
        self.generator.take_stats()
        before = (time.monotonic(), cpu_seconds(pid), threads_cpu_seconds(pid),
                  self.generator.thread_cpu_s(), cpu_seconds(os.getpid()))
        threading.Event().wait(seconds)
        after = (time.monotonic(), cpu_seconds(pid), threads_cpu_seconds(pid),
                 self.generator.thread_cpu_s(), cpu_seconds(os.getpid()))
        stats = self.generator.take_stats()
        wall = after[0] - before[0]
        result = CpuResult(
            sessions=len(self.background), seconds=wall,
            manager_pct=percent(after[1] - before[1], wall), manager_rss_mib=rss_mib(pid),
            manager_threads=busiest_threads(before[2], after[2], wall),
            generator_thread_pct=percent(after[3] - before[3], wall),
            bench_process_pct=percent(after[4] - before[4], wall),
            assertions_per_s=stats.assertions / wall,
            generator_max_gap_ratio=stats.max_gap_ratio,
            live_sessions_listed=self.count_live(),
            manager_failed=self.manager_failure())
        self.report.cpu.append(result)
        self.check_background()
        _say(f'  {result.sessions} sessions: manager {result.manager_pct:.2f} % of a core, '
             f'RSS {result.manager_rss_mib:.0f} MiB; {result.assertions_per_s:.0f} assertions/s;'
             f' {result.live_sessions_listed} sessions listed live')

    def count_live(self) -> int:
        """Return how many background sessions the manager lists as live."""
        response = self.robot.call(f'{MANAGER}/list_sessions', ListSessions.Request())
        listed = {info.handle for info in response.sessions}
        return sum(1 for writer in self.background if writer.handle in listed)


def _traceback(lines: List[str]) -> str:
    """Return the first traceback in log `lines` (other log lines left out), shortened."""
    found = [lines[0]]
    for line in lines[1:]:
        if not line.strip() or line.startswith(('[', 'Traceback')):
            continue  # a ROS log line or a blank line written in between
        found.append(line)
        if not line.startswith(' '):
            break  # the exception line ends the traceback
    return '\n'.join(found[:1] + found[-7:])


def percent(cpu_s: float, wall_s: float) -> float:
    """Return CPU seconds over a wall interval as % of one core."""
    return 100.0 * cpu_s / wall_s if wall_s > 0 else 0.0


def busiest_threads(before: Dict[str, float], after: Dict[str, float], wall_s: float,
                    count: int = 3) -> List[Tuple[str, float]]:
    """Return the `count` threads that used the most CPU between two samples (% of a core)."""
    used = sorted(((key, after[key] - before.get(key, 0.0)) for key in after),
                  key=lambda item: -item[1])[:count]
    return [(key.split('/')[0], round(percent(cpu_s, wall_s), 2)) for key, cpu_s in used]


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, report: Report, workdir: Path) -> None:
    """Start the robot and the generator, then measure every configuration."""
    bench = Bench(args, report, workdir)
    try:
        bench.start_robot()
        for sessions in args.sessions:
            measure_sessions(bench, sessions, args)
    finally:
        bench.close_robot()


def measure_sessions(bench: Bench, sessions: int, args: argparse.Namespace) -> None:
    """Run the probes among `sessions` - 1 background sessions, then the CPU with `sessions`."""
    _say(f'[{sessions} sessions] starting {sessions - 1} background sessions '
         f'({BACKGROUND_WINDOW_S:g} s window) for the probes')
    bench.prepare(sessions - 1)
    bench.ensure_healthy(sessions - 1, 'start-up')
    for window_s in args.windows:
        bench.probe_configuration(window_s, sessions, args.repeats)
    bench.ensure_healthy(sessions - 1, 'the probes')
    _say(f'[{sessions} sessions] CPU: {sessions} background sessions, no probe, '
         f'{args.cpu_seconds:g} s')
    bench.prepare(sessions)
    bench.ensure_healthy(sessions, 'start-up')
    bench.measure_cpu(args.cpu_seconds)


# --- output ------------------------------------------------------------------------------------


def _summary(values: Iterable[float]) -> str:
    values = list(values)
    if not values:
        return f'{"-":>7} {"-":>7} {"-":>7}'
    return (f'{min(values):7.1f} {statistics.median(values):7.1f} '
            f'{max(values):7.1f}')


def print_tables(report: Report) -> None:
    """Print the expiry and CPU tables and what else the run found."""
    _say('\nexpiry overhead, ms after (last assertion + window)')
    _say(f'{"window":>8} {"sessions":>8} {"runs ok":>7} {"disc.":>5} | '
         f'{"expiry (manager stamp)":^23} | {"PWM 0 on the chip":^23} | gen. max gap')
    _say(f'{"":>8} {"":>8} {"":>7} {"":>5} | {"min":>7} {"median":>7} {"max":>7} | '
         f'{"min":>7} {"median":>7} {"max":>7} | (x period)')
    for result in report.expiry:
        ok = len(result.values('expiry_ms'))
        _say(f'{result.window_s * 1000:6.0f}ms {result.sessions:8d} {ok:3d}/{len(result.runs):<3d}'
             f' {len(result.discarded):5d} | {_summary(result.values("expiry_ms"))} | '
             f'{_summary(result.values("pwm_zero_ms"))} | {result.generator_max_gap_ratio:.2f}')
    _say('(disc.: runs discarded because the manager was found failed right after them)')
    _say(f'\nsession manager CPU, sessions at the {BACKGROUND_WINDOW_S:g} s window, '
         f'one assertion every {assertion_period_s(BACKGROUND_WINDOW_S) * 1e3:g} ms, no probe '
         f'(target < {CPU_TARGET_PCT} %)')
    _say(f'{"sessions":>8} {"manager %":>9} {"RSS MiB":>7} {"listed":>6} {"assert/s":>8} '
         f'{"gen.thr %":>9} {"bench %":>7} | busiest manager threads (%)')
    for cpu in report.cpu:
        threads = ', '.join(f'{name} {pct:.2f}' for name, pct in cpu.manager_threads)
        _say(f'{cpu.sessions:8d} {cpu.manager_pct:9.2f} {cpu.manager_rss_mib:7.0f} '
             f'{cpu.live_sessions_listed:6d} {cpu.assertions_per_s:8.0f} '
             f'{cpu.generator_thread_pct:9.2f} {cpu.bench_process_pct:7.2f} | {threads}'
             + (' | MANAGER FAILED during the interval' if cpu.manager_failed else ''))
    print_findings(report)


def print_findings(report: Report) -> None:
    """Print start-up times, false expiries, rejections, errors, load and duration."""
    for start_up in report.start_ups:
        _say(f'start-up of sessions {start_up.first}..{start_up.last}: '
             f'{start_up.seconds:.1f} s ({start_up.manager_cpu_s:.1f} s manager CPU)')
    _say(f'session manager failures: {len(report.manager_failures)}')
    for entry in report.manager_failures:
        _say(f"  robot {entry['robot']}, {entry['live_sessions']} live sessions, "
             f"after {entry['after']} "
             f"({entry['log']}):\n    " + entry['failure'].replace('\n', '\n    '))
    failed_robots = {entry['robot'] for entry in report.manager_failures}
    after_failure = [e for e in report.false_expiries if e['robot'] in failed_robots]
    _say(f'false expiries of background sessions: {len(report.false_expiries)} '
         f'({len(after_failure)} on a manager that had failed)')
    for entry in report.false_expiries:
        _say(f'  {entry}')
    _say(f'rejections published by the manager: {len(report.rejections)}')
    for entry in report.rejections[:10]:
        _say(f'  {entry}')
    for error in report.errors:
        _say(f'error: {error}')
    _say(f'Fast DDS transports the manager uses (its threads): {report.manager_transports} '
         f'(FASTDDS_BUILTIN_TRANSPORTS={report.transports})')
    _say(f'loadavg at start {report.loadavg_start}, at end {report.loadavg_end}; '
         f'{os.cpu_count()} cores; ROS_DOMAIN_ID {report.domain_id}; '
         f'whole run {report.total_s:.0f} s')


def write_json(report: Report, path: Path) -> None:
    """Write the report as JSON."""
    path.write_text(json.dumps(asdict(report), indent=2) + '\n', encoding='utf-8')


def plot(report: Report, path: Path) -> Optional[Path]:
    """Plot expiry overhead per configuration and manager CPU per session count as a PNG."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(13, 5),
                                            gridspec_kw={'width_ratios': [2, 1]})
    _plot_expiry(left, report)
    _plot_cpu(right, report)
    figure.suptitle(f'Session manager at scale (loadavg {report.loadavg_start} -> '
                    f'{report.loadavg_end}, {os.cpu_count()} cores)')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def _plot_expiry(axes, report: Report) -> None:
    labels = []
    for index, result in enumerate(report.expiry):
        labels.append(f'{result.window_s * 1000:.0f} ms\n{result.sessions} sess.')
        for name, offset, marker, color, label in (
                ('expiry_ms', -0.12, 'o', 'tab:blue', 'expiry (manager stamp)'),
                ('pwm_zero_ms', 0.12, 'x', 'tab:red', 'PWM 0 (chip)')):
            values = result.values(name)
            jitter = [index + offset + random.uniform(-0.05, 0.05) for _ in values]
            axes.scatter(jitter, values, marker=marker, color=color, s=25,
                         label=label if index == 0 else None)
            if values:
                median = statistics.median(values)
                axes.hlines(median, index + offset - 0.1, index + offset + 0.1, color=color)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylabel('ms after last assertion + window')
    axes.set_title('Expiry overhead (probe session; bars: medians)')
    axes.legend(loc='upper left')
    axes.grid(axis='y', alpha=0.3)


def _plot_cpu(axes, report: Report) -> None:
    names = [str(cpu.sessions) for cpu in report.cpu]
    values = [cpu.manager_pct for cpu in report.cpu]
    bars = axes.bar(names, values, color='tab:green')
    for bar, cpu in zip(bars, report.cpu):
        axes.annotate(f'{cpu.manager_pct:.2f} %\n{cpu.manager_rss_mib:.0f} MiB',
                      (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha='center', va='bottom', fontsize='small')
    axes.axhline(CPU_TARGET_PCT, color='tab:red', linestyle='--', label='target 5 %')
    axes.set_xlabel(f'sessions at the {BACKGROUND_WINDOW_S:g} s window')
    axes.set_ylabel('session manager CPU, % of one core')
    axes.set_title('Manager CPU')
    axes.set_ylim(0, max(values + [CPU_TARGET_PCT]) * 1.3)
    axes.legend(loc='upper left')


# --- main --------------------------------------------------------------------------------------


def _numbers(kind: type):
    def parse(text: str) -> list:
        values = sorted({kind(part) for part in text.split(',') if part.strip()})
        if not values or any(value <= 0 for value in values):
            raise argparse.ArgumentTypeError(f'expected positive numbers, got {text!r}')
        return values
    return parse


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--sessions', type=_numbers(int), default=[1, 100, 1024],
                        help='live session counts, comma-separated (default 1,100,1024)')
    parser.add_argument('--windows', type=_numbers(float), default=[0.1, 2.0],
                        help='probe windows in seconds, comma-separated (default 0.1,2)')
    parser.add_argument('--repeats', type=int, default=5, help='probes per configuration')
    parser.add_argument('--cpu-seconds', type=float, default=20.0,
                        help='length of each CPU measurement (default 20)')
    parser.add_argument('--domain-id', type=int, default=random.choice(DOMAIN_RANGE),
                        help='ROS domain (default: random in 216-230)')
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    return parser.parse_args(argv)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark; exit 1 on errors or false expiries."""
    args = parse_args(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    # As the robot's processes (see local_ros_environment): no shared memory left behind.
    os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'UDPv4')
    signal.signal(signal.SIGTERM, _raise_interrupt)
    args.output.mkdir(parents=True, exist_ok=True)
    report = Report(command=' '.join([Path(sys.executable).name, *sys.argv]),
                    domain_id=args.domain_id, loadavg_start=loadavg(),
                    transports=os.environ['FASTDDS_BUILTIN_TRANSPORTS'],
                    source=str(Path(viam_session.__file__).parent))
    began = time.monotonic()
    _say(f'loadavg {report.loadavg_start}; ROS_DOMAIN_ID {args.domain_id}; Fast DDS transports '
         f'{report.transports}; viam_session from {report.source}')
    try:
        run(args, report, (args.output / 'session_scale_run').resolve())
    except (TimeoutError, RuntimeError) as error:
        report.errors.append(f'aborted: {error}')
    except KeyboardInterrupt:
        report.errors.append('interrupted')
    finally:
        report.loadavg_end = loadavg()
        report.total_s = time.monotonic() - began
    write_json(report, args.output / 'session_scale.json')
    print_tables(report)
    picture = plot(report, args.output / 'session_scale.png')
    _say(f'wrote {args.output / "session_scale.json"}' + (f' and {picture}' if picture else ''))
    if 'interrupted' in report.errors:
        return 130
    return 1 if report.errors or report.false_expiries or report.manager_failures else 0


if __name__ == '__main__':
    sys.exit(main())
