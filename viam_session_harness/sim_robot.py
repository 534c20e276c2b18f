"""
A simulated robot in separate processes, for the demo, the tests and the benchmarks.

The session manager and one DC motor driver per motor run as their own processes on one
simulated chip; an observer node (in this process, in a ROS context of its own) brings the
drivers up through their lifecycle services and records session events and lifecycle
transitions as they arrive. Clients are started as `session_client` processes that print JSON
lines. Everything is stopped (SIGTERM, then SIGKILL) when the robot is closed.
"""

from dataclasses import dataclass
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from lifecycle_msgs.msg import State, Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetState
import rclpy
from rclpy.client import Client
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from std_srvs.srv import Trigger

from viam_session.chips.sim_chip import LineChange, read_line_changes, read_line_values
from viam_session.service_call import call_service
from viam_session.sessions.command_auth import command_tag
from viam_session.sessions.manager_node import EVENTS_QOS
from viam_session_harness.waiting import poll_until
from viam_session_interfaces.msg import Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.srv import (
    EndSession, ListSessions, StartSession, StopSessionResources)

__all__ = ['ClientProcess', 'MotorSpec', 'SimRobot', 'Stamped', 'local_ros_environment']

T = TypeVar('T')
# One lifecycle call at start-up waits this long before get_state checks what happened.
ATTEMPT_S = 10.0


