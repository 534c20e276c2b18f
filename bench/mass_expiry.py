"""
Measure what a mass expiry does to a live session's motor: its longest gap on the chip.

A `SimRobot` runs the real session manager and a DC motor driver (its command watchdog on,
`command_timeout_s` 0.5 s, so it stops by itself when the manager's keep-alives stop). A probe
session drives the motor and keeps heartbeating; N background sessions (from the load
generator of `session_scale.py`, one writer each) then all stop asserting at the same moment,
so N sessions expire together, while the probe sends `--flood` commands a second and the
background sessions' clients go on commanding (each command refused: the session is over).
The bench reports, from the chip's record, every interval in which the probe's motor was not
at the probe's power from a second before the writers stopped to a window after the last
expiry: the longest is the figure (0 when the keep-alives never lapsed). Gaps while the
background sessions were starting (a loaded machine starving the manager) are counted apart.

Run from the repository root with the venv's Python:

    .venv/bin/python bench/mass_expiry.py [--sessions 1023] [--window 0.5] [--flood 200]
        [--repeats 1]

A `--profile` option samples the manager with py-spy (if on PATH) during the expiry and writes
its flame summary next to the logs.
"""

import argparse
import os
from pathlib import Path
import random
import shutil
import subprocess
import sys
import threading
import time
from typing import List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from session_scale import LoadGenerator, Writer  # noqa: E402, I100 - the bench's neighbour
from std_msgs.msg import Float64  # noqa: E402
from viam_session_harness.ros_domains import domain_range  # noqa: E402
from viam_session_harness.sim_robot import MotorSpec, SimRobot  # noqa: E402
from viam_session_interfaces.msg import SessionEvent  # noqa: E402
from viam_session_interfaces.srv import ListSessions  # noqa: E402

MANAGER = '/session_manager'
MOTOR = 'motor'
POWER = 0.5
PROBE_WINDOW_S = 2.0
DOMAIN_RANGE = domain_range(range(216, 231))
EVENT_TIMEOUT_S = 120.0


def _say(text: str) -> None:
    print(text, flush=True)


def gaps(changes: List[Tuple[int, float]], power: float, start_ns: int,
         end_ns: int) -> List[Tuple[int, int]]:
    """Return the (begin, end) ns intervals within [start_ns, end_ns] where duty != power."""
    result = []
    duty = None
    since = start_ns
    for t_ns, value in changes:
        if t_ns > end_ns:
            break
        if t_ns <= start_ns:
            duty = value
            continue
        if duty is not None and abs(duty - power) > 1e-9 and abs(value - power) <= 1e-9:
            result.append((since, t_ns))
        if (duty is None or abs(duty - power) <= 1e-9) and abs(value - power) > 1e-9:
            since = t_ns
        duty = value
    if duty is not None and abs(duty - power) > 1e-9:
        result.append((since, end_ns))
    return result


