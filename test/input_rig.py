"""
A real session manager for tests of what clients may send it, with a healthy probe beside.

The robot has two motors: `/motor`, driven by a probe session (a `session_client` process
heartbeating a 2 s window) that nothing under test may disturb, and `/spare`, free for the
sessions the requests under test open. The rig knows the secret id of every session it opens
(and the probe's, from the probe's output) and tags commands with it as a client does; any
handle, sequence and tag can be sent as well, to see them refused. `InputRig.probe_problems()`
lists what went wrong, if anything, with what must hold throughout: the manager's and the
probe's processes alive, the probe's session listed, no event of its end, and every PWM change
of `/motor` on the chip at the probe's power. Each check judges the PWM changes since the one
before, so one disturbance fails the test it happened in, not every later one; what the
manager's and the motor driver's logs say about it (lapsed keep-alives, a tripped watchdog,
dropped commands) comes with the failure.
"""

from dataclasses import dataclass
import itertools
import os
from pathlib import Path
import threading
import time
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

from builtin_interfaces.msg import Duration
import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile

from viam_session.sessions.command_auth import CommandSigner
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.time_convert import seconds_to_duration
from viam_session_harness.sim_robot import MotorSpec, SimRobot, Stamped
from viam_session_harness.waiting import poll_until
from viam_session_interfaces.msg import Heartbeat, Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.srv import (
    EndSession, ListSessions, StartSession, StopSessionResources)

from conftest import next_domain  # noqa: I100 - the tests' own helper

__all__ = ['assert_probe_untouched', 'DEADLINE_S', 'InputRig', 'input_rig', 'MANAGER',
           'Opened', 'PROBE_POWER', 'SPARE']

PROBE_POWER = 0.5
PROBE_WINDOW_S = 2.0
SPARE = '/spare'
DEADLINE_S = 30.0
# The rig's heartbeat writers assert this often (windows of its live sessions: 2 s).
ASSERTION_PERIOD_S = 0.05
MANAGER = '/session_manager'
# The motors' watchdogs, and the manager's keep-alives (lease: 3 periods, within the watchdog).
COMMAND_TIMEOUT_S = 2.0
KEEPALIVE_PERIOD_S = 0.5
# What the manager (lapsed keep-alives) and a driver (a tripped watchdog, whatever tripped it;
# a lost publisher; dropped commands) log when a motor stops while its session lives.
DISTURBANCE_WORDS = ('keep-alives lapsed', 'outputs at their safe level',
                     'no command publisher is alive', 'command dropped')


@dataclass(frozen=True)
class Opened:
    """A session the rig opened: its secret id, its public handle and its heartbeat topic."""

    secret: str
    handle: str
    topic: str


