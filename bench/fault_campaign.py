"""
A fault campaign: many trials of random faults, each judged on the simulated chip's record.

The robot runs in network namespace `a` (`viam_session_harness.netfault.fleet_robot`: the
session manager, one DC motor driver `/motor0` on a simulated chip, and a lifecycle supervisor
that watches the driver with a `--lease` (0.3 s) liveliness lease, parks its lines when it
dies and brings it back when it is started again); one session from a client process in
namespace `b` (`netfault.session_fleet`, the client library's QoS and assertion rate) drives
the motor across the impairment link (TAP devices and a forwarder that records every
liveliness assertion it writes into the robot's namespace, `netfault.rtps_liveliness`).

Each trial draws a fault and a window (`--windows`, 0.5 s and 2 s) from `random.Random(--seed)`,
starts a fresh session at that window, sees the motor run, applies the fault, and judges:

    deadline = reference + window + 50 ms; the trial FAILS if the motor was powered
    (PWM != 0 on the chip) at any moment after the deadline while the fault lasted

and the figure is `stop - reference - window`, where `stop` is the chip's PWM 0 from which the
motor stayed off until the fault ended (for client faults: until the session had expired).

The faults, and the reference of each:

- `client_sigkill`, `client_sigstop` (frozen until the session expired, then killed),
  `link_down` (the client's TAP down), `loss_100` (the link drops every frame),
  `loss30_delay100_sigkill` (30 % loss and 100 ms delay each way for two windows, then the
  client SIGKILLed): the reference is **the last liveliness assertion of the session's writer
  that the forwarder wrote into the robot's namespace**, that is the last heartbeat the robot
  received, not the last one the client sent: a heartbeat lost on the way renews nothing, and
  the robot owes a stop one window after what it heard. A trial whose writer the forwarder
  never saw cannot be judged and counts as a failure (`unmeasured`).
- `manager_sigkill`, `manager_sigstop_long` (frozen for two windows), `driver_sigkill`: the
  reference is **the fault itself** (the instant the signal was sent). From then on nothing on
  the robot can keep the motor running on purpose: a dead or frozen manager relays no command,
  so the driver's own watchdog (`command_timeout_s`, 0.5 s after the last command) must stop
  it; a dead driver leaves its lines at their last level, so the supervisor must notice the
  lost liveliness and park them. The last heartbeat received says nothing here: the session
  may be healthy. The robot is then restarted as the fault requires (a killed manager or
  driver is started again and serving before the next trial; a frozen one is continued).
- `manager_sigstop_short` (frozen for half a window): the fault ends before any deadline, so
  there is nothing to judge for safety; the trial reports whether the motor stopped during the
  freeze and whether the healthy session survived it (`session_lost`, not a safety failure).

For client faults the CSV also has `expiry_minus_window_ms`: when the session's EXPIRED event
reached the robot's observer, from the same reference (the manager's decision plus delivery).

Outcomes: `stopped` (in time), `powered_after_loss` (a failure of the robot), `unmeasured`
(a failure of the bench: never dropped, always reported with its reason), `not_judged`
(short freezes). Between trials the robot processes are reused; startup is slow.

    sudo .venv/bin/python bench/fault_campaign.py [--trials 1000] [--seed 1]
        [--windows 0.5,2] [--faults client_sigkill,...] [--lease 0.3]

Prints a line per trial ("trial k/N fault ...") and a table at the end; writes
bench_output/fault_campaign.csv (one row per trial), fault_campaign.json (the summary) and
fault_campaign.png (the figures per fault). Needs root (network namespaces); exits 1
without. Exits 0 only if every trial was measured and none left the motor powered.
"""

import argparse
import csv
import json
import os
from pathlib import Path
import random
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

from viam_session_harness.bench_support import judge_stop, loadavg, quantile
from viam_session_harness.netfault import ImpairedPair, netns_unavailable_reason
from viam_session_harness.netfault.fleet_robot import ChipFollower, FIRST_PWM_LINE
from viam_session_harness.netfault.remote_robot_process import RemoteRobotProcess
from viam_session_harness.ros_domains import domain_range

__all__ = ['FAULTS', 'main']

CLIENT_FAULTS = ('client_sigkill', 'client_sigstop', 'link_down', 'loss_100',
                 'loss30_delay100_sigkill')
