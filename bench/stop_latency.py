"""
Measure stop latency under real network faults: how late after the window the power goes off.

The robot runs in network namespace `a` (`viam_session_harness.netfault.fleet_robot`: the session
manager, one DC motor driver per actuator of the largest M, `/motor0` ... `/motor31` by
default, on one simulated chip, each its own process, and a lifecycle supervisor watching
them); its sessions come from one client process in namespace `b`
(`viam_session_harness.netfault.session_fleet`: one heartbeat writer per session, the client
library's QoS and assertion rate). The namespaces are joined by the impairment link of
`viam_session_harness.netfault` (TAP devices and a forwarder).

Cells: fault x window x N sessions x M actuators. **How N sessions share M actuators:** actuator
j (j < M, `/motor<j>`) is driven by session j mod N and by no other, so it is owned by that
session only; with N < M a session owns several actuators (j, j + N, ...), with N > M sessions
M ... N-1 own nothing and only heartbeat (load). The robot's other motors stay active and
undriven.
Each trial starts N fresh sessions at the cell's window, waits until the M actuators run on the
chip, then (all sessions at once):

- `link_down`: the client's TAP is taken down;
- `loss_100`: the link drops every frame;
- `sigkill`: the client process is SIGKILLed;
- `loss30_delay100`: the link drops 30 % of the frames and delays the rest 100 ms each way for
  two windows, then the client process is SIGKILLed.

Just before the fault the client stops asserting and reports each session's last assertion
(the instant its `assert_liveliness()` returned, CLOCK_MONOTONIC, shared by the namespaces) and
its writer's GUID; 20 ms later the fault is applied, and for link down and loss the client
asserts again, into the broken link. So every session's last heartbeat crossed: the link was
whole for 20 ms after it was sent. **The figure per actuator and trial is (PWM 0 on the chip
for that actuator) - (its owner's last heartbeat) - window**, so one trial gives M figures.
The impairment forwarder also records when it wrote each writer's liveliness assertions into
the robot's namespace (`netfault.rtps_liveliness`); the CSV has the figure from that last
heartbeat received (`stop_minus_received_window_ms`), empty and counted `unseen` when the
forwarder saw none of the owner's assertions, which happens for most sessions of the 1- and
10-session sets and is not explained yet. The table uses the figure from the last heartbeat
received wherever there is one (the manager's window runs from what reached it), and the one
from the last heartbeat sent only for the `unseen` figures. An actuator stopped while its session
still heartbeated (a false expiry, before the client stopped asserting) is marked
`expired_before_fault` and left out of the table.

`unseen` counts figures whose owner's assertions the forwarder never saw.

Also measured: the session manager's and the supervisor's CPU (% of one core, from
/proc/<pid>/stat over `--cpu-seconds`) and RSS with 100 sessions at the 2 s window, idle (they
drive nothing) and driving every actuator (the manager re-sends each command at 10 Hz).

    .venv/bin/python bench/stop_latency.py [--quick] [--trials 3] [--windows 0.1,0.5,2]
        [--faults link_down,loss_100,sigkill,loss30_delay100] [--sessions 1,10,100]
        [--actuators 1,8,32] [--configs 1x1,100x32] [--cpu-seconds 10]

`--quick`: one trial per cell, windows 0.1 and 2 s, sessions 1 and 100, actuators 1 and 32.
`--configs`: only these N x M pairs instead of every pair of --sessions and --actuators.
Prints a progress line per cell ("cell k/K ...") and then p50/p99/max per cell; writes
bench_output/stop_latency.csv (one row per actuator and trial), stop_latency.json (summary,
CPU, load) and stop_latency.png. Needs root (network namespaces).
"""

import argparse
import csv
import itertools
import json
from pathlib import Path
import random
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

from viam_session_harness.bench_support import loadavg, quantile
from viam_session_harness.netfault import ImpairedPair, netns_unavailable_reason
from viam_session_harness.netfault.remote_robot_process import RemoteRobotProcess
from viam_session_harness.netfault.session_fleet import owner_of
from viam_session_harness.ros_domains import domain_range

__all__ = ['main']

FAULTS = ('link_down', 'loss_100', 'sigkill', 'loss30_delay100')
DOMAIN_RANGE = domain_range(range(216, 233))  # Fast DDS refuses domains above 232
DEADLINE_S = 300.0
MAX_ACTUATORS = 32
# Between the client's last assertion and the fault: the last assertions' frames have crossed
# by then (without it a fault applied within a few ms could still drop them).
SETTLE_S = 0.02
CPU_SESSIONS = 100
CPU_WINDOW_S = 2.0