class InputRig:
    """A SimRobot with the probe running, and a node of the test's own for odd writers."""

    def __init__(self, robot: SimRobot) -> None:
        self.robot = robot
        self.probe = robot.start_client(resource='/motor', value=PROBE_POWER, name='probe',
                                        window_s=PROBE_WINDOW_S)
        started = self.probe.wait_for('started', DEADLINE_S)
        self.probe_secret, self.probe_handle = started['session_id'], started['handle']
        self._running = robot.wait_for_duty('motor', lambda duty: duty == PROBE_POWER)
        self._checked_ns = self._running.t_ns
        self.suffered = False
        self.probe_topic = next(s.heartbeat_topic for s in self.sessions()
                                if s.handle == self.probe_handle)
        self._context = Context()
        rclpy.init(context=self._context, domain_id=int(robot.env['ROS_DOMAIN_ID']))
        # Not spun: it only writes (publishers, liveliness assertions, raw bytes).
        self.node = Node('input_rig', context=self._context, enable_rosout=False,
                         start_parameter_services=False)
        self._commands = self.node.create_publisher(SessionCommand, f'{MANAGER}/command', 100)
        # The probe sent one command (sequence 1), handled: its motor runs.
        self._signers: Dict[str, CommandSigner] = {
            self.probe_handle: CommandSigner(self.probe_secret, self.probe_handle, 1)}
        self._sentinels = itertools.count()
        self._topics = itertools.count()
        self._foreign: List[Tuple[Context, Node]] = []
        # Heartbeat writers of live sessions, asserted from a thread (as a client does).
        self._writers: List[Publisher] = []
        self._writers_lock = threading.Lock()
        self._closing = threading.Event()
        self._asserter = threading.Thread(target=self._assert_writers, daemon=True)
        self._asserter.start()

    def close(self) -> None:
        self._closing.set()
        self._asserter.join(timeout=5)
        for context, node in [*self._foreign, (self._context, self.node)]:
            node.destroy_node()
            rclpy.try_shutdown(context=context)

    def topic(self) -> str:
        """Return a heartbeat topic name nobody has used."""
        return f'/inputs/hb_{next(self._topics)}'

    def live_session(self, client: str = 'live', window_s: float = 2.0) -> Opened:
        """Start a session whose heartbeat writer this rig asserts; `signed` tags its commands."""
        topic = self.topic()
        self.writer(topic, window_s)
        started = self.start(client, topic, window=seconds_to_duration(window_s))
        assert started.success, started.message
        self.remember(started)
        return Opened(started.session_id, started.handle, topic)

    def remember(self, started: StartSession.Response) -> None:
        """Keep a start reply's secret, so that `signed` can tag that session's commands."""
        self._signers[started.handle] = CommandSigner(
            started.session_id, started.handle, started.command_sequence)

    def writer(self, topic: str, window_s: float) -> Publisher:
        """Create a heartbeat writer on `topic`, asserted from now on, as a client's is."""
        writer = self.node.create_publisher(Heartbeat, topic, heartbeat_qos(window_s))
        writer.assert_liveliness()
        with self._writers_lock:
            self._writers.append(writer)
        return writer

    def silence(self, topic: str) -> None:
        """Stop asserting the writer on `topic`: its session expires a window later."""
        with self._writers_lock:
            self._writers = [w for w in self._writers if w.topic_name != topic]

    def foreign(self, name: str = '') -> Node:
        """Return a node in a ROS context (a DDS participant) of its own, not spun."""
        context = Context()
        rclpy.init(context=context, domain_id=int(self.robot.env['ROS_DOMAIN_ID']))
        node = Node(name or f'foreign_{len(self._foreign)}', context=context, enable_rosout=False,
                    start_parameter_services=False)
        self._foreign.append((context, node))
        return node

    def _assert_writers(self) -> None:
        while not self._closing.wait(ASSERTION_PERIOD_S):
            with self._writers_lock:
                writers = list(self._writers)
            for writer in writers:
                writer.assert_liveliness()

    # --- requests ------------------------------------------------------------------------------

    def start(self, client: str = 'tester', heartbeat_topic: str = '', *,
              window: Duration = Duration(), **fields: object) -> StartSession.Response:
        request = StartSession.Request(client=client, heartbeat_topic=heartbeat_topic, **fields)
        request.requested_window = window
        return self.robot.call(f'{MANAGER}/start_session', request, timeout_s=DEADLINE_S)

    def end(self, session_id: str) -> EndSession.Response:
        """End the session whose secret id is `session_id`."""
        return self.robot.call(f'{MANAGER}/end_session', EndSession.Request(session_id=session_id),
                               timeout_s=DEADLINE_S)

    def stop(self, handle: str) -> StopSessionResources.Response:
        return self.robot.call(f'{MANAGER}/stop_session_resources',
                               StopSessionResources.Request(handle=handle), timeout_s=DEADLINE_S)

    def sessions(self) -> List:
        return self.robot.call(f'{MANAGER}/list_sessions', ListSessions.Request(),
                               timeout_s=DEADLINE_S).sessions

    def command(self, handle: str, resource: str, value: float, *, sequence: int = 1,
                tag: bytes = b'') -> None:
        """Publish a SessionCommand as given, without waiting (see `rejection` and `drain`)."""
        self.wait_for_subscriber(self._commands)
        self._commands.publish(SessionCommand(handle=handle, resource=resource, value=value,
                                              sequence=sequence, tag=list(tag)))

    def signed(self, handle: str, resource: str, value: float) -> int:
        """Publish a command of a known session, tagged as its client does; return its sequence."""
        sequence, tag = self._signers[handle].sign(resource, value)
        self.command(handle, resource, value, sequence=sequence, tag=tag)
        return sequence

    def rejection(self, after_ns: int, what: str,
                  matches: Callable[[Rejection], bool]) -> Stamped:
        """Wait for a rejection, received after `after_ns`, that `matches`."""
        return self.robot.rejections.wait_for(
            lambda s: s.t_ns > after_ns and matches(s.message), DEADLINE_S, what)

    def drain(self) -> None:
        """Return once the manager has handled every command this rig published so far."""
        sentinel = f'sentinel {next(self._sentinels)}'
        reason = f'command refused: unknown session {sentinel!r}'
        sent_ns = time.monotonic_ns()
        self.command(sentinel, '/sentinel', 0.0)
        self.rejection(sent_ns, f'the rejection of {sentinel}',
                       lambda r: r.handle == '' and r.reason == reason)

    def publisher(self, message_type: type, topic: str, qos: QoSProfile) -> Publisher:
        return self.node.create_publisher(message_type, topic, qos)

    def wait_for_subscriber(self, publisher: Publisher) -> None:
        poll_until(publisher.get_subscription_count, timeout_s=DEADLINE_S,
                   what=f'nobody subscribes to {publisher.topic_name}', interval_s=0.005)

    # --- the probe -----------------------------------------------------------------------------

    def probe_problems(self) -> List[str]:
        """Return what is wrong with the probe and the manager (nothing when untouched)."""
        problems = []
        if self.robot.process('session_manager').poll() is not None:
            return ['the session manager exited']
        if self.probe.process.poll() is not None:
            problems.append('the probe client exited')
        lost = self.probe.last('lost')
        if lost is not None:
            problems.append(f'the probe was told its session is over: {lost}')
        over = [s.message for s in self.robot.events.snapshot()
                if s.message.handle == self.probe_handle
                and s.message.state != SessionEvent.STARTED]
        if over:
            problems.append(f'the probe session ended: {over}')
        if self.probe_handle not in [s.handle for s in self.sessions()]:
            problems.append('the probe session is not listed')
        changes = [c for c in self.robot.chip_changes('motor') if c.t_ns > self._checked_ns]
        if changes:
            self._checked_ns = changes[-1].t_ns
        off = [c for c in changes if c.value != PROBE_POWER]
        if off:
            problems.append(f"the probe's motor changed: {off[:5]}; "
                            f'the logs say: {self._disturbances()}')
        self.suffered = self.suffered or bool(problems)
        return problems

    def _disturbances(self) -> List[str]:
        """Return the log lines of the manager and the motor's driver that explain a stop."""
        lines = []
        for name in ('session_manager', 'motor'):
            log = self.robot.log_path(name)
            text = log.read_text(errors='replace') if log.exists() else ''
            lines += [f'{name}: {line.strip()}' for line in text.splitlines()
                      if any(word in line for word in DISTURBANCE_WORDS)]
        return lines[-10:]


