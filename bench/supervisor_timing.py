"""
Time the lifecycle supervisor on a 50-node tree: ordered startup, ordered shutdown, detection.

A generated three-level tree (base: boards and DC motors; /arm: servos; /arm/gripper: outputs),
every node a driver process on one simulated chip, spawned by the supervisor. Once every node
is alive, the bench times `~/startup` and, after a SIGKILL of one motor (lease `--lease`), the
time until the supervisor reports it dead with its dependents handled (`node_lost` part event),
then `~/shutdown`. Also counts, per phase, the supervisor's reports of lost liveliness of
nodes whose process still ran (false alarms: late assertions, not deaths). Prints the
figures and writes JSON to bench_output/. ROS_DOMAIN_ID 231, or the first domain of the range
ROS_DOMAIN_ID implies when it is set.
"""

import argparse
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String
from std_srvs.srv import Trigger

from viam_session.service_call import call_service
from viam_session.supervisor.supervisor_node import PART_EVENTS_QOS
from viam_session_harness.ros_domains import domain_range
from viam_session_harness.sim_robot import local_ros_environment
import yaml

DOMAIN_ID = domain_range(range(231, 232))[0]
SUPERVISOR = '/lifecycle_supervisor'


def generate(chip: str, lease_s: float) -> Dict[str, Any]:
    """Return a 50-node, three-level robot description on simulated chip `chip`."""
    def node(name: str, driver: str, **parameters: Any) -> Dict[str, Any]:
        depends = parameters.pop('depends_on', None)
        entry = {'name': name, 'driver': driver, 'liveliness_lease_s': lease_s,
                 'parameters': {'chip': chip, **parameters}}
        if depends:
            entry['depends_on'] = depends
        return entry

    base = []
    for index in range(5):
        base.append(node(f'board{index}', 'gpio_output', line=index))
        base.append(node(f'motor{index}', 'dc_motor', pwm_line=10 + 2 * index,
                         direction_line=11 + 2 * index, depends_on=[f'board{index}']))
    arm = [node(f'servo{index}', 'servo', pwm_line=30 + index) for index in range(20)]
    gripper = [node(f'output{index}', 'gpio_output', line=60 + index) for index in range(20)]
    return {'robot': {'name': 'bench', 'primary': {
        'name': 'base', 'nodes': base, 'parts': [{
            'name': 'arm', 'namespace': '/arm', 'nodes': arm, 'parts': [{
                'name': 'gripper', 'namespace': '/arm/gripper', 'nodes': gripper}]}]}}}


class Observer:
    """Trigger clients for the supervisor and a record of its part events."""

    def __init__(self) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=DOMAIN_ID,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node('supervisor_bench', context=self._context, enable_rosout=False)
        self.events: List[Dict[str, Any]] = []
        self._changed = threading.Condition()
        self._node.create_subscription(String, f'{SUPERVISOR}/part_events', self._on_event,
                                       PART_EVENTS_QOS)
        self._clients = {name: self._node.create_client(Trigger, f'{SUPERVISOR}/{name}')
                         for name in ('startup', 'shutdown', 'get_state')}
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def _on_event(self, message: String) -> None:
        with self._changed:
            self.events.append(json.loads(message.data))
            self._changed.notify_all()

    def wait_event(self, event: str, node: str, timeout_s: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for item in self.events:
                    if item['event'] == event and item.get('node') == node:
                        return item
                if not self._changed.wait(max(deadline - time.monotonic(), 0.0)):
                    raise TimeoutError(f'no {event} of {node} within {timeout_s} s')

    def call(self, name: str, timeout_s: float = 300.0) -> Trigger.Response:
        return call_service(self._clients[name], Trigger.Request(), timeout_s)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=5)
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)


def wait_all_alive(observer: Observer, count: int, timeout_s: float) -> Dict[str, Any]:
    """Poll get_state until `count` nodes are alive (process start has no event)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = json.loads(observer.call('get_state', 30.0).message)
            if sum(1 for node in state['nodes'].values() if node['alive']) == count:
                return state
        except TimeoutError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f'not every node alive within {timeout_s} s')
        time.sleep(0.5)


LATE_REPORT = re.compile(r'\[WARN\] \[(\d+\.\d+)\] \[lifecycle_supervisor\]: \S+ lost '
                         'liveliness; its process still runs')


def false_alarms(log: Path, phases: List[Tuple[str, float]]) -> Dict[str, int]:
    """Count the supervisor's reports of lost liveliness of running processes, per phase."""
    counts = {name: 0 for name, _ in phases}
    for match in LATE_REPORT.finditer(log.read_text(encoding='utf-8', errors='replace')):
        phase = [name for name, start in phases if start <= float(match.group(1))]
        if phase:
            counts[phase[-1]] += 1
    return counts


def main(args: Optional[List[str]] = None) -> int:
    """Run the bench once; print the figures and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--lease', type=float, default=1.0,
                        help="liveliness lease, s (the supervisor's default)")
    parser.add_argument('--output', default='bench_output')
    options = parser.parse_args(args)
    workdir = Path(tempfile.mkdtemp(prefix='supervisor_bench_'))
    description = workdir / 'robot.yaml'
    description.write_text(yaml.safe_dump(generate(str(workdir / 'chip'), options.lease)))
    env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID)))
    log = open(workdir / 'supervisor.log', 'w', encoding='utf-8')
    t0 = time.monotonic()
    phases = [('processes starting', time.time())]
    victim = '/motor4'
    supervisor = subprocess.Popen(
        [sys.executable, '-m', 'viam_session.supervisor.supervisor_node', '--ros-args',
         '-p', f'robot_description:={description}', '-p', 'spawn_nodes:=true',
         '-p', 'transition_timeout_s:=60.0'], env=env, stdout=log, stderr=subprocess.STDOUT)
    observer = Observer()
    results: Dict[str, Any] = {'nodes': 50, 'lease_s': options.lease, 'cpus': os.cpu_count()}
    try:
        state = wait_all_alive(observer, 50, 600.0)
        results['processes_up_s'] = time.monotonic() - t0
        phases.append(('ordered startup', time.time()))
        started = time.monotonic()
        reply = observer.call('startup')
        results['startup_s'] = time.monotonic() - started
        assert reply.success, reply.message
        phases.append(('steady', time.time()))
        time.sleep(1.0)   # let liveliness settle before the kill
        killed_ns = time.monotonic_ns()
        os.kill(state['nodes'][victim]['pid'], signal.SIGKILL)
        lost = observer.wait_event('node_lost', victim, 60.0)
        results['detection_s'] = (lost['t_ns'] - killed_ns) / 1e9
        phases.append(('ordered shutdown', time.time()))
        stopping = time.monotonic()
        reply = observer.call('shutdown')
        results['shutdown_s'] = time.monotonic() - stopping
        results['shutdown_message'] = reply.message
        phases.append(('exit', time.time()))
    finally:
        observer.close()
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=120)
        log.close()
    results['false_alarms'] = false_alarms(workdir / 'supervisor.log', phases)
    results['log'] = str(workdir / 'supervisor.log')
    print(f"50 driver processes up in {results['processes_up_s']:.1f} s; ordered startup "
          f"{results['startup_s']:.2f} s; ordered shutdown {results['shutdown_s']:.2f} s; "
          f"SIGKILLed node reported dead after {results['detection_s'] * 1e3:.0f} ms "
          f"(lease {options.lease} s) on {results['cpus']} CPUs")
    print('lost liveliness of running processes, reports by phase: ' + ', '.join(
        f'{phase} {count}' for phase, count in results['false_alarms'].items()))
    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / 'supervisor_timing.json').write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