def _after_window_ms(t_ns: int, last_ns: Optional[int], window_s: float) -> Optional[float]:
    """Return how long after one window from `last_ns` `t_ns` came, in ms (None: no last)."""
    if last_ns is None:
        return None
    return round((t_ns - last_ns) * 1e-6 - window_s * 1e3, 2)


class CellFailed(RuntimeError):
    """The robot could not get the cell's sessions alive and driving (see its log)."""


class Bench:
    """One robot, one impaired pair, the cells run one after another."""

    def __init__(self, pair: ImpairedPair, args: argparse.Namespace) -> None:
        self.pair = pair
        self.args = args
        self.robot = RemoteRobotProcess(
            pair=pair, window_s=0.0, domain_id=args.domain_id, deadline_s=DEADLINE_S,
            log_path=args.output / 'stop_latency_robot.log',
            scenario=['viam_session_harness.netfault.fleet_robot',
                      '--motors', str(max(args.actuators)),
                      '--workdir', str(args.output / 'stop_latency_robot')])
        self.ready = self.robot.expect('robot_ready')

    def trial(self, fault: str, window_s: float, sessions: int,
              actuators: int) -> List[Dict[str, object]]:
        """Run one trial; return one row per driven actuator."""
        self.robot.send(f'sessions {sessions} {actuators} {window_s!r}')
        ready = self.robot.expect('ready', 'failed')
        if ready['event'] == 'failed':
            raise CellFailed(ready['reason'])
        if fault == 'loss30_delay100':
            self.pair.set_impairment(loss=0.3, delay_s=0.1)
            time.sleep(2 * window_s)  # the impaired run before the kill
        self.robot.send('hold')
        held = self.robot.expect('held')
        last_ns = held['last_ns']
        time.sleep(SETTLE_S)
        fault_ns = time.monotonic_ns()
        if fault == 'link_down':
            self.pair.set_link(self.pair.b.ns, self.pair.b.dev, up=False)
        elif fault == 'loss_100':
            self.pair.set_impairment(loss=1.0)
        else:
            self.robot.send('kill')
        if fault in ('link_down', 'loss_100'):
            self.robot.send('resume')
        self.robot.send('fault')
        stopped = self.robot.expect('stopped')
        if fault == 'link_down':
            self.pair.set_link(self.pair.b.ns, self.pair.b.dev, up=True)
        self.pair.set_impairment(loss=0.0, delay_s=0.0)
        crossed = self.pair.liveliness()
        received_ns = [int(crossed[writer]['last'] * 1e9) if writer in crossed else None
                       for writer in held['writers']]
        rows = []
        for actuator, stop_ns in enumerate(stopped['stop_t_ns']):
            owner = owner_of(actuator, sessions)
            expired_ns = stopped['expired_t_ns'][str(owner)]
            rows.append({
                'fault': fault, 'window_s': window_s, 'sessions': sessions,
                'actuators': actuators, 'actuator': actuator, 'owner': owner,
                'expired_before_fault': stop_ns < held['t_ns'],
                'fault_after_hold_ms': round((fault_ns - held['t_ns']) * 1e-6, 1),
                'stop_minus_window_ms': _after_window_ms(stop_ns, last_ns[owner], window_s),
                'stop_minus_received_window_ms': _after_window_ms(
                    stop_ns, received_ns[owner], window_s),
                'expiry_minus_window_ms': _after_window_ms(expired_ns, last_ns[owner],
                                                           window_s)})
        return rows

    def cpu(self, actuators: int) -> Dict[str, object]:
        """Measure manager and supervisor CPU with 100 sessions at 2 s driving `actuators`."""
        self.robot.send(f'sessions {CPU_SESSIONS} {actuators} {CPU_WINDOW_S!r}')
        self.robot.expect('ready')
        self.robot.send(f'cpu {self.args.cpu_seconds!r}')
        usage = self.robot.expect('cpu')
        return {'sessions': CPU_SESSIONS, 'window_s': CPU_WINDOW_S, 'actuators': actuators,
                'seconds': round(usage['seconds'], 1), 'load': loadavg(),
                **{f'{name}_{key}': round(usage[name][key], 2)
                   for name in ('manager', 'supervisor') for key in usage[name]}}

    def close(self) -> None:
        self.robot.close()


