"""
A robot with many actuators whose many sessions come from another network namespace.

`python -m viam_session_harness.netfault.fleet_robot CLIENT_NS [--motors K]` runs in the robot's
namespace: the session manager, K DC motor drivers `/motor0` ... on one simulated chip (a
`SimRobot`), and a lifecycle supervisor process watching the drivers (it neither spawns nor
starts them: the robot does). The sessions come from a `session_fleet` process started in
CLIENT_NS through `ip netns exec`, so their heartbeats cross the link between the namespaces.

`--lease S` is the supervisor's liveliness lease on each driver (and the lease the drivers
offer), default 2 s. With `--supervise` the supervisor's tree is started once everything runs
(the drivers are active already, so it only takes them over), with a respawn budget that does
not run out: a driver found dead has its lines parked, and one started again (`restart`) is
unparked, configured and activated by the supervisor, as on a robot.

It prints `robot_ready` (manager and supervisor pids, chip directory) once everything runs,
then reads commands on stdin, one per line, and prints JSON lines with CLOCK_MONOTONIC times:

    sessions N M WINDOWS   ->  ready {fleet_pid, handles, writers}: N fresh sessions (the
                               fleet is restarted if it died; WINDOWS one window or a comma
                               list, see session_fleet), actuator j < M driven by session j mod N
                               and seen running on the chip, and every session's writer seen
                               alive by the manager (`list_sessions`: its last heartbeat is
                               later than its start); until then a session would expire one
                               window after its start, not after its last heartbeat. If one
                               does, the set is dropped (`retry`) and started again; after
                               3 attempts: failed {reason}
    hold                   ->  held {last_ns, writers}: the fleet stopped asserting (see
                               session_fleet)
    resume                 ->  (no answer) the fleet asserts again
    kill                   ->  (no answer) the fleet process is SIGKILLed (and reaped)
    fault                  ->  stopped {stop_t_ns, expired_t_ns}: for each driven actuator the
                               first PWM 0 after it ran, and each session's EXPIRED event
    cpu SECONDS            ->  cpu {manager, supervisor}: CPU (% of one core, from
                               /proc/<pid>/stat) over SECONDS, RSS and threads at the end
    pids                   ->  pids {manager, supervisor, fleet, motors}: the processes' pids
                               (a caller that signals them itself)
    restart NAME           ->  restarted {name, pid}: `session_manager` or a motor, killed by
                               the caller, started again and serving (the manager answers
                               `list_sessions`; a motor is active again), or failed {reason}
    clear                  ->  cleared: the current set's writers destroyed, each of its
                               sessions over (ended, or unknown to a restarted manager) and its
                               motors at PWM 0
    watch SECONDS          ->  watched {ended, sent_gaps_ms}: after SECONDS, the sessions of
                               the current set that ended meanwhile (handle -> event state), and
                               the longest gap between the fleet's assertions per session
"""

import argparse
import json
import os
from pathlib import Path
import queue
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from builtin_interfaces.msg import Time
from lifecycle_msgs.msg import State, Transition
from std_srvs.srv import Trigger

from viam_session.chips.sim_chip import CHANGES_FILE, LineChange
from viam_session_harness.netfault.session_fleet import actuator_name, owner_of
from viam_session_harness.sim_robot import MotorSpec, SimRobot
from viam_session_interfaces.msg import SessionEvent
from viam_session_interfaces.srv import ListSessions

__all__ = ['ChipFollower', 'main', 'process_usage']

TIMEOUT_S = 60.0
FIRST_PWM_LINE = 100
SUPERVISOR_LEASE_S = 2.0
SUPERVISOR_STARTUP = '/lifecycle_supervisor/startup'
# A driver brought back by hand after each of many kills: the budget must not run out.
UNLIMITED_RESPAWN = {'max_attempts': 1000000, 'backoff_s': 0.05, 'within_s': 1.0}
START_ATTEMPTS = 3
COMMAND_AGAIN_S = 0.5
ASK_AGAIN_S = 5.0
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def emit(event: str, **fields: object) -> None:
    print(json.dumps({'event': event, 't_ns': time.monotonic_ns(), **fields}), flush=True)