class Flood:
    """Commands at `rate` per second: the probe's own, and the background clients' refused ones."""

    def __init__(self, generator: LoadGenerator, probe: Writer, others: List[Writer],
                 rate: float) -> None:
        self._generator = generator
        self._probe = probe
        self._others = others
        self._period_s = 1.0 / rate if rate > 0 else 0.0
        self._stop = threading.Event()
        # Set once the background sessions are over: before that their commands would take
        # the motor from the probe.
        self.others_over = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        if rate > 0:
            self._thread.start()

    def _run(self) -> None:
        next_s = time.monotonic()
        index = 0
        while not self._stop.is_set():
            if index % 2 == 0 or not self._others:
                self._generator.command(self._probe, f'/{MOTOR}', POWER)
            else:
                # Refused: an unmanaged resource while the sessions live, then the motor,
                # by sessions that are over.
                resource = f'/{MOTOR}' if self.others_over.is_set() else '/unmanaged'
                self._generator.command(self._others[index // 2 % len(self._others)],
                                        resource, POWER)
            self.sent += 1
            index += 1
            next_s += self._period_s
            self._stop.wait(max(next_s - time.monotonic(), 0.0))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class CommandTimes:
    """When the manager's commands to the motor (keep-alives and relays) arrived here."""

    def __init__(self, generator: LoadGenerator) -> None:
        self._times: List[int] = []
        self._lock = threading.Lock()
        generator.node.create_subscription(Float64, f'/{MOTOR}/command', self._on_command, 100)

    def _on_command(self, _: Float64) -> None:
        with self._lock:
            self._times.append(time.monotonic_ns())

    def longest_gap_ms(self, start_ns: int, end_ns: int) -> Tuple[float, int]:
        """Return the longest interval without a command in [start, end] and where it began."""
        with self._lock:
            times = [t for t in self._times if start_ns <= t <= end_ns]
        points = [start_ns, *times, end_ns]
        gap, at = max((b - a, a) for a, b in zip(points, points[1:]))
        return gap * 1e-6, at


def run_once(robot: SimRobot, generator: LoadGenerator, commands: CommandTimes,
             args: argparse.Namespace, run: int, workdir: Path) -> float:
    """One mass expiry; return the probe's longest gap in ms."""
    token = f'{run}_{random.getrandbits(24):06x}'
    probe = generator.add_writer(f'{MANAGER}/heartbeat/probe_{token}', PROBE_WINDOW_S)
    probe_handle = generator.start_session(probe, f'probe_{token}')
    commanded_ns = time.monotonic_ns()
    generator.command(probe, f'/{MOTOR}', POWER)
    driven = robot.wait_for_duty(MOTOR, lambda duty: abs(duty - POWER) < 1e-9,
                                 after_ns=commanded_ns, timeout_s=30)
    background: List[Writer] = []
    began = time.monotonic()
    for index in range(args.sessions):
        writer = generator.add_writer(f'{MANAGER}/heartbeat/bg_{token}_{index:04d}', args.window)
        generator.start_session(writer, f'bg_{index:04d}')
        background.append(writer)
    generator.spread(background)
    _say(f'  run {run}: {args.sessions} sessions started in {time.monotonic() - began:.1f} s')
    # Every background writer must be alive for the manager (held), else its session expires
    # one window after its start rather than with the others.
    threading.Event().wait(args.window * 1.5 + 0.5)
    flood = Flood(generator, probe, background, args.flood)
    threading.Event().wait(1.0)
    profiler = None
    if args.profile and shutil.which('py-spy'):
        pid = robot.process('session_manager').pid
        profiler = subprocess.Popen(
            ['py-spy', 'record', '--pid', str(pid), '--duration', str(int(args.window + 6)),
             '--rate', '200', '--format', 'speedscope', '--threads', '--idle', '--native',
             '--output', str(workdir / f'manager_profile_{run}.json')],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        threading.Event().wait(1.0)
        _say(f'  profiler started at {time.monotonic_ns()}')
    stop_ns = time.monotonic_ns()
    for writer in background:
        generator.stop_writer(writer)
    ids = {writer.handle for writer in background}
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    # Events may be lost to a late reader (transient local, depth 100): the list is the truth.
    while True:
        listed = {info.handle for info in robot.call(
            f'{MANAGER}/list_sessions', ListSessions.Request()).sessions}
        if not listed & ids or time.monotonic() > deadline:
            break
        threading.Event().wait(0.05)
    over_ns = time.monotonic_ns()
    flood.others_over.set()
    expired = ids - listed
    threading.Event().wait(args.window + 1.0)
    end_ns = time.monotonic_ns()
    flood.stop()
    if profiler is not None:
        profiler.wait(timeout=60)
    probe_events = [s for s in robot.events.snapshot() if s.message.handle == probe_handle
                    and s.message.state != SessionEvent.STARTED]
    changes = [(c.t_ns, c.value) for c in robot.chip_changes(MOTOR)]
    # The figure: from the flood's start (a second before the writers stopped) to the end.
    flood_ns = stop_ns - 10**9
    found = gaps(changes, POWER, flood_ns, end_ns)
    longest = max((end - begin for begin, end in found), default=0) * 1e-6
    before = gaps(changes, POWER, driven.t_ns, flood_ns)
    command_gap_ms, gap_at = commands.longest_gap_ms(stop_ns - 10**9, end_ns)
    _say(f'  run {run}: {len(expired)}/{len(ids)} expired, all '
         f'{(over_ns - stop_ns) * 1e-9:.2f} s after the writers stopped; '
         f'{flood.sent} commands sent; probe ' + (
             f'ENDED ({probe_events[0].message.reason})' if probe_events else 'still live')
         + f'; {len(before)} motor gap(s) while the sessions started, the longest '
         f'{max((e - b for b, e in before), default=0) * 1e-6:.0f} ms'
         + '; motor gaps during the expiry (ms after the writers stopped, length): '
         + (', '.join(f'{(b - stop_ns) * 1e-6:.0f}+{(e - b) * 1e-6:.1f}' for b, e in found)
            or 'none')
         + f'; longest {longest:.1f} ms; the longest interval without a command to the motor '
         f'{command_gap_ms:.0f} ms, from {(gap_at - stop_ns) * 1e-6:.0f} ms')
    for writer in background:
        generator.destroy_writer(writer)
    generator.destroy_writer(probe)
    return longest


def main(argv: Optional[List[str]] = None) -> int:
    """Run the bench; exit 1 if the probe's motor had a gap."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--sessions', type=int, default=1023,
                        help='sessions that expire together (default 1023)')
    parser.add_argument('--window', type=float, default=0.5,
                        help="the background sessions' window, s (default 0.5)")
    parser.add_argument('--flood', type=float, default=200.0,
                        help='commands per second during the expiry (default 200)')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--profile', action='store_true',
                        help='sample the manager with py-spy during the expiry')
    parser.add_argument('--domain-id', type=int, default=random.choice(DOMAIN_RANGE))
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    args = parser.parse_args(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'UDPv4')
    workdir = (args.output / 'mass_expiry_run').resolve()
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id))
    _say(f'loadavg {" ".join(Path("/proc/loadavg").read_text().split()[:3])}; '
         f'domain {args.domain_id}; {args.sessions} sessions of {args.window:g} s expire '
         f'together; {args.flood:g} commands/s; logs in {workdir}')
    results = []
    with SimRobot(workdir=workdir, motors=(MotorSpec(MOTOR, 12, 16),), env=env,
                  default_window_s=PROBE_WINDOW_S,
                  manager_parameters=[f'max_sessions:={args.sessions + 1}']) as robot:
        generator = LoadGenerator(args.domain_id)
        commands = CommandTimes(generator)
        try:
            for run in range(1, args.repeats + 1):
                results.append(run_once(robot, generator, commands, args, run, workdir))
        finally:
            generator.close()
    _say('probe motor longest gap on the chip, ms: '
         + ', '.join(f'{value:.1f}' for value in results)
         + f'; loadavg {" ".join(Path("/proc/loadavg").read_text().split()[:3])}')
    return 1 if any(value > 0 for value in results) else 0


if __name__ == '__main__':
    sys.exit(main())