def summarise(rows: List[Dict[str, object]]) -> List[Dict[str, object]]:
    """Return trials, figures, false expiries and p50/p99/max per cell."""
    cells: Dict[tuple, Dict[str, object]] = {}
    for row in rows:
        key = (row['fault'], row['window_s'], row['sessions'], row['actuators'])
        cell = cells.setdefault(key, {'values': [], 'false_expiries': 0, 'unobserved': 0})
        if row['expired_before_fault']:
            cell['false_expiries'] += 1
            continue
        # From what the robot received: the manager's window runs from the last assertion
        # that reached it, not from the last one the client sent.
        if row['stop_minus_received_window_ms'] is None:
            cell['unobserved'] += 1     # the forwarder saw none of its owner's assertions
            cell['values'].append(float(row['stop_minus_window_ms']))
        else:
            cell['values'].append(float(row['stop_minus_received_window_ms']))
    summary = []
    for (fault, window_s, sessions, actuators), cell in cells.items():
        values = cell['values']
        summary.append({
            'fault': fault, 'window_s': window_s, 'sessions': sessions, 'actuators': actuators,
            'figures': len(values), 'false_expiries': cell['false_expiries'],
            'unobserved': cell['unobserved'],
            'p50_ms': quantile(values, 0.5) if values else None,
            'p99_ms': quantile(values, 0.99) if values else None,
            'max_ms': max(values) if values else None})
    return summary


def _ms(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.1f}'


def print_table(summary: List[Dict[str, object]]) -> None:
    """Print one line per cell."""
    print(f'{"fault":>16} {"window":>7} {"N":>4} {"M":>3} {"figures":>7} {"false":>5} '
          f'{"unseen":>6} {"p50 ms":>8} {"p99 ms":>8} {"max ms":>8}')
    for cell in summary:
        print(f"{cell['fault']:>16} {float(cell['window_s']):6g}s {cell['sessions']:4d} "
              f"{cell['actuators']:3d} {cell['figures']:7d} {cell['false_expiries']:5d} "
              f"{cell['unobserved']:6d} {_ms(cell['p50_ms']):>8} {_ms(cell['p99_ms']):>8} "
              f"{_ms(cell['max_ms']):>8}")