def robot_for_inputs(tmp_path: Path, manager_parameters: Sequence[str] = ()) -> SimRobot:
    """
    Return the robot: its motors' watchdogs and the keep-alives tolerate a starved machine.

    What is under test here is what requests do to the probe, not how soon a stall is caught
    (test_manager_stalls): with the defaults (watchdog 0.5 s, keep-alives every 0.1 s with a
    0.3 s lease), a flood of requests starved the manager and the motor's driver of the CPU
    long enough on Jazzy that the keep-alives lapsed and the probe's motor stopped.
    """
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain()))
    return SimRobot(workdir=tmp_path, env=env, default_window_s=0.5,
                    motors=(MotorSpec('motor', 12, 16), MotorSpec(SPARE[1:], 13, 17)),
                    manager_parameters=[f'command_keepalive_period_s:={KEEPALIVE_PERIOD_S}',
                                        *manager_parameters],
                    driver_parameters=[f'command_timeout_s:={COMMAND_TIMEOUT_S}'])


def input_rig(tmp_path: Path, manager_parameters: Sequence[str] = ()) -> Iterator[InputRig]:
    """Yield a started InputRig (for a fixture); print the robot's logs if the probe suffered."""
    robot = robot_for_inputs(tmp_path, manager_parameters)
    rig = None
    healthy = False
    try:
        robot.start()
        rig = InputRig(robot)
        yield rig
        healthy = not rig.probe_problems() and not rig.suffered
    finally:
        if rig is not None:
            rig.close()
        robot.close()
        if not healthy:
            for log in sorted(tmp_path.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text()[-20000:]}')


def assert_probe_untouched(rig: InputRig) -> None:
    problems = rig.probe_problems()
    if problems:
        pytest.fail('; '.join(problems))