def _stamp(stamp: Time) -> Tuple[int, int]:
    return stamp.sec, stamp.nanosec


class ChipFollower:
    """
    Follows a simulated chip's record incrementally (it grows by every re-sent command).

    `wait()` polls the record; the instants it returns are the record's own, so the polling
    period does not enter the measurement.
    """

    def __init__(self, chip_dir: Path) -> None:
        self._path = chip_dir / CHANGES_FILE
        self._offset = 0
        self._pending = b''
        self._changes: Dict[int, List[LineChange]] = {}

    def _read(self) -> None:
        try:
            with open(self._path, 'rb') as record:
                record.seek(self._offset)
                data = record.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._pending + data).split(b'\n')
        self._pending = lines.pop()
        for text in lines:
            change = LineChange(**json.loads(text))
            if change.kind == 'pwm':
                self._changes.setdefault(change.line, []).append(change)

    def changes(self, line: int, after_ns: int) -> List[LineChange]:
        """Return the PWM changes of `line` recorded after `after_ns`, oldest first."""
        self._read()
        return [change for change in self._changes.get(line, []) if change.t_ns > after_ns]

    def forget(self, before_ns: int) -> None:
        """Drop the changes recorded before `before_ns` (never asked for again)."""
        for line, changes in self._changes.items():
            self._changes[line] = [change for change in changes if change.t_ns >= before_ns]

    def wait_current(self, line: int, duty: float, timeout_s: float = TIMEOUT_S) -> None:
        """Wait until the last recorded PWM duty of `line` is `duty`."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._read()
            changes = self._changes.get(line)
            if not changes or changes[-1].value == duty:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f'line {line}: still at PWM {changes[-1].value}')
            time.sleep(0.002)

    def wait_final_zero(self, line: int, after_ns: int,
                        timeout_s: float = TIMEOUT_S) -> LineChange:
        """Return the PWM 0 of `line` after `after_ns` that its last change (duty 0) belongs to."""
        self.wait_current(line, 0.0, timeout_s)
        changes = [change for change in self._changes.get(line, []) if change.t_ns > after_ns]
        while len(changes) > 1 and changes[-2].value == 0.0:
            changes.pop()
        if not changes or changes[-1].value != 0.0:
            raise TimeoutError(f'line {line}: no PWM 0 after {after_ns}')
        return changes[-1]

    def wait(self, line: int, predicate: Callable[[float], bool], after_ns: int,
             timeout_s: float = TIMEOUT_S) -> LineChange:
        """Return the first PWM change of `line` after `after_ns` whose duty meets `predicate`."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._read()
            changes = self._changes.get(line, [])
            for change in changes:
                if change.t_ns > after_ns and predicate(change.value):
                    # Older changes are never asked for again: forget them.
                    self._changes[line] = changes[changes.index(change):]
                    return change
            if time.monotonic() > deadline:
                raise TimeoutError(f'line {line}: no matching PWM change within {timeout_s} s')
            time.sleep(0.002)


