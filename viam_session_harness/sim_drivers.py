"""
Driver processes on a simulated chip, and an observer node, for tests and benchmarks.

`DriverProcess` runs one driver executable as a process of its own on a simulated chip. The
`DriverObserver` (in this process, in a ROS context of its own) calls the drivers' lifecycle
services, publishes their commands and records their JointState messages as they arrive.
`python -m viam_session_harness.sim_drivers publish ...` is a command publisher process with a
chosen liveliness QoS, to be killed by a test; it prints `matched` once a driver listens.
"""

import argparse
import math
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64

from viam_session.chips.file_watch import FileWatch
from viam_session.drivers import DRIVER_MODULES
from viam_session.service_call import call_service
from viam_session_harness.sim_robot import Stamped

__all__ = ['DRIVER_MODULES', 'DriverObserver', 'DriverProcess', 'command_publisher_qos', 'main']

COMMAND_TYPES = {'dc_motor': Float64, 'gpio_output': Bool, 'servo': Float64}
GOAL_STATES = {Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE,
               Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE,
               Transition.TRANSITION_DEACTIVATE: State.PRIMARY_STATE_INACTIVE,
               Transition.TRANSITION_CLEANUP: State.PRIMARY_STATE_UNCONFIGURED}
RESPONSE_TIMEOUT_S = 10.0
GET_STATE_TIMEOUT_S = 2.0
LIVELINESS = {'automatic': LivelinessPolicy.AUTOMATIC,
              'manual_by_topic': LivelinessPolicy.MANUAL_BY_TOPIC,
              'default': LivelinessPolicy.SYSTEM_DEFAULT}


def command_publisher_qos(liveliness: str = 'automatic', lease_s: float = 0.1) -> QoSProfile:
    """Return a command publisher's QoS: reliable, with `liveliness` and lease `lease_s`."""
    if liveliness == 'default':
        return QoSProfile(depth=10)
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      liveliness=LIVELINESS[liveliness],
                      liveliness_lease_duration=Duration(seconds=lease_s))


