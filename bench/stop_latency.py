"""
Measure stop latency under real network faults: how late after the window the power goes off.

The robot (session manager, a DC motor driver on a simulated chip) runs in namespace `a`, its
client in namespace `b`, joined by the impairment link of `viam_session.netfault` (TAP devices
and a forwarder), with `viam_session.netfault.remote_robot` driving each trial. Faults:

- `link_down`: the client's TAP is taken down;
- `loss_100`: the link drops every frame;
- `sigkill`: the client process is SIGKILLed;
- `loss30_delay100`: the link drops 30 % of the frames and delays the rest 100 ms each way for
  two windows, then the client is SIGKILLed.

The figure per trial is (PWM 0 on the chip) - (last heartbeat the robot can have received) -
window. With liveliness the robot sees no individual assertion, so the last heartbeat is the
last assertion the client sent (it prints its CLOCK_MONOTONIC time) before the fault began:
for link down and 100 % loss, before the command that broke the link; for SIGKILL, the last one
it printed. Under 30 % loss that last assertion may itself have been dropped, and each frame
takes 100 ms more, so that row shows what the impaired link adds; a session that expired
before the kill (a false expiry under loss) is marked `expired_before_fault` and left out of
the table.

    .venv/bin/python bench/stop_latency.py [--windows 0.1,0.5,2] [--trials 5]
        [--faults link_down,loss_100,sigkill,loss30_delay100]

Prints p50/p99/max per cell and writes bench_output/stop_latency.csv and .png. This version
measures one session driving one actuator; the 10/100-session and 8/32-actuator cells of issue
8 and the manager's idle CPU/RSS are not measured yet.
"""

import argparse
import csv
import json
import os
from pathlib import Path
import random
import signal
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

from viam_session.netfault import ImpairedPair
from viam_session.netfault.remote_robot_process import RemoteRobotProcess

__all__ = ['main']

FAULTS = ('link_down', 'loss_100', 'sigkill', 'loss30_delay100')
# 233-240 were reserved for these benches, but Fast DDS refuses domains above 232 (its port
# numbers would overflow), so the benches use the two highest valid ones.
DOMAIN_RANGE = range(231, 233)
DEADLINE_S = 120.0


def _break(pair: ImpairedPair, fault: str, window_s: float, client_pid: int) -> int:
    """Apply `fault`; return the CLOCK_MONOTONIC ns before which heartbeats could cross."""
    began = time.monotonic_ns()
    if fault == 'link_down':
        pair.set_link(pair.b.ns, pair.b.dev, up=False)
    elif fault == 'loss_100':
        pair.set_impairment(loss=1.0)
    else:
        if fault == 'loss30_delay100':
            pair.set_impairment(loss=0.3, delay_s=0.1)
            time.sleep(2 * window_s)  # run impaired for two windows before the kill
        began = time.monotonic_ns()
        os.kill(client_pid, signal.SIGKILL)
        return time.monotonic_ns()
    return began


def _repair(pair: ImpairedPair, fault: str) -> None:
    if fault == 'link_down':
        pair.set_link(pair.b.ns, pair.b.dev, up=True)
    pair.set_impairment(loss=0.0, delay_s=0.0)


def run_window(window_s: float, args: argparse.Namespace,
               record: Callable[[Dict[str, object]], None]) -> None:
    """Run every fault's trials with one robot at `window_s`."""
    with ImpairedPair(seed=args.seed) as pair:
        robot = RemoteRobotProcess(
            pair=pair, window_s=window_s, domain_id=args.domain_id, deadline_s=DEADLINE_S,
            log_path=args.output / f'stop_latency_{window_s:g}.log')
        try:
            for fault in args.faults:
                for trial in range(args.trials):
                    ready = robot.expect('ready')
                    fault_ns = _break(pair, fault, window_s, ready['client_pid'])
                    robot.send(f'fault {fault_ns}')
                    stopped = robot.expect('stopped')
                    _repair(pair, fault)
                    robot.send('new')
                    figure_ms = (stopped['stop_t_ns'] - stopped['last_heartbeat_t_ns']) * 1e-6 \
                        - window_s * 1e3
                    record({'fault': fault, 'window_s': window_s, 'sessions': 1,
                            'actuators': 1, 'trial': trial,
                            'expired_before_fault': stopped['expired_t_ns'] < fault_ns,
                            'stop_minus_window_ms': round(figure_ms, 2),
                            'expiry_minus_window_ms': round(
                                (stopped['expired_t_ns'] - stopped['last_heartbeat_t_ns'])
                                * 1e-6 - window_s * 1e3, 2)})
        finally:
            robot.close()


def _quantile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarise(rows: List[Dict[str, object]]) -> List[Dict[str, object]]:
    """Return p50/p99/max of the figure per (fault, window, sessions, actuators) cell."""
    cells: Dict[tuple, List[float]] = {}
    for row in rows:
        if row['expired_before_fault']:
            continue
        key = (row['fault'], row['window_s'], row['sessions'], row['actuators'])
        cells.setdefault(key, []).append(float(row['stop_minus_window_ms']))
    return [{'fault': key[0], 'window_s': key[1], 'sessions': key[2], 'actuators': key[3],
             'trials': len(values), 'p50_ms': statistics.median(values),
             'p99_ms': _quantile(values, 0.99), 'max_ms': max(values)}
            for key, values in cells.items()]


def plot(summary: List[Dict[str, object]], path: Path) -> Optional[Path]:
    """Plot p50 and p99 per cell as a PNG; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    figure, axes = pyplot.subplots(figsize=(11, 5))
    labels = [f"{cell['fault']}\n{float(cell['window_s']) * 1e3:g} ms" for cell in summary]
    positions = range(len(summary))
    axes.bar([p - 0.2 for p in positions], [c['p50_ms'] for c in summary], 0.4, label='p50')
    axes.bar([p + 0.2 for p in positions], [c['p99_ms'] for c in summary], 0.4, label='p99')
    axes.set_xticks(list(positions), labels, fontsize='small')
    axes.set_ylabel('PWM 0 - last heartbeat - window (ms)')
    axes.set_title('Stop latency under network faults (1 session, 1 actuator)')
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--windows', default='0.1,0.5,2',
                        type=lambda text: [float(part) for part in text.split(',')])
    parser.add_argument('--faults', default=','.join(FAULTS),
                        type=lambda text: text.split(','))
    parser.add_argument('--trials', type=int, default=5)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--domain-id', type=int, default=random.choice(DOMAIN_RANGE))
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    args = parser.parse_args(argv)
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f'unknown faults {sorted(unknown)}; choose from {FAULTS}')
    return args


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """Run the trials, print the table, write the CSV and the plot."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so the namespaces are removed on SIGTERM too
    args.output.mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, object]] = []

    def record(row: Dict[str, object]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    try:
        for window_s in args.windows:
            run_window(window_s, args, record)
    finally:
        if rows:
            with open(args.output / 'stop_latency.csv', 'w', newline='') as output:
                writer = csv.DictWriter(output, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    summary = summarise(rows)
    print(f'{"fault":>16} {"window":>7} {"trials":>6} {"p50 ms":>8} {"p99 ms":>8} {"max ms":>8}')
    for cell in summary:
        print(f"{cell['fault']:>16} {float(cell['window_s']):6g}s {cell['trials']:6d} "
              f"{cell['p50_ms']:8.1f} {cell['p99_ms']:8.1f} {cell['max_ms']:8.1f}")
    picture = plot(summary, args.output / 'stop_latency.png')
    print(f'wrote {args.output / "stop_latency.csv"}' + (f' and {picture}' if picture else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
