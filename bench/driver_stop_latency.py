"""
Measure how fast a driver puts its outputs safe, read from the simulated chip.

Three figures, each over several runs, for a DC motor driver process on a simulated chip:

1. deactivate request -> PWM 0: the bench sends the lifecycle deactivate request and reads the
   instant of PWM 0 from the chip's record (CLOCK_MONOTONIC, shared by the processes);
2. last command -> watchdog stop, minus `command_timeout_s`: one command, then nothing;
3. command publisher SIGKILL -> PWM 0: a publisher process re-sends the command at 10 Hz with
   liveliness MANUAL_BY_TOPIC and a 0.3 s lease (as the session manager will) and is killed;
   the driver's `command_timeout_s` is the lease it requests. Fast DDS reports the loss one
   *requested* lease after the last assertion, so liveliness and the watchdog fire together.

Run from the repository root with the venv's Python:

    .venv/bin/python bench/driver_stop_latency.py [--runs 10] [--timeout 0.5]
"""

import argparse
import os
from pathlib import Path
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from lifecycle_msgs.msg import Transition

from viam_session.chips.sim_chip import wait_for_line_change
from viam_session_harness.sim_drivers import DriverObserver, DriverProcess
from viam_session_harness.sim_robot import local_ros_environment

PWM_LINE = 12


def wait_for_duty(chip_dir: Path, duty: float, after_ns: int) -> int:
    """Return the instant the PWM line reached `duty` after `after_ns`."""
    return wait_for_line_change(
        chip_dir, lambda c: c.line == PWM_LINE and c.kind == 'pwm' and c.value == duty,
        after_ns=after_ns, timeout_s=30.0).t_ns


def summary(name: str, values_ms: List[float]) -> str:
    return (f'{name:<48} n={len(values_ms):<3} min {min(values_ms):8.2f}  median '
            f'{statistics.median(values_ms):8.2f}  max {max(values_ms):8.2f} ms')


def measure(workdir: Path, runs: int, timeout_s: float) -> Dict[str, List[float]]:
    env = local_ros_environment()
    chip_dir = workdir / 'chip'
    motor = DriverProcess(kind='dc_motor', name='motor', chip_dir=chip_dir, env=env,
                          log_path=workdir / 'motor.log',
                          parameters={'command_timeout_s': timeout_s})
    observer = DriverObserver(domain_id=int(env['ROS_DOMAIN_ID']), drivers={'motor': 'dc_motor'})
    results: Dict[str, List[float]] = {'deactivate': [], 'watchdog': [], 'publisher': []}
    try:
        observer.bring_up('motor')
        for _ in range(runs):
            sent_ns = observer.publish('motor', 0.5)
            wait_for_duty(chip_dir, 0.5, sent_ns)
            requested_ns = observer.request_transition('motor', Transition.TRANSITION_DEACTIVATE)
            results['deactivate'].append(
                (wait_for_duty(chip_dir, 0.0, requested_ns) - requested_ns) * 1e-6)
            observer.change_state('motor', Transition.TRANSITION_ACTIVATE)
        for _ in range(runs):
            sent_ns = observer.publish('motor', 0.5)
            wait_for_duty(chip_dir, 0.5, sent_ns)
            stopped_ns = wait_for_duty(chip_dir, 0.0, sent_ns)
            results['watchdog'].append((stopped_ns - sent_ns) * 1e-6 - timeout_s * 1e3)
    finally:
        observer.close()
    # The observer's own command publisher is gone: the driver sees only the publisher below.
    try:
        for _ in range(runs):
            started_ns = time.monotonic_ns()
            publisher = subprocess.Popen(
                [sys.executable, '-m', 'viam_session_harness.sim_drivers', 'publish', '--topic',
                 '/motor/command', '--value', '0.5', '--rate', '10', '--liveliness',
                 'manual_by_topic', '--lease', '0.3'], env=env, stdout=subprocess.PIPE,
                text=True)
            try:
                assert publisher.stdout.readline().strip() == 'matched'
                wait_for_duty(chip_dir, 0.5, started_ns)
                killed_ns = time.monotonic_ns()
                publisher.send_signal(signal.SIGKILL)
                stopped_ns = wait_for_duty(chip_dir, 0.0, killed_ns)
                results['publisher'].append((stopped_ns - killed_ns) * 1e-6)
            finally:
                publisher.kill()
                publisher.wait()
                publisher.stdout.close()
    finally:
        motor.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--timeout', type=float, default=0.5, help='command_timeout_s')
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='driver_stop_latency_') as workdir:
        results = measure(Path(workdir), options.runs, options.timeout)
    print(f'on {os.cpu_count()} CPUs, command_timeout_s = {options.timeout} s')
    print(summary('deactivate request -> PWM 0', results['deactivate']))
    print(summary('last command -> watchdog PWM 0, minus timeout', results['watchdog']))
    print(summary('publisher SIGKILL -> PWM 0 (lease 0.3 s, 10 Hz)', results['publisher']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
