"""
The demo: a simulated robot, a client driving its motor, the client killed, the motor stopped.

Separate processes run the session manager, the motor driver (on a simulated chip) and a
client. The client opens a session and drives the motor; the demo then kills it with SIGKILL,
as when a laptop drops off the network, and watches the robot notice and power the motor off.
It prints the timeline with milliseconds, `stop latency - window` (how late after the window
the power went off), and writes a plot. Exits 0 only if the motor reached PWM 0 every run.
"""

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import statistics
import sys
import time
from typing import List, Optional

from lifecycle_msgs.msg import State

from viam_session.chips.sim_chip import read_line_changes
from viam_session.time_convert import time_to_seconds
from viam_session_harness.sim_robot import local_ros_environment, MotorSpec, SimRobot
from viam_session_interfaces.msg import SessionEvent

__all__ = ['main']

MOTOR = 'motor'
PWM_LINE = 12
POWER = 0.6
HEARTBEATS_BEFORE_KILL = 10


@dataclass(frozen=True)
class Timeline:
    """Instants of one run, in CLOCK_MONOTONIC seconds."""

    window_s: float
    last_heartbeat_sent: float
    client_killed: float
    expired: float
    deactivated: float
    pwm_zero: float

    @property
    def stop_latency_minus_window_s(self) -> float:
        return self.pwm_zero - self.last_heartbeat_sent - self.window_s

    def rows(self) -> List[tuple]:
        origin = self.last_heartbeat_sent
        return [
            ('last heartbeat sent by the client', 0.0),
            ('client killed (SIGKILL)', self.client_killed - origin),
            ('window elapsed', self.window_s),
            ('session expired (manager)', self.expired - origin),
            ('motor deactivated (lifecycle event seen)', self.deactivated - origin),
            ('PWM 0 on the chip', self.pwm_zero - origin),
        ]


def _say(text: str) -> None:
    print(text, flush=True)


def run_once(workdir: Path, window_s: float, run: int, runs: int) -> Timeline:
    """Bring the robot up, drive the motor, kill the client, and time the stop."""
    _say(f'[run {run}/{runs}] starting session manager and motor driver '
         f'(processes, simulated chip in {workdir / "chip"})')
    motors = (MotorSpec(MOTOR, pwm_line=PWM_LINE, direction_line=16),)
    with SimRobot(workdir=workdir, motors=motors, default_window_s=window_s) as robot:
        _say(f'[run {run}/{runs}] motor active; starting a client that drives it at power '
             f'{POWER}')
        client = robot.start_client(resource=f'/{MOTOR}', value=POWER, name='demo_client')
        handle = client.wait_for('started')['handle']
        robot.wait_for_duty(MOTOR, lambda duty: duty > 0.0)
        client.lines.wait_for(
            lambda line: line.get('sequence', 0) >= HEARTBEATS_BEFORE_KILL, 30.0, 'heartbeats')
        _say(f'[run {run}/{runs}] motor running (PWM {robot.duty(MOTOR):.2f}); '
             f'session {handle} heartbeating; killing the client with SIGKILL')
        wall_minus_mono = time.time() - time.monotonic()
        client_killed = time.monotonic()
        client.kill()
        expired = robot.wait_for_event(handle, SessionEvent.EXPIRED, timeout_s=window_s + 30)
        deactivated = robot.wait_for_transition(
            MOTOR, State.PRIMARY_STATE_INACTIVE, after_ns=int(client_killed * 1e9),
            timeout_s=30)
        pwm_zero = robot.wait_for_duty(
            MOTOR, lambda duty: duty == 0.0, after_ns=int(client_killed * 1e9), timeout_s=30)
        last_sent = client.last('heartbeat')
        return Timeline(
            window_s=window_s,
            last_heartbeat_sent=last_sent['t_ns'] * 1e-9,
            client_killed=client_killed,
            expired=time_to_seconds(expired.message.stamp) - wall_minus_mono,
            deactivated=deactivated.t_ns * 1e-9,
            pwm_zero=pwm_zero.t_ns * 1e-9)


def print_timeline(timeline: Timeline) -> None:
    _say('  timeline (ms from the last heartbeat the client sent):')
    for label, offset_s in timeline.rows():
        _say(f'    {offset_s * 1000:9.1f}  {label}')
    _say(f'  stop latency - window = {timeline.stop_latency_minus_window_s * 1000:.1f} ms')


def plot(timeline: Timeline, chip_dir: Path, pwm_line: int, path: Path) -> Optional[Path]:
    """Plot the motor's PWM duty over time, with the timeline's instants, as a PNG."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    origin = timeline.last_heartbeat_sent
    changes = [c for c in read_line_changes(chip_dir, pwm_line) if c.kind == 'pwm']
    times = [(c.t_ns * 1e-9 - origin) * 1000 for c in changes]
    duties = [c.value for c in changes]
    end = (timeline.pwm_zero - origin) * 1000 + 200
    figure, axes = pyplot.subplots(figsize=(10, 4))
    axes.step(times + [end], duties + [duties[-1]], where='post', color='black',
              label='PWM duty (simulated chip)')
    for (label, offset_s), color in zip(timeline.rows(), pyplot.cm.tab10.colors):
        axes.axvline(offset_s * 1000, color=color, linestyle='--', label=label)
    axes.set_xlim(min(-300.0, times[-2] if len(times) > 1 else -300.0), end)
    axes.set_xlabel('ms from the last heartbeat the client sent')
    axes.set_ylabel('PWM duty')
    late_ms = timeline.stop_latency_minus_window_s * 1000
    axes.set_title(f'Client killed: motor stopped {late_ms:.1f} ms after the '
                   f'{timeline.window_s * 1000:.0f} ms window')
    axes.legend(loc='upper right', fontsize='small')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--window', type=float, default=1.0,
                        help='heartbeat window in seconds (default 1.0)')
    parser.add_argument('--runs', type=int, default=3, help='how many runs (default 3)')
    parser.add_argument('--output', type=Path, default=Path('demo_output'),
                        help='where logs, the chip record and the plot go')
    args = parser.parse_args(argv)
    os.environ.update(local_ros_environment())  # the observer node in this process too

    latencies = []
    for run in range(1, args.runs + 1):
        workdir = args.output.resolve() / f'run{run}'
        try:
            timeline = run_once(workdir, args.window, run, args.runs)
        except (TimeoutError, RuntimeError) as error:
            _say(f'[run {run}/{args.runs}] FAILED: {error} (logs in {workdir})')
            return 1
        print_timeline(timeline)
        latencies.append(timeline.stop_latency_minus_window_s * 1000)
        picture = plot(timeline, workdir / 'chip', PWM_LINE, workdir / 'timeline.png')
        if picture is not None:
            _say(f'  plot: {picture}')
    _say(f'motor reached PWM 0 in {len(latencies)}/{args.runs} runs; stop latency - window '
         f'(ms): min {min(latencies):.1f}, median {statistics.median(latencies):.1f}, '
         f'max {max(latencies):.1f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
