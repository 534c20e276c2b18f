"""
An existing robot's own pieces beside a session manager, for the tests and the benchmark.

The session manager, session gates and DC motor drivers run as processes of their own, set
up from one robot description. In this process, in a ROS context of its own, the *robot's
own* nodes run as a robot integrator would have written them: plain `rclpy.lifecycle.Node`s
(not ours), std_srvs/Trigger and SetBool stop services (one may never answer), a listener on
each gated output topic and a teleop publisher on each gate's input. Everything that arrives
is recorded with its arrival time (CLOCK_MONOTONIC and system clock, nanoseconds).
"""

from dataclasses import dataclass, field
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetState
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, Node as PlainLifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from std_srvs.srv import SetBool, Trigger

from viam_session.chips.sim_chip import LineChange, read_line_changes
from viam_session.client import SessionClient, SessionError
from viam_session.gate.gate_core import MESSAGE_TYPES
from viam_session.service_call import call_service
from viam_session.sessions.manager_node import EVENTS_QOS
from viam_session_harness.sim_robot import local_ros_environment
from viam_session_interfaces.msg import Rejection, SessionEvent
from viam_session_interfaces.srv import ListSessions
import yaml

__all__ = ['Arrival', 'ExternalRobot', 'GateSpec', 'Recorder']

MANAGER = '/session_manager'


@dataclass(frozen=True)
class Arrival:
    """Something received: CLOCK_MONOTONIC and system-clock nanoseconds, and the item."""

    t_ns: int
    wall_ns: int
    item: Any