def _ros_value(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


class DriverProcess:
    """One driver executable (`kind`, a key of DRIVER_MODULES) run as node `/name`."""

    def __init__(self, *, kind: str, name: str, chip_dir: Path, env: Dict[str, str],
                 log_path: Path, parameters: Optional[Mapping[str, Any]] = None,
                 command: Optional[Sequence[str]] = None) -> None:
        """Start the process; `command` replaces `python -m <driver module>` if given."""
        self.kind = kind
        self.name = name
        self.log_path = log_path
        ros_args = ['-r', f'__node:={name}', '-p', f'chip:={chip_dir}']
        for key, value in (parameters or {}).items():
            ros_args += ['-p', f'{key}:={_ros_value(value)}']
        program = list(command or [sys.executable, '-m', DRIVER_MODULES[kind]])
        with open(log_path, 'w', encoding='utf-8') as log:
            self.process = subprocess.Popen(
                [*program, '--ros-args', *ros_args], env=env, stdout=log,
                stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Return what the process has logged so far."""
        return self.log_path.read_text(encoding='utf-8', errors='replace')

    def wait_for_log(self, text: str, timeout_s: float = 30.0) -> None:
        """Wait until `text` appears in the log (woken by each write to it)."""
        deadline = time.monotonic() + timeout_s
        watch = FileWatch(self.log_path)
        try:
            while text not in self.log():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f'{self.name} did not log {text!r} within {timeout_s} s')
                watch.wait(remaining)
        finally:
            watch.close()

    def send_signal(self, signum: int) -> int:
        """Send `signum`; return CLOCK_MONOTONIC nanoseconds just before it was sent."""
        t_ns = time.monotonic_ns()
        self.process.send_signal(signum)
        return t_ns

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class _Recorder:
    """Messages with their arrival times; threads append, others wait with deadlines."""

    def __init__(self) -> None:
        self._items: List[Stamped] = []
        self._changed = threading.Condition()

    def append(self, message: object) -> None:
        with self._changed:
            self._items.append(Stamped(time.monotonic_ns(), message))
            self._changed.notify_all()

    def snapshot(self) -> List[Stamped]:
        with self._changed:
            return list(self._items)

    def wait_for(self, predicate: Callable[[Any], bool], *, after_ns: int,
                 timeout_s: float) -> Stamped:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for item in self._items:
                    if item.t_ns > after_ns and predicate(item.message):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f'no matching message within {timeout_s} s')
                self._changed.wait(remaining)


class DriverObserver:
    """
    A node that manages and watches drivers, in a ROS context of its own.

    `drivers` maps each node name to its kind; every entity is created before spinning.
    Without `with_commands` the observer publishes no commands (a driver's liveliness watch
    then sees only the publishers a test starts).
    """

    def __init__(self, *, domain_id: int, drivers: Mapping[str, str],
                 command_qos: Optional[QoSProfile] = None, with_commands: bool = True) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node('driver_observer', context=self._context, enable_rosout=False)
        qos = command_qos or command_publisher_qos()
        self._lifecycle: Dict[str, Tuple[Any, Any]] = {}
        self._commands: Dict[str, Tuple[type, Publisher]] = {}
        self.joint_states: Dict[str, _Recorder] = {}
        self.bool_states: Dict[str, _Recorder] = {}
        for name, kind in drivers.items():
            self._lifecycle[name] = (
                self._node.create_client(ChangeState, f'/{name}/change_state'),
                self._node.create_client(GetState, f'/{name}/get_state'))
            self.joint_states[name] = _Recorder()
            self._node.create_subscription(JointState, f'/{name}/joint_state',
                                           self.joint_states[name].append, 100)
            if with_commands and kind in COMMAND_TYPES:
                self._commands[name] = (COMMAND_TYPES[kind], self._node.create_publisher(
                    COMMAND_TYPES[kind], f'/{name}/command', qos))
            if kind == 'digital_input':
                self.bool_states[name] = _Recorder()
                self._node.create_subscription(Bool, f'/{name}/state',
                                               self.bool_states[name].append, 100)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def change_state(self, name: str, transition_id: int, *, timeout_s: float = 30.0) -> bool:
        """
        Ask `name` for a lifecycle transition; True if it succeeded.

        The process has the whole timeout to offer its service: on a loaded machine a driver
        started with others can take more than 10 s to come up. rmw_fastrtps drops a
        response when the server has not yet matched the client's response reader 100 ms
        after the request ('failed to send response (timeout)'), and a request can be lost
        the same way; the call then never returns. So 10 s after each request the node's
        state says what happened: the goal state is success, the state the request started
        from means it never arrived, and it is sent again until the timeout,
        then TimeoutError (a refusal is reported only when it was heard).
        """
        client = self._lifecycle[name][0]
        deadline = time.monotonic() + timeout_s
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f'{client.srv_name} is not available after {timeout_s} s')
        request = ChangeState.Request()
        request.transition.id = transition_id
        start = self.state(name, timeout_s=timeout_s) if transition_id in GOAL_STATES else None
        while True:
            left_s = max(deadline - time.monotonic(), GET_STATE_TIMEOUT_S)
            try:
                return call_service(client, request, min(left_s, RESPONSE_TIMEOUT_S)).success
            except TimeoutError:
                if start is None:
                    raise
            left_s = max(deadline - time.monotonic(), GET_STATE_TIMEOUT_S)
            state = self.state(name, timeout_s=left_s)
            if state == GOAL_STATES[transition_id]:
                return True
            if state != start:
                return False
            if time.monotonic() >= deadline:
                # Refused with every reply lost, or never arrived: not a refusal to report.
                raise TimeoutError(f'{name}: no reply to transition {transition_id} within '
                                   f'{timeout_s} s and still in state {start}')

    def request_transition(self, name: str, transition_id: int, *,
                           timeout_s: float = 30.0) -> int:
        """Send a transition request once the service is there; return when it was sent."""
        client = self._lifecycle[name][0]
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f'{client.srv_name} is not available after {timeout_s} s')
        request = ChangeState.Request()
        request.transition.id = transition_id
        t_ns = time.monotonic_ns()
        client.call_async(request)
        return t_ns

    def state(self, name: str, *, timeout_s: float = 30.0) -> int:
        """Return the lifecycle state id of `name`, asking again if a response is lost."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return call_service(self._lifecycle[name][1], GetState.Request(),
                                    min(GET_STATE_TIMEOUT_S, timeout_s)).current_state.id
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def bring_up(self, name: str, *, timeout_s: float = 60.0) -> None:
        """Configure, then activate `name`; RuntimeError if it refuses."""
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            if not self.change_state(name, transition, timeout_s=timeout_s):
                raise RuntimeError(f'{name} refused transition {transition}')

    def publish(self, name: str, value: Any, *, timeout_s: float = 30.0) -> int:
        """Publish a command once the driver listens; return when it was published."""
        message_type, publisher = self._commands[name]
        deadline = time.monotonic() + timeout_s
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f'{name} does not subscribe to its commands')
            time.sleep(0.005)  # discovery has no event in rclpy: look again shortly
        t_ns = time.monotonic_ns()
        publisher.publish(message_type(data=value))
        return t_ns

    def wait_for_joint_state(self, name: str, predicate: Callable[[JointState], bool], *,
                             after_ns: int = 0, timeout_s: float = 30.0) -> Stamped:
        """Wait for a JointState of `name` received after `after_ns` that meets `predicate`."""
        return self.joint_states[name].wait_for(predicate, after_ns=after_ns,
                                                timeout_s=timeout_s)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=5)
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)


def _publish_main(options: argparse.Namespace) -> int:
    """Publish `value` at `rate` Hz with the chosen QoS until killed; print `matched`."""
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = Node('command_publisher', enable_rosout=False)
    message_type = Bool if options.type == 'bool' else Float64
    value = options.value == 'true' if options.type == 'bool' else float(options.value)
    publisher = node.create_publisher(message_type, options.topic,
                                      command_publisher_qos(options.liveliness, options.lease))
    while publisher.get_subscription_count() == 0:
        time.sleep(0.005)
    print('matched', flush=True)
    period_s = 1.0 / options.rate
    while True:
        publisher.publish(message_type(data=value))
        time.sleep(period_s)  # the publishing rate itself


def main(args: Optional[List[str]] = None) -> int:
    """Run `publish`: a command publisher process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog='python -m viam_session_harness.sim_drivers')
    commands = parser.add_subparsers(dest='command', required=True)
    publish = commands.add_parser('publish', help='publish a command at a rate until killed')
    publish.add_argument('--topic', required=True)
    publish.add_argument('--type', choices=('float64', 'bool'), default='float64')
    publish.add_argument('--value', required=True)
    publish.add_argument('--rate', type=float, default=20.0)
    publish.add_argument('--liveliness', choices=sorted(LIVELINESS), default='automatic')
    publish.add_argument('--lease', type=float, default=0.1)
    options = parser.parse_args(args)
    if not (math.isfinite(options.rate) and options.rate > 0):
        parser.error('--rate must be positive')
    return _publish_main(options)


if __name__ == '__main__':
    sys.exit(main())