def plot(summary: List[Dict[str, object]], path: Path, title: str) -> Optional[Path]:
    """Plot p50 and p99 against the window, one panel per fault, a line per N x M; or None."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    faults = [fault for fault in FAULTS if any(cell['fault'] == fault for cell in summary)]
    configs = sorted({(cell['sessions'], cell['actuators']) for cell in summary})
    figure, axes = pyplot.subplots(2, len(faults), figsize=(4 * len(faults), 7), sharex=True,
                                   squeeze=False)
    for column, fault in enumerate(faults):
        for row, (key, label) in enumerate((('p50_ms', 'p50'), ('p99_ms', 'p99'))):
            panel = axes[row][column]
            for sessions, actuators in configs:
                points = sorted((float(cell['window_s']), cell[key]) for cell in summary
                                if cell['fault'] == fault and cell['sessions'] == sessions
                                and cell['actuators'] == actuators and cell[key] is not None)
                if points:
                    panel.plot([p[0] for p in points], [p[1] for p in points], marker='o',
                               label=f'{sessions} sessions x {actuators} actuators')
            panel.set_xscale('log')
            panel.set_title(f'{fault}: {label}', fontsize='medium')
            panel.grid(True, alpha=0.3)
            if column == 0:
                panel.set_ylabel(f'{label} (ms)')
            if row == 1:
                panel.set_xlabel('window (s)')
    axes[0][0].legend(fontsize='x-small')
    figure.suptitle(title, fontsize='medium')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def _numbers(kind: type):
    return lambda text: [kind(part) for part in text.split(',')]


def _configs(text: str) -> List[Tuple[int, int]]:
    pairs = [pair.split('x') for pair in text.split(',')]
    return [(int(sessions), int(actuators)) for sessions, actuators in pairs]


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the command line; --quick replaces the matrix by its corners."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='windows 0.1,2; sessions 1,100; actuators 1,32; 1 trial')
    parser.add_argument('--windows', type=_numbers(float), default=[0.1, 0.5, 2.0])
    parser.add_argument('--faults', type=lambda text: text.split(','), default=list(FAULTS))
    parser.add_argument('--sessions', type=_numbers(int), default=[1, 10, 100])
    parser.add_argument('--actuators', type=_numbers(int), default=[1, 8, 32])
    parser.add_argument('--configs', type=_configs,
                        help='N x M pairs such as 1x1,100x32, instead of every sessions x '
                        'actuators pair')
    parser.add_argument('--trials', type=int, help='trials per cell (default 3, --quick 1)')
    parser.add_argument('--cpu-seconds', type=float, default=10.0,
                        help='CPU measurement interval (0: skip)')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--domain-id', type=int, default=random.choice(DOMAIN_RANGE))
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    args = parser.parse_args(argv)
    if args.quick:
        args.windows, args.sessions, args.actuators = [0.1, 2.0], [1, 100], [1, 32]
    if args.trials is None:
        args.trials = 1 if args.quick else 3
    if args.configs is None:
        args.configs = list(itertools.product(args.sessions, args.actuators))
    else:
        args.sessions = [sessions for sessions, _ in args.configs]
        args.actuators = [actuators for _, actuators in args.configs]
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f'unknown faults {sorted(unknown)}; choose from {FAULTS}')
    if any(m < 1 or m > MAX_ACTUATORS for m in args.actuators) or min(args.sessions) < 1:
        parser.error(f'actuators must be in [1, {MAX_ACTUATORS}], sessions >= 1')
    return args


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """Run the cells, print the table and CPU figures, write CSV, JSON and the plot."""
    args = parse_args(argv)
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f'cannot run: {reason}', file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)  # so the namespaces are removed on SIGTERM too
    args.output.mkdir(parents=True, exist_ok=True)
    cells = [(window_s, sessions, actuators, fault) for window_s, (sessions, actuators), fault
             in itertools.product(args.windows, args.configs, args.faults)]
    rows: List[Dict[str, object]] = []
    cpu: List[Dict[str, object]] = []
    failed: List[str] = []
    began = time.monotonic()
    load_before = loadavg()
    print(f'{len(cells)} cells x {args.trials} trials; load average {load_before}', flush=True)
    try:
        with ImpairedPair(seed=args.seed) as pair:
            bench = Bench(pair, args)
            try:
                print(f'robot up in {time.monotonic() - began:.0f} s', flush=True)
                for k, (window_s, sessions, actuators, fault) in enumerate(cells, 1):
                    cell_rows = []
                    try:
                        for _ in range(args.trials):
                            cell_rows += bench.trial(fault, window_s, sessions, actuators)
                    except CellFailed as error:
                        failed.append(f'{fault} window {window_s:g} s, {sessions} x {actuators}: '
                                      f'{error}')
                        print(f'cell {k}/{len(cells)} {failed[-1]}', flush=True)
                        rows += cell_rows
                        continue
                    rows += cell_rows
                    cell = summarise(cell_rows)[0]
                    print(f'cell {k}/{len(cells)} {fault} window {window_s:g} s, {sessions} '
                          f'sessions x {actuators} actuators: p50 {_ms(cell["p50_ms"])} p99 '
                          f'{_ms(cell["p99_ms"])} max {_ms(cell["max_ms"])} ms, false expiries '
                          f'{cell["false_expiries"]} ({time.monotonic() - began:.0f} s, load '
                          f'{loadavg()})', flush=True)
                if args.cpu_seconds > 0:
                    for actuators in (0, max(args.actuators)):
                        cpu.append(bench.cpu(actuators))
            finally:
                bench.close()
    finally:
        if rows:
            with open(args.output / 'stop_latency.csv', 'w', newline='') as output:
                writer = csv.DictWriter(output, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    summary = summarise(rows)
    elapsed = time.monotonic() - began
    print(f'\nstop latency - window (ms), PWM 0 on the chip - last heartbeat - window; '
          f'{args.trials} trial(s) per cell, one figure per driven actuator; {elapsed:.0f} s; '
          f'load average before {load_before}, after {loadavg()}')
    print_table(summary)
    for failure in failed:
        print(f'cell not measured: {failure}')
    for usage in cpu:
        print(f"CPU with {usage['sessions']} sessions at {usage['window_s']:g} s driving "
              f"{usage['actuators']} actuators (0: idle), over {usage['seconds']} s (load "
              f"{usage['load']}): manager {usage['manager_cpu_pct']:.2f} % of a core, RSS "
              f"{usage['manager_rss_mib']:.0f} MiB, {usage['manager_threads']:.0f} threads; "
              f"supervisor {usage['supervisor_cpu_pct']:.2f} %, RSS "
              f"{usage['supervisor_rss_mib']:.0f} MiB, {usage['supervisor_threads']:.0f} threads")
    (args.output / 'stop_latency.json').write_text(json.dumps(
        {'summary': summary, 'cpu': cpu, 'failed': failed, 'trials': args.trials,
         'seconds': round(elapsed), 'load_before': load_before, 'load_after': loadavg()},
        indent=1))
    picture = plot(summary, args.output / 'stop_latency.png',
                   f'PWM 0 - last heartbeat - window under real network faults ({args.trials} '
                   f'trial(s) per cell, one figure per actuator; 2-core machine, load '
                   f'{load_before})')
    print(f'wrote {args.output / "stop_latency.csv"}, stop_latency.json'
          + (f' and {picture}' if picture else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