class Recorder:
    """Arrivals that threads append and others wait on, with deadlines."""

    def __init__(self) -> None:
        self._items: List[Arrival] = []
        self._changed = threading.Condition()

    def append(self, item: Any) -> None:
        with self._changed:
            self._items.append(Arrival(time.monotonic_ns(), time.time_ns(), item))
            self._changed.notify_all()

    def snapshot(self) -> List[Arrival]:
        with self._changed:
            return list(self._items)

    def wait_for(self, predicate: Callable[[Any], bool], *, after_ns: int = 0,
                 timeout_s: float = 30.0, what: str = 'a matching item') -> Arrival:
        """Return the first arrival after `after_ns` (monotonic) whose item meets `predicate`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for arrival in self._items:
                    if arrival.t_ns > after_ns and predicate(arrival.item):
                        return arrival
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f'no {what} within {timeout_s} s')
                self._changed.wait(remaining)


@dataclass(frozen=True)
class GateSpec:
    """A session gate process `/name` relaying `message_type` to `output_topic`."""

    name: str
    output_topic: str
    message_type: str = 'twist'
    parameters: Mapping[str, Any] = field(default_factory=dict)


class _RobotLifecycleNode(PlainLifecycleNode):
    """A lifecycle node as a robot integrator writes one: it records its deactivations."""

    def __init__(self, name: str, deactivations: Recorder, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._deactivations = deactivations

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivations.append(self.get_fully_qualified_name())
        return super().on_deactivate(state)


class ExternalRobot:
    """Session manager, gates and motors as processes; the robot's own nodes in this one."""

    def __init__(self, *, workdir: Path, domain_id: int, description: Mapping[str, Any],
                 window_s: float = 0.5, gates: Sequence[GateSpec] = (),
                 motors: Mapping[str, Mapping[str, int]] = None,
                 lifecycle_nodes: Sequence[str] = (), triggers: Sequence[str] = (),
                 silent_triggers: Sequence[str] = (), set_bools: Sequence[str] = ()) -> None:
        """
        Describe the robot; nothing runs until `start()`.

        `description` is the `robot:` mapping of the robot description the manager reads;
        `motors` maps a motor node name to its dc_motor parameters (lines); the other
        arguments name the robot's own nodes and services this process serves.
        """
        self.workdir = Path(workdir)
        self.chip_dir = self.workdir / 'chip'
        self.chip_dir.mkdir(parents=True, exist_ok=True)
        self.env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(domain_id)))
        self.domain_id = domain_id
        self.description_path = self.workdir / 'robot.yaml'
        self.description_path.write_text(yaml.safe_dump({'robot': dict(description)}),
                                         encoding='utf-8')
        self.window_s = window_s
        self.gates = {gate.name: gate for gate in gates}
        self.motors = dict(motors or {})
        self._lifecycle_names = list(lifecycle_nodes)
        self._trigger_names = list(triggers)
        self._silent_names = list(silent_triggers)
        self._set_bool_names = list(set_bools)
        self.processes: Dict[str, subprocess.Popen] = {}
        self.events = Recorder()            # SessionEvent
        self.rejections = Recorder()        # Rejection
        self.transitions = Recorder()       # (node fqn, goal state id)
        self.deactivations = Recorder()     # fqn of a robot lifecycle node, in on_deactivate
        self.calls = Recorder()             # (service name, request)
        self.outputs = Recorder()           # (topic, message)
        self.diagnostics = Recorder()       # DiagnosticStatus
        self._clients: List[SessionClient] = []
        self._context: Optional[Context] = None
        self._teleop: Dict[str, Any] = {}

    # --- lifetime ------------------------------------------------------------------------------

    def start(self, *, manager_parameters: Sequence[str] = (), timeout_s: float = 60.0) -> None:
        """Start the processes and this process's nodes; bring gates and motors to active."""
        self.run('session_manager', 'viam_session.sessions.manager_node', [
            '-p', f'robot_description:={self.description_path}',
            '-p', f'default_window_s:={self.window_s}',
            *(arg for parameter in manager_parameters for arg in ('-p', parameter))])
        for gate in self.gates.values():
            parameters = {'message_type': gate.message_type, 'output_topic': gate.output_topic,
                          **gate.parameters}
            self.run(gate.name, 'viam_session.gate.gate_node', [
                '-r', f'__node:={gate.name}',
                *(arg for key, value in parameters.items() for arg in ('-p', f'{key}:={value}'))])
        for name, lines in self.motors.items():
            self.run(name, 'viam_session.drivers.dc_motor', [
                '-r', f'__node:={name}', '-p', f'chip:={self.chip_dir}',
                *(arg for key, value in lines.items() for arg in ('-p', f'{key}:={value}'))])
        self._start_nodes()
        for name in [*self.gates, *self.motors]:
            self.wait_discovered(name, timeout_s)
            for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                if not self.change_state(name, transition, timeout_s=timeout_s):
                    raise RuntimeError(f'{name} refused transition {transition}')
        self._wait_manager_matched(timeout_s)

    def _wait_manager_matched(self, timeout_s: float) -> None:
        """
        Wait until the manager answers list_sessions: it then also sends us events and rejections.

        A reply proves the manager matched our reply reader, created after the event and
        rejection readers, and Fast DDS announces endpoints in order; a rejection published
        before the manager matched our reader (volatile) would never arrive.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                call_service(self._list_sessions, ListSessions.Request(), 1.0)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError('the session manager does not answer list_sessions') \
                        from None

    def run(self, name: str, module: str, ros_args: Sequence[str]) -> subprocess.Popen:
        """Start `python -m module --ros-args ...`, logging to `<name>.log`."""
        with open(self.workdir / f'{name}.log', 'w', encoding='utf-8') as log:
            process = subprocess.Popen([sys.executable, '-m', module, '--ros-args', *ros_args],
                                       env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.workdir / f'{name}.log').read_text(encoding='utf-8', errors='replace')

    def close(self) -> None:
        """Close the clients, stop the processes (SIGTERM, then SIGKILL), then this context."""
        try:
            for client in self._clients:
                try:
                    client.close()
                except SessionError:
                    pass    # end refused or unanswered: the test said what it expects
        finally:
            self._stop_processes()
            if self._context is not None:
                self._executor.shutdown(timeout_sec=2.0)
                self._spinner.join(timeout=5)
                for node in self._nodes:
                    node.destroy_node()
                rclpy.try_shutdown(context=self._context)
                self._context = None

    def _stop_processes(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    # --- sessions ------------------------------------------------------------------------------

    def client(self, name: str, window_s: float = 0.0) -> SessionClient:
        """Return a started SessionClient (closed with the robot)."""
        client = SessionClient(client_name=name, window_s=window_s or self.window_s,
                               domain_id=self.domain_id)
        self._clients.append(client)
        client.start(timeout_s=30.0)
        return client

    def owned(self, handle: str) -> List[str]:
        """Return what the live session `handle` owns, as the manager lists it."""
        response = call_service(self._list_sessions, ListSessions.Request(), 30.0)
        return next(sorted(s.owned_resources) for s in response.sessions
                    if s.handle == handle)

    def wait_owned(self, handle: str, owned: Sequence[str], timeout_s: float = 30.0) -> None:
        """Wait until the session owns exactly `owned` (its commands reached the manager)."""
        deadline = time.monotonic() + timeout_s
        while self.owned(handle) != sorted(owned):
            if time.monotonic() > deadline:
                raise TimeoutError(f'session {handle} does not own {sorted(owned)}')
            time.sleep(0.01)    # list_sessions is a service: ask again

    def wait_for_event(self, handle: str, state: int, timeout_s: float = 30.0) -> Arrival:
        return self.events.wait_for(
            lambda event: event.handle == handle and event.state == state,
            timeout_s=timeout_s, what=f'event {state} of session {handle}')

    # --- the robot's own side ------------------------------------------------------------------

    def call_count(self, service: str) -> int:
        return sum(1 for arrival in self.calls.snapshot() if arrival.item[0] == service)

    def teleop(self, gate: str, message: Any) -> None:
        """Publish `message` on the gate's input at 50 Hz from now on (None: stop)."""
        self._teleop[gate] = message

    def wait_for_duty(self, line: int, predicate: Callable[[float], bool], *,
                      after_ns: int = 0, timeout_s: float = 30.0) -> LineChange:
        """Wait for a PWM change of `line` on the chip after `after_ns` meeting `predicate`."""
        deadline = time.monotonic() + timeout_s
        while True:
            for change in read_line_changes(self.chip_dir, line):
                if change.kind == 'pwm' and change.t_ns > after_ns and predicate(change.value):
                    return change
            if time.monotonic() > deadline:
                raise TimeoutError(f'line {line}: no matching PWM change within {timeout_s} s')
            time.sleep(0.005)  # the chip is a file another process appends to: poll it

    def output(self, topic: str) -> List[Arrival]:
        return [arrival for arrival in self.outputs.snapshot() if arrival.item[0] == topic]

    def change_state(self, name: str, transition_id: int, *, timeout_s: float = 30.0) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return call_service(self._lifecycle[name][0], request, timeout_s).success

    def state(self, name: str, *, timeout_s: float = 30.0) -> int:
        return call_service(self._lifecycle[name][1], GetState.Request(),
                            timeout_s).current_state.id

    def wait_discovered(self, name: str, timeout_s: float = 60.0) -> None:
        """Wait until `name` answers get_state: it then also sends us its transition events."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.state(name, timeout_s=1.0)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f'{name} is not discovered') from None

    def trigger(self, service: str, timeout_s: float = 60.0) -> Trigger.Response:
        """Call a std_srvs/Trigger service (e.g. the supervisor's shutdown)."""
        client = self._trigger_clients.get(service)
        if client is None:
            client = self._trigger_clients[service] = self._nodes[0].create_client(
                Trigger, service)
        return call_service(client, Trigger.Request(), timeout_s)

    def robot_node(self, name: str) -> PlainLifecycleNode:
        return self._robot_nodes[name]

    def _start_nodes(self) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=self.domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        node = Node('external_robot_observer', context=self._context, enable_rosout=False)
        self._nodes: List[Node] = [node]
        node.create_subscription(SessionEvent, f'{MANAGER}/events', self.events.append,
                                 EVENTS_QOS)
        node.create_subscription(Rejection, f'{MANAGER}/rejections', self.rejections.append, 10)
        node.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda array: [self.diagnostics.append(status) for status in array.status], 10)
        self._list_sessions = node.create_client(ListSessions, f'{MANAGER}/list_sessions')
        self._trigger_clients: Dict[str, Any] = {}
        self._lifecycle = {}
        for name in [*self.gates, *self.motors]:
            node.create_subscription(
                TransitionEvent, f'/{name}/transition_event',
                lambda event, name=name: self.transitions.append((name, event.goal_state.id)),
                10)
            self._lifecycle[name] = (node.create_client(ChangeState, f'/{name}/change_state'),
                                     node.create_client(GetState, f'/{name}/get_state'))
        self._publishers = {}
        for gate in self.gates.values():
            message_type = MESSAGE_TYPES[gate.message_type]
            node.create_subscription(
                message_type, gate.output_topic,
                lambda message, topic=gate.output_topic: self.outputs.append((topic, message)),
                100)
            self._publishers[gate.name] = node.create_publisher(
                message_type, f'/{gate.name}/input', 10)
        node.create_timer(0.02, self._publish_teleop)
        for name in self._trigger_names:
            node.create_service(Trigger, name, self._answer_trigger(name))
        for name in self._silent_names:
            # Reentrant: a callback that never returns would hold any exclusive group forever.
            node.create_service(Trigger, name, self._never_answer(name),
                                callback_group=ReentrantCallbackGroup())
        for name in self._set_bool_names:
            node.create_service(SetBool, name, self._answer_set_bool(name))
        self._robot_nodes = {}
        for name in self._lifecycle_names:
            robot_node = _RobotLifecycleNode(name, self.deactivations, context=self._context)
            robot_node.create_subscription(
                TransitionEvent, f'/{name}/transition_event',
                lambda event, name=name: self.transitions.append((name, event.goal_state.id)),
                10)
            robot_node.trigger_configure()
            robot_node.trigger_activate()
            self._robot_nodes[name] = robot_node
            self._nodes.append(robot_node)
        self._executor = SingleThreadedExecutor(context=self._context)
        for each in self._nodes:
            self._executor.add_node(each)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def _publish_teleop(self) -> None:
        for gate, message in self._teleop.items():
            if message is not None:
                self._publishers[gate].publish(message)

    def _answer_trigger(self, name: str) -> Callable:
        def answer(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            self.calls.append((name, request))
            response.success, response.message = True, 'stopped'
            return response
        return answer

    def _never_answer(self, name: str) -> Callable:
        async def hang(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            self.calls.append((name, request))
            await Future()      # never done: no reply is ever sent
            return response
        return hang

    def _answer_set_bool(self, name: str) -> Callable:
        def answer(request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
            self.calls.append((name, request))
            response.success, response.message = True, f'set {request.data}'
            return response
        return answer