def process_usage(pid: int) -> Dict[str, float]:
    """Return a process's CPU seconds (user + system, all threads), RSS (MiB) and threads."""
    stat = Path(f'/proc/{pid}/stat').read_text()
    fields = stat[stat.rindex(')') + 2:].split()
    status = dict(line.split(':', 1) for line in
                  Path(f'/proc/{pid}/status').read_text().splitlines() if ':' in line)
    return {'cpu_s': (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            'rss_mib': int(status['VmRSS'].split()[0]) / 1024.0,
            'threads': int(status['Threads'])}


class FleetProcess:
    """The `session_fleet` process in the client namespace; its JSON lines in a queue."""

    def __init__(self, client_ns: str, env: Dict[str, str], log_path: Path) -> None:
        self._log = open(log_path, 'a', encoding='utf-8')
        self.process = subprocess.Popen(
            ['ip', 'netns', 'exec', client_ns, sys.executable, '-m',
             'viam_session_harness.netfault.session_fleet'], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        self._lines: 'queue.Queue[dict]' = queue.Queue()
        self._owed = 0    # answers not read yet (an ask that timed out leaves one)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for text in self.process.stdout:
            self._lines.put(json.loads(text))
        self._lines.put({'event': 'exit'})

    def ask(self, command: str, event: str) -> dict:
        """Send a command and return the answer `event`; RuntimeError if the fleet ended."""
        self._drain_late_answers()
        self.process.stdin.write(command + '\n')
        self.process.stdin.flush()
        self._owed += 1
        line = self._next(f'no {event!r} from the fleet within {TIMEOUT_S} s')
        if line['event'] != event:
            raise RuntimeError(f'the fleet answered {line} to {command!r}')
        return line

    def _drain_late_answers(self) -> None:
        """Drop the answers to commands whose ask timed out: each command gets one answer."""
        while self._owed:
            self._next(f'the fleet still owes {self._owed} answer(s) after {TIMEOUT_S} s')

    def _next(self, timeout_message: str) -> dict:
        try:
            line = self._lines.get(timeout=TIMEOUT_S)
        except queue.Empty:
            raise TimeoutError(timeout_message) from None
        if line['event'] == 'exit':
            raise RuntimeError('the fleet process ended')
        self._owed -= 1
        return line

    def tell(self, command: str) -> None:
        self.process.stdin.write(command + '\n')
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()


def _supervisor_description(path: Path, motors: List[MotorSpec], chip_dir: Path,
                            lease_s: float) -> Path:
    nodes = [{'name': motor.name, 'driver': 'dc_motor',
              'parameters': {'chip': str(chip_dir), 'pwm_line': motor.pwm_line,
                             'direction_line': motor.direction_line},
              'liveliness_lease_s': lease_s, 'respawn': UNLIMITED_RESPAWN} for motor in motors]
    description = {'robot': {'name': 'fleet_bench', 'primary': {
        'name': 'base', 'namespace': '/', 'host': 'bench', 'nodes': nodes}}}
    path.write_text(json.dumps(description))  # JSON is YAML
    return path


class FleetRobot:
    """The robot side: a SimRobot, a supervisor watching it, the fleet, the chip follower."""

    def __init__(self, client_ns: str, motors: int, workdir: Path, *,
                 lease_s: float = SUPERVISOR_LEASE_S, supervise: bool = False) -> None:
        self._client_ns = client_ns
        self._workdir = workdir
        self._supervise = supervise
        specs = [MotorSpec(actuator_name(j)[1:], FIRST_PWM_LINE + 2 * j,
                           FIRST_PWM_LINE + 2 * j + 1) for j in range(motors)]
        self.robot = SimRobot(workdir=workdir, motors=specs,
                              driver_parameters=[f'liveliness_lease_s:={lease_s!r}'])
        self.robot.start(timeout_s=TIMEOUT_S * 4)
        self._chip = ChipFollower(self.robot.chip_dir)
        self._last_stop_ns = [0] * motors
        self._running_ns = [0] * motors
        self._driven = 0
        self._handles: List[str] = []
        description = _supervisor_description(workdir / 'robot.yaml', specs,
                                              self.robot.chip_dir, lease_s)
        with open(workdir / 'supervisor.log', 'w', encoding='utf-8') as log:
            self.supervisor = subprocess.Popen(
                [sys.executable, '-m', 'viam_session.supervisor.supervisor_node', '--ros-args',
                 '-p', f'robot_description:={description}', '-p', 'host:=bench',
                 '-p', f'default_liveliness_lease_s:={lease_s!r}'],
                env=self.robot.env, stdout=log, stderr=subprocess.STDOUT)
        self._fleet: Optional[FleetProcess] = None
        if supervise:
            started = self.robot.call(SUPERVISOR_STARTUP, Trigger.Request(),
                                      timeout_s=TIMEOUT_S, service_type=Trigger)
            if not started.success:
                raise RuntimeError(f'the supervisor did not start: {started.message}')

    def sessions(self, count: int, actuators: int, window_s: str) -> None:
        """
        Start `count` fresh sessions driving the first `actuators` motors; see them run.

        `window_s`: one window in seconds, or a comma list (session_fleet).
        """
        for _ in range(START_ATTEMPTS):
            if self._fleet is None or self._fleet.process.poll() is not None:
                if self._fleet is not None:
                    self._fleet.close()
                self._fleet = FleetProcess(self._client_ns, self.robot.env,
                                           self._workdir / 'fleet.log')
            attempt_ns = time.monotonic_ns()
            started = self._fleet.ask(f'start {count} {window_s} {actuators}', 'started')
            self._handles = started['handles'] or self._fleet_handles(attempt_ns)
            self._driven = actuators
            if ('error' not in started and self._all_alive()
                    and self._wait_running(actuators, attempt_ns)):
                emit('ready', fleet_pid=self._fleet.process.pid, handles=self._handles,
                     writers=self._fleet.ask('writers', 'writers')['writers'])
                return
            # A session ended before the set was ready: its writer was not matched within a
            # window of its start (after a link flap, discovery can take longer than 100 ms),
            # or it expired falsely on a loaded machine. Let every session of this attempt end
            # and its motors stop, then start afresh.
            self._fleet.ask(f'start 0 {window_s} 0', 'started')
            for handle in self._handles:
                self.robot.events.wait_for(
                    lambda item, handle=handle: item.message.handle == handle
                    and item.message.state != SessionEvent.STARTED, TIMEOUT_S, 'session end')
            for j in range(actuators):
                self._chip.wait_current(self._pwm_line(j), 0.0)
                self._last_stop_ns[j] = time.monotonic_ns()
            emit('retry', reason=started.get('error', 'a session ended before the set ran'))
        raise RuntimeError(f'no set of {count} sessions all alive in {START_ATTEMPTS} attempts')

    def _wait_running(self, actuators: int, attempt_ns: int) -> bool:
        """
        Wait until the motors run (True) or a session of the set ended (False).

        Only PWM changes after `attempt_ns` (and the motor's last stop) count: a motor still
        running from before (a driver back while an old session held it) proves nothing.
        The commands are sent again now and then: one can be lost while discovery settles.
        """
        deadline = time.monotonic() + TIMEOUT_S
        for j in range(actuators):
            while True:
                try:
                    self._running_ns[j] = self._chip.wait(
                        self._pwm_line(j), lambda duty: duty > 0.0,
                        max(self._last_stop_ns[j], attempt_ns), timeout_s=COMMAND_AGAIN_S).t_ns
                    break
                except TimeoutError:
                    if self._ended():
                        return False
                    if time.monotonic() > deadline:
                        raise
                    self._fleet.ask('command', 'commanded')
        return not self._ended()

    def _ended(self) -> bool:
        ids = set(self._handles)
        return any(item.message.handle in ids and item.message.state != SessionEvent.STARTED
                   for item in self.robot.events.snapshot())

    def _fleet_handles(self, attempt_ns: int) -> List[str]:
        """Return the handles of the sessions the fleet started after `attempt_ns`."""
        return [event.message.handle for event in self.robot.events.snapshot()
                if event.message.state == SessionEvent.STARTED
                and event.message.client.startswith('fleet_') and event.t_ns > attempt_ns]

    def _pwm_line(self, actuator: int) -> int:
        return self.robot.motors[actuator_name(actuator)[1:]].pwm_line

    def _all_alive(self) -> bool:
        """Wait until the manager saw every session's writer alive (True) or one ended."""
        started = {}
        for handle in self._handles:
            event = self.robot.wait_for_event(handle, SessionEvent.STARTED,
                                              timeout_s=TIMEOUT_S)
            started[handle] = _stamp(event.message.last_heartbeat)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            listed = {info.handle: _stamp(info.last_heartbeat) for info in self.robot.call(
                '/session_manager/list_sessions', ListSessions.Request()).sessions}
            if any(handle not in listed for handle in started):
                return False
            if all(listed[handle] > stamp for handle, stamp in started.items()):
                return True
            if time.monotonic() > deadline:
                raise TimeoutError(f'sessions not alive within {TIMEOUT_S} s')
            time.sleep(0.005)

    def hold(self) -> None:
        held = self._fleet.ask('hold', 'held')
        emit('held', last_ns=held['last_ns'], writers=held['writers'])

    def resume(self) -> None:
        self._fleet.tell('resume')

    def kill(self) -> None:
        self._fleet.process.kill()
        self._fleet.process.wait(timeout=TIMEOUT_S)

    def stopped(self) -> None:
        """
        Report each driven motor's PWM 0 and the sessions' EXPIRED events.

        The stop is the PWM 0 after which the motor stayed off, found once the owners have
        expired: on a loaded machine the manager's keep-alive can come late, and the driver's
        own watchdog then stops the motor for a moment before the next command.
        """
        owners = {owner_of(j, len(self._handles)) for j in range(self._driven)}
        expired = {}
        for index in sorted(owners):
            event = self.robot.wait_for_event(self._handles[index], SessionEvent.EXPIRED,
                                              timeout_s=TIMEOUT_S)
            expired[index] = event.t_ns
        stops = []
        for j in range(self._driven):
            change = self._chip.wait_final_zero(self._pwm_line(j), self._running_ns[j])
            self._last_stop_ns[j] = change.t_ns
            stops.append(change.t_ns)
        emit('stopped', stop_t_ns=stops, expired_t_ns=expired)

    def pids(self) -> None:
        fleet = self._fleet.process.pid if self._fleet is not None else None
        emit('pids', manager=self.robot.process('session_manager').pid,
             supervisor=self.supervisor.pid, fleet=fleet,
             motors={name: self.robot.process(name).pid for name in self.robot.motors})

    def restart(self, name: str) -> None:
        """Start `name` again after the caller killed it; report once it serves."""
        process = self.robot.respawn(name, timeout_s=TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        if name == 'session_manager':
            self._list_sessions(deadline)
        elif self._supervise:
            # The supervisor unparks its lines and brings it up, as it would on a robot.
            while self._state(name, deadline) != State.PRIMARY_STATE_ACTIVE:
                time.sleep(0.05)
        else:
            for transition, goal in ((Transition.TRANSITION_CONFIGURE,
                                      State.PRIMARY_STATE_INACTIVE),
                                     (Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)):
                if not self.robot.bring_to(name, transition, goal, deadline):
                    raise RuntimeError(f'{name} refused transition {transition}')
        emit('restarted', name=name, pid=process.pid)

    def _list_sessions(self, deadline: float) -> list:
        """
        Return the manager's live sessions, asking again until `deadline`.

        A request sent while a restarted manager's reply writer has not matched this client
        yet is never answered, so one unanswered request is not the end.
        """
        while True:
            try:
                return self.robot.call('/session_manager/list_sessions', ListSessions.Request(),
                                       timeout_s=ASK_AGAIN_S).sessions
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def _state(self, name: str, deadline: float) -> int:
        """Return the driver's lifecycle state; TimeoutError past `deadline`."""
        while True:
            try:
                return self.robot.lifecycle_state(name, timeout_s=5.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def clear(self) -> None:
        """End the current set: writers gone, every session over, its motors at PWM 0."""
        if self._fleet is not None and self._fleet.process.poll() is None:
            try:
                self._fleet.ask('start 0 1.0 0', 'started')
            except RuntimeError:
                pass    # the fleet ended (killed a moment ago): its writers went with it
        ids = set(self._handles)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            listed = {info.handle for info in self._list_sessions(deadline)}
            if not ids & listed:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f'sessions {sorted(ids & listed)} still live')
            time.sleep(0.05)
        for j in range(self._driven):
            self._chip.wait_current(self._pwm_line(j), 0.0)
            self._last_stop_ns[j] = time.monotonic_ns()
        emit('cleared')

    def watch(self, seconds: float) -> None:
        """Report, after `seconds`, which sessions of the current set ended meanwhile."""
        time.sleep(seconds)
        ids = set(self._handles)
        ended = {item.message.handle: int(item.message.state)
                 for item in self.robot.events.snapshot()
                 if item.message.handle in ids and item.message.state != SessionEvent.STARTED}
        gaps = self._fleet.ask('gaps', 'gaps')['longest_ms'] if self._fleet is not None else []
        emit('watched', ended=ended, sent_gaps_ms=gaps)

    def cpu(self, seconds: float) -> None:
        """Measure the manager's and the supervisor's CPU over `seconds`."""
        pids = {'manager': self.robot.process('session_manager').pid,
                'supervisor': self.supervisor.pid}
        before = {name: process_usage(pid) for name, pid in pids.items()}
        began = time.monotonic()
        time.sleep(seconds)
        wall_s = time.monotonic() - began
        result = {}
        for name, pid in pids.items():
            after = process_usage(pid)
            result[name] = {'cpu_pct': 100.0 * (after['cpu_s'] - before[name]['cpu_s']) / wall_s,
                            'rss_mib': after['rss_mib'], 'threads': after['threads']}
        emit('cpu', seconds=wall_s, **result)

    def close(self) -> None:
        if self._fleet is not None:
            self._fleet.close()
        if self.supervisor.poll() is None:
            self.supervisor.terminate()
            try:
                self.supervisor.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.supervisor.kill()
                self.supervisor.wait()
        self.robot.close()


def main() -> None:
    """Run the robot; answer the commands on stdin (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('client_ns')
    parser.add_argument('--motors', type=int, default=32)
    parser.add_argument('--workdir', type=Path, help='keep the logs and chip here')
    parser.add_argument('--lease', type=float, default=SUPERVISOR_LEASE_S,
                        help="the supervisor's liveliness lease on each driver (s)")
    parser.add_argument('--supervise', action='store_true',
                        help='start the supervisor: it parks dead drivers, brings back '
                        'restarted ones')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or Path(temporary)
        robot = FleetRobot(args.client_ns, args.motors, workdir, lease_s=args.lease,
                           supervise=args.supervise)
        try:
            emit('robot_ready', manager_pid=robot.robot.process('session_manager').pid,
                 supervisor_pid=robot.supervisor.pid, chip_dir=str(robot.robot.chip_dir))
            for line in sys.stdin:
                command, *arguments = line.split()
                if command == 'sessions':
                    try:
                        robot.sessions(int(arguments[0]), int(arguments[1]), arguments[2])
                    except (RuntimeError, TimeoutError) as error:
                        emit('failed', reason=str(error))
                elif command in ('restart', 'clear'):
                    try:
                        if command == 'restart':
                            robot.restart(arguments[0])
                        else:
                            robot.clear()
                    except (RuntimeError, TimeoutError) as error:
                        emit('failed', reason=f'{command}: {error}')
                elif command == 'pids':
                    robot.pids()
                elif command == 'watch':
                    robot.watch(float(arguments[0]))
                elif command == 'hold':
                    robot.hold()
                elif command == 'resume':
                    robot.resume()
                elif command == 'kill':
                    robot.kill()
                elif command == 'fault':
                    try:
                        robot.stopped()
                    except (RuntimeError, TimeoutError) as error:
                        emit('failed', reason=f'fault: {error}')
                elif command == 'cpu':
                    robot.cpu(float(arguments[0]))
        finally:
            robot.close()


if __name__ == '__main__':
    main()
