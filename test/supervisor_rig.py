"""
A lifecycle supervisor process over driver processes on a simulated chip, and an observer.

The drivers are spawned by the supervisor, or started by the rig as `ros2 launch` starts them
(`start_drivers`): then every robot process shares one process group, so `signal_all` hits
them at the same instant, as Ctrl-C in launch's terminal does.
"""

import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import TransitionEvent
from lifecycle_msgs.srv import GetState
import rclpy
from rclpy.context import Context
from rclpy.event_handler import PublisherEventCallbacks, QoSPublisherMatchedInfo
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger

from viam_session.service_call import call_service
from viam_session.sessions.manager_node import EVENTS_QOS
from viam_session.supervisor.spawner import driver_command
from viam_session.supervisor.supervisor_node import PART_EVENTS_QOS
from viam_session.supervisor.tree import load_robot_description
from viam_session_harness.sim_robot import local_ros_environment
from viam_session_interfaces.msg import SessionEvent
import yaml

__all__ = ['driver_entry', 'Recorder', 'SupervisorRig']

SUPERVISOR = '/lifecycle_supervisor'


class Recorder:
    """(CLOCK_MONOTONIC ns, item) pairs, of arrival or of sending; wait for one with a deadline."""

    def __init__(self) -> None:
        self.items: List[tuple] = []
        self._changed = threading.Condition()

    def append(self, item: Any, *, t_ns: Optional[int] = None) -> None:
        with self._changed:
            self.items.append((time.monotonic_ns() if t_ns is None else t_ns, item))
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Any], bool], *, after_ns: int = 0,
                 timeout_s: float = 30.0) -> tuple:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for t_ns, item in self.items:
                    if t_ns > after_ns and predicate(item):
                        return t_ns, item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f'nothing matching within {timeout_s} s')
                self._changed.wait(remaining)


def driver_entry(name: str, driver: str, chip: Path, **parameters: Any) -> Dict[str, Any]:
    """Return a description's node entry for a driver on the simulated chip at `chip`."""
    extra = {key: parameters.pop(key) for key in ('depends_on', 'liveliness_lease_s', 'respawn')
             if key in parameters}
    return {'name': name, 'driver': driver,
            'parameters': {'chip_backend': 'sim', 'chip': str(chip), **parameters}, **extra}


def sent_ns(info: Mapping[str, Any]) -> int:
    """
    Return when a message was sent, on this machine's CLOCK_MONOTONIC.

    Transition events and session events come from different processes over different DDS
    paths, so their arrival order can differ from the order they were sent in (seen under
    load: a parent's `deactivating` arriving before its child's `unconfigured`). The writer's
    source timestamp (system clock, the same machine) orders them as they happened. `info` is
    the message info rclpy hands a two-argument callback (a dict on Jazzy too).
    """
    return info['source_timestamp'] - (time.time_ns() - time.monotonic_ns())