def local_ros_environment(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """
    Return an environment that keeps DDS on this machine and off other runs' domains.

    Discovery stays on localhost; ROS_DOMAIN_ID is kept if set, else one is picked at random,
    so two runs on one machine do not see each other. (With the LOCALHOST range rmw_fastrtps
    chooses its own transports, shared memory included, and ignores FASTDDS_BUILTIN_TRANSPORTS.)
    """
    env = dict(os.environ if base is None else base)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.setdefault('ROS_DOMAIN_ID', str(random.choice(range(1, 101))))
    env.setdefault('RCUTILS_COLORIZED_OUTPUT', '0')
    env['PYTHONUNBUFFERED'] = '1'
    return env


@dataclass(frozen=True)
class MotorSpec:
    """A DC motor driver node and its two lines on the simulated chip."""

    name: str
    pwm_line: int
    direction_line: int

    @property
    def node(self) -> str:
        return f'/{self.name}'


@dataclass(frozen=True)
class Stamped:
    """Something the observer received, with CLOCK_MONOTONIC nanoseconds of arrival."""

    t_ns: int
    message: object


class _Recorder:
    """A list that threads append to and others wait on, with deadlines."""

    def __init__(self) -> None:
        self._items: List = []
        self._changed = threading.Condition()

    def append(self, item: object) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self) -> List:
        with self._changed:
            return list(self._items)

    def wait_for(self, predicate: Callable[[object], bool], timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for item in self._items:
                    if predicate(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f'no {what} within {timeout_s} s')
                self._changed.wait(remaining)


class ClientProcess:
    """A `session_client` process; its JSON lines are collected as they are printed."""

    def __init__(self, args: Sequence[str], env: Dict[str, str], log_path: Path,
                 prefix: Sequence[str] = ()) -> None:
        self._log = open(log_path, 'w', encoding='utf-8')
        self.process = subprocess.Popen(
            [*prefix, sys.executable, '-m', 'viam_session.client.cli', *args], env=env,
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.lines = _Recorder()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for text in self.process.stdout:
            try:
                self.lines.append(json.loads(text))
            except json.JSONDecodeError:
                self._log.write(text)

    def wait_for(self, event: str, timeout_s: float = 30.0) -> dict:
        """Return the first line with this `event`; TimeoutError if none comes in time."""
        return self.lines.wait_for(lambda line: line['event'] == event, timeout_s,
                                   f'{event!r} from the client')

    def last(self, event: str) -> Optional[dict]:
        matching = [line for line in self.lines.snapshot() if line['event'] == event]
        return matching[-1] if matching else None

    def kill(self) -> int:
        """SIGKILL: the client vanishes without a word, as when a laptop loses its link."""
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=10)

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        self.process.stdout.close()
        self._log.close()


class SimRobot:
    """Session manager + motor drivers on a simulated chip, each in its own process."""

    def __init__(self, *, workdir: Path,
                 motors: Sequence[MotorSpec] = (MotorSpec('motor', 12, 16),),
                 default_window_s: float = 2.0, env: Optional[Dict[str, str]] = None,
                 manager_parameters: Sequence[str] = (),
                 driver_parameters: Sequence[str] = ()) -> None:
        """
        Describe the robot; nothing runs until `start()`.

        `manager_parameters` are extra `name:=value` parameters of the session manager,
        `driver_parameters` of every motor driver.
        """
        self.manager_parameters = list(manager_parameters)
        self.driver_parameters = list(driver_parameters)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.chip_dir = self.workdir / 'chip'
        self.motors = {motor.name: motor for motor in motors}
        self.default_window_s = default_window_s
        self.env = local_ros_environment(env)
        self.events = _Recorder()
        self.transitions = _Recorder()
        self.rejections = _Recorder()
        self._processes: Dict[str, subprocess.Popen] = {}
        self._commands_of: Dict[str, Tuple[str, List[str]]] = {}
        self._clients: List[ClientProcess] = []
        self._context: Optional[Context] = None

    # --- lifetime ------------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start every process and bring each motor driver to active."""
        actuators = '[' + ', '.join(f"'{m.node}'" for m in self.motors.values()) + ']'
        self._spawn('session_manager', 'viam_session.sessions.manager_node', [
            '-p', f'actuators:={actuators}', '-p', f'default_window_s:={self.default_window_s}',
            *(arg for parameter in self.manager_parameters for arg in ('-p', parameter))])
        for motor in self.motors.values():
            self._spawn(motor.name, 'viam_session.drivers.dc_motor', [
                '-r', f'__node:={motor.name}', '-p', f'chip:={self.chip_dir}',
                '-p', f'pwm_line:={motor.pwm_line}',
                '-p', f'direction_line:={motor.direction_line}',
                # As a robot should run: only the session manager drives the motors.
                '-p', 'command_source:=/session_manager',
                *(arg for parameter in self.driver_parameters for arg in ('-p', parameter))])
        self._start_observer()
        deadline = time.monotonic() + timeout_s
        for motor in self.motors.values():
            for transition, goal in (
                    (Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE),
                    (Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)):
                if not self.bring_to(motor.name, transition, goal, deadline):
                    raise RuntimeError(f'{motor.name} refused transition {transition}; '
                                       f'see {self.log_path(motor.name)}')
        # Events are recorded from the start: a test that ends the manager right after a session
        # starts saw none of that session's events (the manager was gone before they matched).
        poll_until(lambda: self._events_subscription.get_publisher_count() > 0,
                   timeout_s=max(deadline - time.monotonic(), 1.0),
                   what="the manager's ~/events matched by the observer")

    def close(self) -> None:
        """
        Stop clients, then the robot's processes (SIGTERM, then SIGKILL after 10 s).

        A process still running after 10 s is first sent SIGUSR1, which makes a node print
        every thread's stack into its log (see node_runner), so a hang can be read there.
        """
        for client in self._clients:
            client.close()
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGUSR1)
                try:
                    process.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        if self._context is not None:
            self._executor.shutdown(timeout_sec=2.0)
            self._spinner.join(timeout=5)
            self._node.destroy_node()
            rclpy.try_shutdown(context=self._context)
            self._context = None

    def __enter__(self) -> 'SimRobot':
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_path(self, name: str) -> Path:
        return self.workdir / f'{name}.log'

    def process(self, name: str) -> subprocess.Popen:
        return self._processes[name]

    # --- clients -------------------------------------------------------------------------------

    def start_client(self, *, resource: str, value: float, window_s: float = 0.0,
                     name: str = 'session_client', duration_s: float = 0.0,
                     resume: str = '', local: bool = False,
                     prefix: Sequence[str] = ()) -> ClientProcess:
        """
        Start a client process that opens (or resumes) a session and drives `resource`.

        `prefix` goes before the command, e.g. `['ip', 'netns', 'exec', 'other']` to run the
        client in another network namespace (it must exec the client, so the pid is the
        client's).
        """
        args = ['--name', name, '--resource', resource, '--value', str(value),
                '--window', str(window_s), '--duration', str(duration_s), '--resume', resume,
                *(['--local'] if local else [])]
        client = ClientProcess(args, self.env, self.workdir / f'client_{len(self._clients)}.log',
                               prefix)
        self._clients.append(client)
        return client

    # --- lifecycle -----------------------------------------------------------------------------

    def change_state(self, node_name: str, transition_id: int, *, timeout_s: float = 30.0) -> bool:
        """Ask a driver for a lifecycle transition; True if it succeeded."""
        client = self._lifecycle_clients[node_name][0]
        request = ChangeState.Request()
        request.transition.id = transition_id
        return call_service(client, request, timeout_s).success

    def bring_to(self, node_name: str, transition_id: int, goal: int, deadline: float) -> bool:
        """
        Make the transition to `goal`; True once the driver is there, False if it refused.

        Fast DDS now and then drops a service response it could not send in time ("failed to
        send response (timeout)"), though the transition was made: an unanswered attempt is
        checked with get_state, and tried again until `deadline`.
        """
        while True:
            attempt_s = min(ATTEMPT_S, max(deadline - time.monotonic(), 0.1))
            try:
                return self.change_state(node_name, transition_id, timeout_s=attempt_s)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
            try:
                if self.lifecycle_state(node_name, timeout_s=attempt_s) == goal:
                    return True
            except TimeoutError:
                pass

    def lifecycle_state(self, node_name: str, *, timeout_s: float = 30.0) -> int:
        """Return the driver's lifecycle state id (lifecycle_msgs/State.PRIMARY_STATE_*)."""
        client = self._lifecycle_clients[node_name][1]
        return call_service(client, GetState.Request(), timeout_s).current_state.id

    # --- what the chip shows -------------------------------------------------------------------

    def duty(self, motor: str) -> float:
        """Return the PWM duty the motor's line outputs now."""
        change = read_line_values(self.chip_dir).get(self.motors[motor].pwm_line)
        return change.value if change is not None and change.kind == 'pwm' else 0.0

    def chip_changes(self, motor: str) -> List[LineChange]:
        """Return every PWM change of the motor's line so far, oldest first."""
        line = self.motors[motor].pwm_line
        return [c for c in read_line_changes(self.chip_dir, line) if c.kind == 'pwm']

    def wait_for_duty(self, motor: str, predicate: Callable[[float], bool], *,
                      after_ns: int = 0, timeout_s: float = 30.0) -> LineChange:
        """Wait for a PWM change of the motor after `after_ns` whose duty meets `predicate`."""
        line = self.motors[motor].pwm_line
        deadline = time.monotonic() + timeout_s
        while True:
            for change in read_line_changes(self.chip_dir, line):
                if change.kind == 'pwm' and change.t_ns > after_ns and predicate(change.value):
                    return change
            if time.monotonic() > deadline:
                raise TimeoutError(f'{motor}: no matching PWM change within {timeout_s} s')
            time.sleep(0.005)  # the chip is a file another process appends to: poll it

    def wait_for_event(self, handle: str, state: int, *, timeout_s: float = 30.0) -> Stamped:
        """Wait for a session event of the session `handle` in `state`; return it, stamped."""
        try:
            return self.events.wait_for(
                lambda s: s.message.handle == handle and s.message.state == state,
                timeout_s, f'session event {state} for {handle}')
        except TimeoutError as error:
            seen = [(s.message.state, s.message.reason) for s in self.events.snapshot()
                    if s.message.handle == handle]
            raise TimeoutError(f'{error}; its events seen (state, reason): {seen}') from None

    def wait_for_transition(self, motor: str, goal_state: int, *, after_ns: int = 0,
                            timeout_s: float = 30.0) -> Stamped:
        """Wait for a lifecycle transition of `motor` into `goal_state` after `after_ns`."""
        return self.transitions.wait_for(
            lambda s: s.message[0] == motor and s.message[1].goal_state.id == goal_state
            and s.t_ns > after_ns, timeout_s, f'{motor} transition to state {goal_state}')

    # --- internals -----------------------------------------------------------------------------

    def respawn(self, name: str, *, timeout_s: float = 30.0) -> subprocess.Popen:
        """
        Start process `name` (session_manager or a motor) again, as `start()` did.

        The old process must be ending (a test killed it): it is waited for, then the new one
        is started with the same arguments, its output appended to the same log. A driver comes
        back unconfigured; bringing it up is the caller's (or a supervisor's) business.
        """
        self._processes[name].wait(timeout=timeout_s)
        self._spawn(name, *self._commands_of[name], mode='a')
        return self._processes[name]

    def _spawn(self, name: str, module: str, ros_args: List[str], mode: str = 'w') -> None:
        self._commands_of[name] = (module, ros_args)
        with open(self.log_path(name), mode, encoding='utf-8') as log:
            self._processes[name] = subprocess.Popen(
                [sys.executable, '-m', module, '--ros-args', *ros_args], env=self.env,
                stdout=log, stderr=subprocess.STDOUT)

    def _start_observer(self) -> None:
        self._context = Context()
        domain_id = int(self.env['ROS_DOMAIN_ID'])
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node('sim_robot_observer', context=self._context, enable_rosout=False)
        self._events_subscription = self._node.create_subscription(
            SessionEvent, '/session_manager/events',
            lambda m: self.events.append(Stamped(time.monotonic_ns(), m)), EVENTS_QOS)
        self._node.create_subscription(
            Rejection, '/session_manager/rejections',
            lambda m: self.rejections.append(Stamped(time.monotonic_ns(), m)), 10)
        self._commands = self._node.create_publisher(
            SessionCommand, '/session_manager/command', 10)
        # Created here, before spinning: entities created later from another thread may wait
        # for the executor to wake up.
        self._service_clients: Dict[str, Client] = {
            f'/session_manager/{name}': self._node.create_client(service_type,
                                                                 f'/session_manager/{name}')
            for name, service_type in (('start_session', StartSession),
                                       ('end_session', EndSession),
                                       ('stop_session_resources', StopSessionResources),
                                       ('close_all_sessions', Trigger),
                                       ('list_sessions', ListSessions))}
        self._lifecycle_clients: Dict[str, tuple] = {}
        for motor in self.motors:
            self._node.create_subscription(
                TransitionEvent, f'/{motor}/transition_event',
                lambda m, motor=motor: self.transitions.append(
                    Stamped(time.monotonic_ns(), (motor, m))), 10)
            self._lifecycle_clients[motor] = (
                self._node.create_client(ChangeState, f'/{motor}/change_state'),
                self._node.create_client(GetState, f'/{motor}/get_state'))
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def call(self, service_name: str, request: object, *, timeout_s: float = 30.0,
             service_type: Optional[type] = None) -> object:
        """
        Call a session manager service (e.g. /session_manager/end_session).

        Another node's service needs its `service_type` the first time (a client is made).
        """
        if service_name not in self._service_clients and service_type is not None:
            self._service_clients[service_name] = self._node.create_client(service_type,
                                                                           service_name)
        return call_service(self._service_clients[service_name], request, timeout_s)

    def call_async(self, service_name: str, request: object) -> Future:
        """Send a request to a session manager service now; its future holds the reply."""
        return self._service_clients[service_name].call_async(request)

    def send_command(self, handle: str, resource: str, value: float, *, secret: str = '',
                     sequence: int = 1) -> None:
        """
        Publish one command for the session `handle` once the manager listens.

        Tagged with `secret` as a client would (`command_auth`); without it the tag is empty,
        as a third party's would be.
        """
        deadline = time.monotonic() + 30.0
        while self._commands.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError('the session manager does not subscribe to commands')
            time.sleep(0.005)
        tag = command_tag(secret, handle, resource, value, sequence) if secret else b''
        self._commands.publish(SessionCommand(handle=handle, resource=resource, value=value,
                                              sequence=sequence, tag=tag))
