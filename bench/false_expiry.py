"""
Count false expiries: healthy sessions that expire behind a lossy link or on a saturated CPU.

The robot (`viam_session_harness.netfault.remote_robot`: session manager, a DC motor driver,
observer) runs in network namespace `a`; its client, a real `session_client` process (the client
library at its default heartbeat rate), runs in namespace `b`, across the impairment link.
The client never stops: any expiry of its session is false. Conditions, each separately:

- `loss30_delay100`: the link drops 30 % of the frames and delays the rest 100 ms each way
  (from the start: switched on later, the delay holds every frame back at once, a gap that
  expires a short window by itself). Not run at windows up to 200 ms: a session must be seen
  alive within one window of its start, and the manager's new subscription cannot even match
  the client's writer within one round trip (200 ms), so no session can start;
- `cpu_hog`: a clean link, and `--hogs` (2) busy-looping processes at normal priority keep both
  cores saturated, on top of the processes under test.

For each condition and window the bench watches the session for `--seconds`; when it expires,
a new client and session replace it (started without the loss, hogs paused) and the watch
goes on. It reports the expiries, the
heartbeats the clients printed (against the expected duration / assertion period: a starved
heartbeat thread shows here) and expiries per hour-equivalent: expiries / (session-seconds
watched) x 3600, for one session.

    .venv/bin/python bench/false_expiry.py [--windows 0.1,0.5,2] [--seconds 60]
        [--conditions loss30_delay100,cpu_hog] [--hogs 2]

Prints a line per cell and a table; writes bench_output/false_expiry.json. Needs root.
"""

import argparse
import json
from pathlib import Path
import random
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from viam_session.client.session_client import assertion_period_s
from viam_session_harness.bench_support import cpu_hogs, loadavg
from viam_session_harness.netfault import ImpairedPair, netns_unavailable_reason
from viam_session_harness.netfault.remote_robot_process import RemoteRobotProcess
from viam_session_harness.ros_domains import domain_range

__all__ = ['main']

CONDITIONS = ('loss30_delay100', 'cpu_hog')
DOMAIN_RANGE = domain_range(range(216, 233))  # Fast DDS refuses domains above 232
DEADLINE_S = 120.0
DELAY_S = 0.1


def _signal(processes: List[subprocess.Popen], signum: int) -> None:
    for process in processes:
        process.send_signal(signum)


def watch_cell(condition: str, window_s: float,
               args: argparse.Namespace) -> Optional[Dict[str, object]]:
    """Watch one healthy session (replaced after each expiry) for `args.seconds`; or None."""
    if condition == 'loss30_delay100' and window_s <= 2 * DELAY_S:
        return None  # shorter than the round trip: no session can start (module docstring)
    with ImpairedPair(seed=args.seed) as pair:
        # The delay is there from the start: switched on later, it would hold every frame back
        # 100 ms at once, a gap that expires a 100 ms session by itself.
        delay_s = DELAY_S if condition == 'loss30_delay100' else 0.0
        pair.set_impairment(delay_s=delay_s)
        robot = RemoteRobotProcess(
            pair=pair, window_s=window_s, domain_id=args.domain_id, deadline_s=DEADLINE_S,
            log_path=args.output / f'false_expiry_{condition}_{window_s:g}.log')
        try:
            robot.expect('ready')
            if condition == 'loss30_delay100':
                pair.set_impairment(loss=0.3, delay_s=DELAY_S)
            expiries, heartbeats, watched_s = 0, 0, 0.0
            with cpu_hogs(args.hogs if condition == 'cpu_hog' else 0) as hogs:
                load = loadavg()
                while watched_s < args.seconds:
                    began = time.monotonic()
                    robot.send(f'watch {args.seconds - watched_s!r}')
                    watched = robot.expect('watched')
                    watched_s += time.monotonic() - began
                    heartbeats += watched['heartbeats']
                    if not watched['events']:
                        break
                    expiries += 1
                    # A client starts without the loss (its discovery and start request can
                    # take minutes at 30 % loss) and with the hogs paused; then the watch goes
                    # on as before.
                    loss = pair.stats()['loss']
                    pair.set_impairment(delay_s=delay_s)
                    _signal(hogs, signal.SIGSTOP)
                    robot.send('new')
                    robot.expect('ready')
                    _signal(hogs, signal.SIGCONT)
                    pair.set_impairment(loss=loss, delay_s=delay_s)
                load = f'{load} -> {loadavg()}'
            stats = pair.stats()
        finally:
            robot.close()
    return {'condition': condition, 'window_s': window_s, 'seconds': round(watched_s, 1),
            'expiries': expiries, 'per_hour': round(expiries * 3600.0 / watched_s, 1),
            'heartbeats': heartbeats,
            'expected_heartbeats': int(watched_s / assertion_period_s(window_s)),
            'frames_dropped': stats['dropped'], 'load': load}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--windows', default=[0.1, 0.5, 2.0],
                        type=lambda text: [float(part) for part in text.split(',')])
    parser.add_argument('--conditions', default=list(CONDITIONS),
                        type=lambda text: text.split(','))
    parser.add_argument('--seconds', type=float, default=60.0,
                        help='watched time per condition and window')
    parser.add_argument('--hogs', type=int, default=2)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--domain-id', type=int, default=random.choice(DOMAIN_RANGE))
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    args = parser.parse_args(argv)
    unknown = set(args.conditions) - set(CONDITIONS)
    if unknown:
        parser.error(f'unknown conditions {sorted(unknown)}; choose from {CONDITIONS}')
    return args


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """Watch every cell, print the table, write the JSON."""
    args = parse_args(argv)
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f'cannot run: {reason}', file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)  # so the namespaces are removed on SIGTERM too
    args.output.mkdir(parents=True, exist_ok=True)
    cells = [(condition, window_s) for condition in args.conditions for window_s in args.windows]
    results = []
    for k, (condition, window_s) in enumerate(cells, 1):
        result = watch_cell(condition, window_s, args)
        if result is None:
            print(f'cell {k}/{len(cells)} {condition} at {window_s:g} s: not run, the window is '
                  f'not longer than the round trip', flush=True)
            continue
        results.append(result)
        print(f'cell {k}/{len(cells)} {json.dumps(result)}', flush=True)
    print(f'\nfalse expiries of one healthy session (assertion period: window / '
          f'{1.0 / assertion_period_s(1.0):g})')
    print(f'{"condition":>16} {"window":>7} {"watched":>8} {"expiries":>8} {"per hour":>8} '
          f'{"heartbeats/expected":>20}  load')
    for result in results:
        print(f"{result['condition']:>16} {result['window_s']:6g}s {result['seconds']:7.0f}s "
              f"{result['expiries']:8d} {result['per_hour']:8.1f} "
              f"{result['heartbeats']:>9d}/{result['expected_heartbeats']:<10d}  "
              f"{result['load']}")
    (args.output / 'false_expiry.json').write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
