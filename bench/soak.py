"""
Soak: healthy sessions behind a lossy, slow link on a saturated CPU, for an hour by default.

The robot runs in network namespace `a` (`viam_session_harness.netfault.fleet_robot`: the
session manager, a DC motor driver per driven session on a simulated chip, a lifecycle
supervisor watching them); `--sessions` (4) healthy sessions come from one client process in
namespace `b` (`netfault.session_fleet`: a heartbeat writer per session, the client library's
QoS and assertion rate, window/12.5), across the impairment link. Session i has window
`--windows`[i mod 2] (0.5 s and 2 s); sessions 0 and 1 each drive a motor. Both at once:

- the link drops 30 % of the frames and delays the rest 100 ms each way (switched on once the
  sessions run: a session cannot even start within one window behind that link reliably);
- `--hogs` (2) busy-looping processes at normal priority keep both cores saturated, on top of
  the robot, the client and the forwarder.

The client never stops, so **every session that ends is a false expiry** (target 0). For each
session the bench also reports **the longest gap between two of its liveliness assertions that
the forwarder wrote into the robot's namespace** (what the robot really received; the longest
gap a session survived says how close it came to a window), and the longest gap between two
of the client's own assertions (a gap there and not only on the link is a starved client).
A progress line comes every `--progress-s` (60 s). After a false expiry the set is started
again (the hogs paused and the loss off while it starts, as `false_expiry.py` does) and the
watch goes on; the gaps of every set count.

    sudo .venv/bin/python bench/soak.py [--seconds 3600] [--windows 0.5,2] [--sessions 4]
        [--hogs 2] [--seed 1]

Writes bench_output/soak.json. Needs root (network namespaces); exits 1 without, 2 if a
session expired falsely (or the set could not be started again), 0 otherwise.
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

from viam_session_harness.bench_support import cpu_hogs, loadavg
from viam_session_harness.netfault import ImpairedPair, netns_unavailable_reason
from viam_session_harness.netfault.remote_robot_process import RemoteRobotProcess
from viam_session_harness.ros_domains import domain_range

__all__ = ['main']

DOMAIN_RANGE = domain_range(range(216, 233))  # Fast DDS refuses domains above 232
DEADLINE_S = 180.0
LOSS = 0.3
DELAY_S = 0.1
DRIVEN = 2


class SetFailed(RuntimeError):
    """The robot could not start the set of sessions (see its log)."""


class Soak:
    """The robot, its sessions and their record, across restarts of the set."""

    def __init__(self, pair: ImpairedPair, args: argparse.Namespace) -> None:
        self.pair = pair
        self.args = args
        self.windows = ','.join(repr(window) for window in args.windows)
        self.robot = RemoteRobotProcess(
            pair=pair, window_s=0.0, domain_id=args.domain_id, deadline_s=DEADLINE_S,
            log_path=args.output / 'soak_robot.log',
            scenario=['viam_session_harness.netfault.fleet_robot',
                      '--motors', str(min(DRIVEN, args.sessions)),
                      '--workdir', str(args.output / 'soak_robot')])
        self.robot.expect('robot_ready')
        self.writers: List[str] = []
        self.handles: List[str] = []
        self.finished: List[Dict[str, object]] = []    # the record of earlier sets' writers
        self.sent_gaps_ms: List[float] = []

    def start_set(self, hogs: List[subprocess.Popen]) -> None:
        """Start the sessions on a clean link with the hogs paused; then impair, resume."""
        self.pair.set_impairment(loss=0.0, delay_s=0.0)
        _signal(hogs, signal.SIGSTOP)
        try:
            self.robot.send(f'sessions {self.args.sessions} {min(DRIVEN, self.args.sessions)} '
                            f'{self.windows}')
            ready = self.robot.expect('ready', 'failed')
            if ready['event'] == 'failed':
                raise SetFailed(ready['reason'])
            self.writers, self.handles = ready['writers'], ready['handles']
            self.sent_gaps_ms = []
        finally:
            self.pair.set_impairment(loss=LOSS, delay_s=DELAY_S)
            _signal(hogs, signal.SIGCONT)

    def gaps(self) -> List[Dict[str, object]]:
        """Return each current session's record: window, assertions received, longest gap."""
        crossed = self.pair.liveliness(self.writers)
        sessions = []
        for index, writer in enumerate(self.writers):
            record = crossed.get(writer, {})
            sessions.append({
                'session': index, 'window_s': self.args.windows[index % len(self.args.windows)],
                'writer': writer, 'received': record.get('delivered', 0),
                'dropped': record.get('dropped', 0),
                'longest_gap_ms': round(record.get('max_gap_s', 0.0) * 1e3, 1),
                'longest_sent_gap_ms': (self.sent_gaps_ms[index]
                                        if index < len(self.sent_gaps_ms) else None)})
        return sessions

    def watch(self, seconds: float) -> Dict[str, int]:
        """Watch the set for `seconds`; return the sessions that ended meanwhile."""
        self.robot.send(f'watch {seconds!r}')
        watched = self.robot.expect('watched')
        self.sent_gaps_ms = watched['sent_gaps_ms']
        return watched['ended']

    def close(self) -> None:
        self.robot.close()