ROBOT_FAULTS = ('manager_sigkill', 'manager_sigstop_long', 'driver_sigkill')
FAULTS = CLIENT_FAULTS + ROBOT_FAULTS + ('manager_sigstop_short',)
DOMAIN_RANGE = domain_range(range(216, 233))  # Fast DDS refuses domains above 232
DEADLINE_S = 300.0    # longer than the fleet robot's own attempts at a set
CROSSED_S = 10.0      # a live writer's assertions cross within a few of its periods
SET_ATTEMPTS = 3
MARGIN_S = 0.05
# How long past the deadline a robot fault is watched before it ends (restart, SIGCONT).
WATCH_PAST_DEADLINE_S = 0.3
MOTOR = 'motor0'
PWM_LINE = FIRST_PWM_LINE     # /motor0's PWM line on the fleet robot's chip


class TrialFailed(RuntimeError):
    """The bench could not measure the trial (the reason says why)."""


class Campaign:
    """One robot, one impaired pair; the trials run one after another."""

    def __init__(self, pair: ImpairedPair, args: argparse.Namespace) -> None:
        self.pair = pair
        self.args = args
        self.robot: Optional[RemoteRobotProcess] = None
        self.chip: Optional[ChipFollower] = None
        self.restarts = 0
        self.ready_ns = 0

    def ensure_robot(self) -> None:
        """Start the robot scenario, or start it again if it ended."""
        if self.robot is not None and self.robot.process.poll() is None:
            return
        if self.robot is not None:
            self.robot.close()
            self.restarts += 1
        self.robot = RemoteRobotProcess(
            pair=self.pair, window_s=0.0, domain_id=self.args.domain_id, deadline_s=DEADLINE_S,
            log_path=self.args.output / f'fault_campaign_robot_{self.restarts}.log',
            scenario=['viam_session_harness.netfault.fleet_robot', '--motors', '1',
                      '--lease', repr(self.args.lease), '--supervise',
                      '--workdir', str(self.args.output / 'fault_campaign_robot')])
        ready = self.robot.expect('robot_ready')
        self.chip = ChipFollower(Path(ready['chip_dir']))

    def ask(self, command: str, event: str) -> dict:
        """Send a command to the robot; return its answer, TrialFailed on `failed`."""
        self.robot.send(command)
        answer = self.robot.expect(event, 'failed')
        if answer['event'] == 'failed':
            raise TrialFailed(answer['reason'])
        return answer

    def trial(self, fault: str, window_s: float) -> Dict[str, object]:
        """Run one trial; return its row."""
        self.ensure_robot()
        ready, attempts = self._start_session(window_s)
        self.ready_ns = ready['t_ns']     # the motor runs: the trial's record starts here
        self.chip.forget(self.ready_ns)
        pids = self.ask('pids', 'pids')
        if fault == 'loss30_delay100_sigkill':
            self.pair.set_impairment(loss=0.3, delay_s=0.1)
            time.sleep(2 * window_s)
        fault_ns = time.monotonic_ns()
        row: Dict[str, object] = {'fault_ns': fault_ns, 'set_attempts': attempts}
        if fault in CLIENT_FAULTS:
            row.update(self._client_fault(fault, pids['fleet'], ready['writers'][0], window_s,
                                          fault_ns))
        elif fault == 'manager_sigstop_short':
            row.update(self._short_freeze(pids['manager'], window_s))
        else:
            row.update(self._robot_fault(fault, pids, window_s, fault_ns))
        self.ask('clear', 'cleared')
        return row

    def _start_session(self, window_s: float) -> Tuple[dict, int]:
        """
        Start the trial's session and see its heartbeats reach the robot; return the answer.

        After a fault on the link, discovery of a new writer can lag: the manager holds the
        session (it saw the writer) while the writer has not found the manager's reader yet,
        and nothing it asserts crosses. Such a set is ended and started again (the fault is
        not applied yet); after SET_ATTEMPTS the trial is unmeasured.
        """
        attempt = 1
        while True:
            ready = self.ask(f'sessions 1 1 {window_s!r}', 'ready')
            try:
                self._wait_crossed(ready['writers'][0])
                return ready, attempt
            except TrialFailed:
                if attempt == SET_ATTEMPTS:
                    raise
            self.ask('clear', 'cleared')
            attempt += 1

    def _wait_crossed(self, writer: str) -> None:
        """
        Wait until the forwarder has written two of the writer's assertions into the robot.

        The manager can see a new session's writer alive before any of its assertions crossed
        (the set is ready then); a fault at that moment would expire the session one window
        after its start, with no heartbeat received to measure from.
        """
        deadline = time.monotonic() + CROSSED_S
        while True:
            record = self.pair.liveliness([writer]).get(writer)
            if record is not None and record['delivered'] >= 2:
                return
            if time.monotonic() > deadline:
                raise TrialFailed(f'no assertion of writer {writer} crossed in {CROSSED_S} s')
            time.sleep(0.05)

    def _client_fault(self, fault: str, fleet_pid: int, writer: str, window_s: float,
                      fault_ns: int) -> Dict[str, object]:
        if fault == 'link_down':
            self.pair.set_link(self.pair.b.ns, self.pair.b.dev, up=False)
        elif fault == 'loss_100':
            self.pair.set_impairment(loss=1.0)
        else:
            os.kill(fleet_pid, signal.SIGSTOP if fault == 'client_sigstop' else signal.SIGKILL)
        try:
            stopped = self.ask('fault', 'stopped')
            end_ns = time.monotonic_ns()
            # Read before the link is whole again: what crosses after that is not the trial's.
            crossed = self.pair.liveliness([writer])
        finally:
            if fault == 'link_down':
                self.pair.set_link(self.pair.b.ns, self.pair.b.dev, up=True)
            elif fault == 'client_sigstop':
                self.robot.send('kill')     # SIGKILLed and reaped before the next command
            self.pair.set_impairment(loss=0.0, delay_s=0.0)
        record = crossed.get(writer)
        if record is None or record['last'] is None:
            raise TrialFailed(f'the forwarder saw no liveliness assertion of writer {writer}')
        reference_ns = int(record['last'] * 1e9)
        expired_ns = stopped['expired_t_ns']['0']
        return {'reference': 'last assertion received', 'reference_ns': reference_ns,
                'expired_ns': expired_ns, 'expired_before_fault': expired_ns < fault_ns,
                'expiry_minus_window_ms': round((expired_ns - reference_ns) * 1e-6
                                                - window_s * 1e3, 2),
                'assertions_received': record['delivered'],
                **judge_stop(self.chip.changes(PWM_LINE, self.ready_ns), reference_ns,
                             window_s + MARGIN_S, window_s, end_ns)}

    def _robot_fault(self, fault: str, pids: dict, window_s: float,
                     fault_ns: int) -> Dict[str, object]:
        deadline_ns = fault_ns + int((window_s + MARGIN_S) * 1e9)
        if fault == 'driver_sigkill':
            target, name = pids['motors'][MOTOR], MOTOR
        else:
            target, name = pids['manager'], 'session_manager'
        os.kill(target, signal.SIGSTOP if fault == 'manager_sigstop_long' else signal.SIGKILL)
        try:
            if fault == 'manager_sigstop_long':
                _sleep_until(fault_ns + int(2 * window_s * 1e9))
            else:
                _sleep_until(deadline_ns + int(WATCH_PAST_DEADLINE_S * 1e9))
            end_ns = time.monotonic_ns()
        finally:
            if fault == 'manager_sigstop_long':
                os.kill(target, signal.SIGCONT)
        result = judge_stop(self.chip.changes(PWM_LINE, self.ready_ns), fault_ns,
                            window_s + MARGIN_S, window_s, end_ns)
        if fault != 'manager_sigstop_long':
            self.ask(f'restart {name}', 'restarted')
        return {'reference': 'fault', 'reference_ns': fault_ns, **result}

    def _short_freeze(self, manager_pid: int, window_s: float) -> Dict[str, object]:
        fault_ns = time.monotonic_ns()
        os.kill(manager_pid, signal.SIGSTOP)
        try:
            _sleep_until(fault_ns + int(window_s / 2 * 1e9))
        finally:
            os.kill(manager_pid, signal.SIGCONT)
        end_ns = time.monotonic_ns()
        watched = self.ask(f'watch {2 * window_s!r}', 'watched')
        stopped = any(change.value == 0.0 and change.t_ns <= end_ns
                      for change in self.chip.changes(PWM_LINE, fault_ns))
        return {'reference': 'fault', 'reference_ns': fault_ns, 'outcome': 'not_judged',
                'stopped_during_fault': stopped, 'session_lost': bool(watched['ended'])}

    def recover(self) -> None:
        """After a trial that went wrong: a whole link and a robot with no session, or none."""
        self.pair.set_impairment(loss=0.0, delay_s=0.0)
        self.pair.set_link(self.pair.b.ns, self.pair.b.dev, up=True)
        if self.robot is None or self.robot.process.poll() is not None:
            return
        try:
            pids = self.ask('pids', 'pids')
            for pid in (pids['manager'], pids['fleet']):
                if pid is not None:
                    _continue(pid)
            self.ask('clear', 'cleared')
        except (TrialFailed, TimeoutError) as error:
            print(f'  recovery failed ({error}); the robot is started again', flush=True)
            self.close()

    def close(self) -> None:
        if self.robot is not None:
            self.robot.close()
            self.robot = None