class SupervisorRig:
    """Write a robot description, run the supervisor (and others), observe everything."""

    def __init__(self, workdir: Path, domain_id: int) -> None:
        self.workdir = workdir
        self.chip_dir = workdir / 'chip'
        self.chip_dir.mkdir(parents=True, exist_ok=True)
        self.env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(domain_id)))
        self.domain_id = domain_id
        self.processes: Dict[str, subprocess.Popen] = {}
        self._process_group = 0     # 0: the next process starts the robot's group
        self.transitions = Recorder()     # (fqn, goal state label)
        self.part_events = Recorder()     # dicts
        self.session_events = Recorder()  # SessionEvent
        self.diagnostics = Recorder()     # DiagnosticArray
        self._context: Optional[Context] = None

    def description(self, robot: Mapping[str, Any]) -> Path:
        """Write `{'robot': robot}` as YAML; return its path."""
        path = self.workdir / 'robot.yaml'
        path.write_text(yaml.safe_dump({'robot': robot}), encoding='utf-8')
        return path

    def run(self, name: str, module: str, ros_args: Sequence[str]) -> subprocess.Popen:
        """Start `python -m module --ros-args ...`, logging to `<name>.log`."""
        return self._start(name, [sys.executable, '-m', module, '--ros-args', *ros_args])

    def start_drivers(self, description: Path, lease_s: float) -> None:
        """Start every node's driver as launch does (not by the supervisor), by its name."""
        for fqn, node in load_robot_description(str(description)).nodes.items():
            lease = lease_s if node.liveliness_lease_s is None else node.liveliness_lease_s
            self._start(self.driver_name(fqn), driver_command(
                node, liveliness_lease_s=lease, parameter_dir=self.workdir))

    @staticmethod
    def driver_name(fqn: str) -> str:
        """Return the name (process, log) of a driver started by `start_drivers`."""
        return fqn.strip('/').replace('/', '__')

    def driver(self, fqn: str) -> subprocess.Popen:
        """Return the process of a driver started by `start_drivers`."""
        return self.processes[self.driver_name(fqn)]

    def signal_all(self, signum: int) -> int:
        """Send `signum` to every robot process at once (their group); return when (ns)."""
        t_ns = time.monotonic_ns()
        os.killpg(self._process_group, signum)
        return t_ns

    def log(self, name: str) -> str:
        return (self.workdir / f'{name}.log').read_text(errors='replace')

    def _start(self, name: str, command: Sequence[str]) -> subprocess.Popen:
        with open(self.workdir / f'{name}.log', 'w', encoding='utf-8') as log:
            process = subprocess.Popen(command, env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT,
                                       process_group=self._process_group)
        self._process_group = self._process_group or process.pid
        self.processes[name] = process
        return process

    def start_supervisor(self, description: Path, nodes: Sequence[str],
                         parameters: Sequence[str] = (),
                         command_topics: Sequence[str] = (), *,
                         spawn_nodes: bool = True) -> subprocess.Popen:
        """Start the observer (watching `nodes`), then the supervisor (spawning the drivers)."""
        self._observe(nodes, command_topics)
        args = ['-p', f'robot_description:={description}',
                '-p', f'spawn_nodes:={str(spawn_nodes).lower()}']
        for parameter in parameters:
            args += ['-p', parameter]
        return self.run('supervisor', 'viam_session.supervisor.supervisor_node', args)

    def call(self, service: str, timeout_s: float = 120.0) -> Trigger.Response:
        """Call a supervisor service (startup, shutdown, get_state)."""
        return call_service(self._clients[service], Trigger.Request(), timeout_s)

    def wait_discovered(self, timeout_s: float = 60.0) -> None:
        """
        Wait until every watched node will send the observer its transition events.

        Our reader seeing a node's writer does not mean the writer sees our reader (discovery
        is per side). A get_state reply proves the node matched our reply reader, created
        after the transition event readers, and Fast DDS announces endpoints in order.
        """
        deadline = time.monotonic() + timeout_s
        for fqn, client in self._get_state_clients.items():
            while True:
                try:
                    call_service(client, GetState.Request(), 1.0)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f'the observer did not discover {fqn}') from None

    def state(self) -> Dict[str, Any]:
        return json.loads(self.call('get_state').message)

    def publish(self, topic: str, value: float, timeout_s: float = 30.0) -> None:
        """Publish one Float64 on `topic` once a subscriber matched."""
        publisher, matched = self._publishers[topic]
        if not matched.wait(timeout_s):
            raise TimeoutError(f'no subscriber on {topic}')
        publisher.publish(Float64(data=value))

    def first(self, fqn: str, label: str, timeout_s: float = 30.0) -> int:
        """Return when `fqn`'s first transition event towards `label` was sent."""
        self.transitions.wait_for(lambda item: item == (fqn, label), timeout_s=timeout_s)
        return min(t for t, item in self.transitions.items if item == (fqn, label))

    def last(self, fqn: str, label: str, timeout_s: float = 30.0) -> int:
        """Return when `fqn`'s latest event towards `label` was sent (waiting for one)."""
        self.first(fqn, label, timeout_s)
        return max(t for t, item in self.transitions.items if item == (fqn, label))

    def _observe(self, nodes: Sequence[str], command_topics: Sequence[str]) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=self.domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node('supervisor_observer', context=self._context, enable_rosout=False)
        self._transition_subscriptions = [self._node.create_subscription(
            TransitionEvent, f'{fqn}/transition_event',
            lambda m, info, fqn=fqn: self.transitions.append(
                (fqn, m.goal_state.label), t_ns=sent_ns(info)), 100)
            for fqn in nodes]
        self._get_state_clients = {fqn: self._node.create_client(GetState, f'{fqn}/get_state')
                                   for fqn in nodes}
        self._node.create_subscription(String, f'{SUPERVISOR}/part_events',
                                       lambda m: self.part_events.append(json.loads(m.data)),
                                       PART_EVENTS_QOS)
        self._node.create_subscription(
            SessionEvent, '/session_manager/events',
            lambda m, info: self.session_events.append(m, t_ns=sent_ns(info)), EVENTS_QOS)
        self._node.create_subscription(DiagnosticArray, '/diagnostics',
                                       self.diagnostics.append, 10)
        self._clients = {name: self._node.create_client(Trigger, f'{SUPERVISOR}/{name}')
                         for name in ('startup', 'shutdown', 'get_state')}
        self._publishers = {topic: self._matched_publisher(topic) for topic in command_topics}
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def _matched_publisher(self, topic: str) -> Tuple[Publisher, threading.Event]:
        """Return a Float64 publisher on `topic` and an event set while a subscriber matches."""
        matched = threading.Event()

        def on_matched(info: QoSPublisherMatchedInfo) -> None:
            if info.current_count > 0:
                matched.set()
            else:
                matched.clear()

        publisher = self._node.create_publisher(
            Float64, topic, 10, event_callbacks=PublisherEventCallbacks(matched=on_matched))
        return publisher, matched

    def close(self, failed: bool) -> None:
        """Stop the supervisor first (its ordered shutdown may need the others), then the rest."""
        for process in sorted(self.processes.values(),
                              key=lambda p: p is not self.processes.get('supervisor')):
            if process.poll() is None:
                process.terminate()
            if process is self.processes.get('supervisor'):
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._context is not None:
            self._executor.shutdown(timeout_sec=2.0)
            self._spinner.join(timeout=5)
            self._node.destroy_node()
            rclpy.try_shutdown(context=self._context)
        if failed:
            for log in sorted(self.workdir.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text(errors="replace")}')