def _signal(processes: List[subprocess.Popen], signum: int) -> None:
    for process in processes:
        process.send_signal(signum)


def _longest(records: List[Dict[str, object]], windows: List[float]) -> Dict[str, float]:
    """Return the longest gap (ms) over every session of each window."""
    return {f'{window:g}': max((float(record['longest_gap_ms']) for record in records
                                if record['window_s'] == window), default=0.0)
            for window in windows}


def soak(args: argparse.Namespace) -> Dict[str, object]:
    """Run the soak; return its record."""
    began = time.monotonic()
    false_expiries: List[Dict[str, object]] = []
    load_before = loadavg()
    with ImpairedPair(seed=args.seed) as pair:
        run = Soak(pair, args)
        try:
            with cpu_hogs(args.hogs) as hogs:
                run.start_set(hogs)
                watched_s = 0.0
                while watched_s < args.seconds:
                    step = min(args.progress_s, args.seconds - watched_s)
                    step_began = time.monotonic()
                    ended = run.watch(step)
                    watched_s += time.monotonic() - step_began
                    current = run.gaps()
                    if ended:
                        for handle, state in ended.items():
                            index = run.handles.index(handle)
                            false_expiries.append({
                                'after_s': round(watched_s, 1), 'session': index,
                                'window_s': current[index]['window_s'], 'state': state,
                                'longest_gap_ms': current[index]['longest_gap_ms'],
                                'longest_sent_gap_ms': current[index]['longest_sent_gap_ms']})
                        run.finished += current
                        run.start_set(hogs)
                    longest = _longest(run.finished + current, args.windows)
                    print(f'{watched_s:6.0f} s / {args.seconds:g} s: false expiries '
                          f'{len(false_expiries)}; longest gap between received assertions: '
                          + ', '.join(f'{gap:.0f} ms at window {window} s'
                                      for window, gap in longest.items())
                          + f" (the client's own, this set: {max(run.sent_gaps_ms, default=0):.0f}"
                          f' ms); load {loadavg()}', flush=True)
                sessions = run.finished + run.gaps()
            stats = pair.stats()
        finally:
            run.close()
    return {'seconds': round(watched_s, 1), 'windows': args.windows,
            'sessions': args.sessions, 'hogs': args.hogs, 'loss': LOSS, 'delay_s': DELAY_S,
            'false_expiries': false_expiries, 'sessions_record': sessions,
            'longest_gap_ms': _longest(sessions, args.windows),
            'frames_forwarded': stats['forwarded'], 'frames_dropped': stats['dropped'],
            'load_before': load_before, 'load_after': loadavg(),
            'wall_s': round(time.monotonic() - began)}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--seconds', type=float, default=3600.0, help='watched time')
    parser.add_argument('--windows', default=[0.5, 2.0],
                        type=lambda text: [float(part) for part in text.split(',')])
    parser.add_argument('--sessions', type=int, default=4)
    parser.add_argument('--hogs', type=int, default=2)
    parser.add_argument('--progress-s', type=float, default=60.0)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--domain-id', type=int, default=random.choice(DOMAIN_RANGE))
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.seconds <= 0 or args.progress_s <= 0:
        parser.error('need --sessions >= 1, --seconds > 0 and --progress-s > 0')
    if min(args.windows) <= 2 * DELAY_S:
        parser.error(f'windows must be longer than the round trip ({2 * DELAY_S:g} s)')
    return args


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """Soak, print the summary, write the JSON."""
    args = parse_args(argv)
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f'cannot run: {reason}', file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)  # so the namespaces are removed on SIGTERM too
    args.output.mkdir(parents=True, exist_ok=True)
    print(f'soak: {args.sessions} sessions at windows {args.windows} for {args.seconds:g} s, '
          f'{LOSS:.0%} loss + {DELAY_S * 1e3:.0f} ms each way, {args.hogs} CPU hogs; load '
          f'{loadavg()}', flush=True)
    try:
        result = soak(args)
    except SetFailed as error:
        print(f'the sessions could not be started: {error}', file=sys.stderr)
        return 2
    (args.output / 'soak.json').write_text(json.dumps(result, indent=1))
    print(f"\nwatched {result['seconds']:g} s; false expiries {len(result['false_expiries'])}"
          f"; frames forwarded {result['frames_forwarded']}, dropped "
          f"{result['frames_dropped']}; load {result['load_before']} -> {result['load_after']}")
    for record in result['sessions_record']:
        print(f"  session {record['session']} (window {record['window_s']:g} s): "
              f"{record['received']} assertions received, {record['dropped']} dropped, longest "
              f"gap {record['longest_gap_ms']:.0f} ms (between the client's own assertions: "
              f"{record['longest_sent_gap_ms']} ms)")
    print(f'wrote {args.output / "soak.json"}')
    return 0 if not result['false_expiries'] else 2


if __name__ == '__main__':
    sys.exit(main())