def _continue(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _sleep_until(t_ns: int) -> None:
    time.sleep(max(0.0, (t_ns - time.monotonic_ns()) * 1e-9))


def summarise(rows: List[Dict[str, object]]) -> Dict[str, object]:
    """Return the counts and p50/p99/max of the figure per fault and per fault and window."""
    def stats(selected: List[Dict[str, object]]) -> Dict[str, object]:
        figures = [float(row['figure_ms']) for row in selected
                   if row['figure_ms'] not in (None, '')]
        outcomes = [row['outcome'] for row in selected]
        return {'trials': len(selected), 'figures': len(figures),
                'powered_after_loss': outcomes.count('powered_after_loss'),
                'unmeasured': outcomes.count('unmeasured'),
                'not_judged': outcomes.count('not_judged'),
                'session_lost': sum(1 for row in selected if row.get('session_lost') is True),
                'p50_ms': quantile(figures, 0.5) if figures else None,
                'p99_ms': quantile(figures, 0.99) if figures else None,
                'max_ms': max(figures) if figures else None}

    faults = [fault for fault in FAULTS if any(row['fault'] == fault for row in rows)]
    windows = sorted({float(row['window_s']) for row in rows})
    return {'all': stats(rows),
            'per_fault': {fault: stats([row for row in rows if row['fault'] == fault])
                          for fault in faults},
            'per_fault_window': [
                {'fault': fault, 'window_s': window_s, **stats(
                    [row for row in rows if row['fault'] == fault
                     and float(row['window_s']) == window_s])}
                for fault in faults for window_s in windows]}


def _ms(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.1f}'


def print_table(summary: Dict[str, object]) -> None:
    """Print one line per fault and window, then the totals."""
    print(f'{"fault":>24} {"window":>7} {"trials":>6} {"powered":>7} {"unmeas":>6} '
          f'{"p50 ms":>8} {"p99 ms":>8} {"max ms":>8}')
    for cell in summary['per_fault_window']:
        if cell['trials']:
            print(f"{cell['fault']:>24} {cell['window_s']:6g}s {cell['trials']:6d} "
                  f"{cell['powered_after_loss']:7d} {cell['unmeasured']:6d} "
                  f"{_ms(cell['p50_ms']):>8} {_ms(cell['p99_ms']):>8} {_ms(cell['max_ms']):>8}")
    total = summary['all']
    print(f"trials {total['trials']}, powered after loss {total['powered_after_loss']}, "
          f"unmeasured {total['unmeasured']}, not judged (short freezes) {total['not_judged']}"
          f", healthy sessions lost to a short freeze {total['session_lost']}")


def plot(rows: List[Dict[str, object]], path: Path, title: str) -> Optional[Path]:
    """Plot every trial's figure, one column per fault, one panel per window; or None."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    faults = [fault for fault in FAULTS if fault != 'manager_sigstop_short'
              and any(row['fault'] == fault for row in rows)]
    windows = sorted({float(row['window_s']) for row in rows})
    if not faults or not windows:
        return None
    figure, axes = pyplot.subplots(1, len(windows), figsize=(6 * len(windows), 5),
                                   squeeze=False, sharey=False)
    jitter = random.Random(0)
    for panel, window_s in zip(axes[0], windows):
        series = [[float(row['figure_ms']) for row in rows if row['fault'] == fault
                   and float(row['window_s']) == window_s and row['figure_ms'] not in (None, '')]
                  for fault in faults]
        for column, values in enumerate(series, 1):
            panel.scatter([column + jitter.uniform(-0.15, 0.15) for _ in values], values, s=8,
                          alpha=0.5)
        if any(series):
            panel.boxplot([values or [float('nan')] for values in series], showfliers=False)
        panel.axhline(MARGIN_S * 1e3, color='red', linewidth=0.8, linestyle='--')
        panel.set_yscale('symlog', linthresh=10.0)    # robot faults stop a window early
        panel.set_xticks(range(1, len(faults) + 1))
        panel.set_xticklabels(faults, rotation=45, ha='right', fontsize='small')
        panel.set_title(f'window {window_s:g} s', fontsize='medium')
        panel.set_ylabel('stop - reference - window (ms, symlog)')
        panel.grid(True, alpha=0.3)
    figure.suptitle(title, fontsize='medium')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--trials', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--windows', default=[0.5, 2.0],
                        type=lambda text: [float(part) for part in text.split(',')])
    parser.add_argument('--faults', default=list(FAULTS), type=lambda text: text.split(','))
    parser.add_argument('--lease', type=float, default=0.3,
                        help="the supervisor's liveliness lease on the driver (s)")
    parser.add_argument('--domain-id', type=int, default=random.choice(DOMAIN_RANGE))
    parser.add_argument('--output', type=Path, default=Path('bench_output'))
    args = parser.parse_args(argv)
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f'unknown faults {sorted(unknown)}; choose from {FAULTS}')
    if args.trials < 1 or min(args.windows) <= 0.2:
        parser.error('need --trials >= 1 and windows above 0.2 s (the 100 ms delay each way)')
    if args.lease + MARGIN_S >= min(args.windows):
        parser.error('the lease must be shorter than the smallest window minus 50 ms')
    return args


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


FIELDS = ['trial', 'fault', 'window_s', 'outcome', 'figure_ms', 'reference', 'reference_ns',
          'fault_ns', 'stop_ns', 'expired_ns', 'expiry_minus_window_ms',
          'expired_before_fault', 'assertions_received',
          'stopped_during_fault', 'session_lost', 'set_attempts', 'seconds', 'load', 'reason']


def main(argv: Optional[List[str]] = None) -> int:
    """Run the trials, print the table, write CSV, JSON and the plot."""
    args = parse_args(argv)
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f'cannot run: {reason}', file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)  # so the namespaces are removed on SIGTERM too
    args.output.mkdir(parents=True, exist_ok=True)
    draw = random.Random(args.seed)
    plan = [(draw.choice(args.faults), draw.choice(args.windows)) for _ in range(args.trials)]
    rows: List[Dict[str, object]] = []
    began = time.monotonic()
    load_before = loadavg()
    print(f'{args.trials} trials, seed {args.seed}; load average {load_before}', flush=True)
    try:
        with ImpairedPair(seed=args.seed) as pair:
            campaign = Campaign(pair, args)
            try:
                campaign.ensure_robot()
                print(f'robot up in {time.monotonic() - began:.0f} s', flush=True)
                for k, (fault, window_s) in enumerate(plan, 1):
                    trial_began = time.monotonic()
                    row: Dict[str, object] = {'trial': k, 'fault': fault, 'window_s': window_s}
                    try:
                        row.update(campaign.trial(fault, window_s))
                    except (TrialFailed, TimeoutError, OSError, KeyError) as error:
                        row.update(outcome='unmeasured', reason=f'{type(error).__name__}: '
                                   f'{error}')
                        campaign.recover()
                    row.update(seconds=round(time.monotonic() - trial_began, 1),
                               load=loadavg())
                    rows.append({field: row.get(field, '') for field in FIELDS})
                    print(f'trial {k}/{args.trials} fault {fault} window {window_s:g} s: '
                          f"{row['outcome']}"
                          + (f", stop - reference - window {row['figure_ms']} ms"
                             if row.get('figure_ms') is not None else '')
                          + (f" ({row['reason']})" if row.get('reason') else '')
                          + f' ({time.monotonic() - began:.0f} s, load {row["load"]})',
                          flush=True)
            finally:
                campaign.close()
    finally:
        if rows:
            with open(args.output / 'fault_campaign.csv', 'w', newline='') as output:
                writer = csv.DictWriter(output, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows(rows)
    summary = summarise(rows)
    elapsed = time.monotonic() - began
    print(f'\nfault campaign: stop - reference - window (ms), {len(rows)} trials, seed '
          f'{args.seed}, {elapsed:.0f} s; load average before {load_before}, after {loadavg()}')
    print_table(summary)
    (args.output / 'fault_campaign.json').write_text(json.dumps(
        {'summary': summary, 'trials': len(rows), 'seed': args.seed, 'windows': args.windows,
         'lease_s': args.lease, 'seconds': round(elapsed), 'load_before': load_before,
         'load_after': loadavg()}, indent=1))
    picture = plot(rows, args.output / 'fault_campaign.png',
                   f'fault campaign: PWM 0 - reference - window, {len(rows)} trials (seed '
                   f'{args.seed}; dashed: the 50 ms allowance)')
    print(f'wrote {args.output / "fault_campaign.csv"}, fault_campaign.json'
          + (f' and {picture}' if picture else ''))
    total = summary['all']
    return 0 if total['powered_after_loss'] == 0 and total['unmeasured'] == 0 else 2


if __name__ == '__main__':
    sys.exit(main())
