"""
Measure how fast an expiry stops a robot's own things: a gated cmd_vel, lifecycle nodes.

A session manager (reading a robot description), a session gate relaying teleop to /cmd_vel
(20 Hz zeros for 1 s) run as processes; N plain rclpy lifecycle nodes (the robot's own, not
ours) run in this process. Each trial a client claims the gate and the N nodes, teleop drives
through the gate, then the client falls silent (its link drops). From the manager's expiry
event (its stamp, system clock, taken just after the manager sent the stops) the bench times:

- the first zero Twist arriving on /cmd_vel;
- the first external node's `inactive` transition event arriving here, and the last one's.

Run from the repository root with the venv's Python (ROS domains 201 and 202):

    .venv/bin/python bench/external_stop.py [--trials 10] [--window 0.5]

Prints p50 / max per figure and writes bench_output/external_stop.csv.
"""

import argparse
import csv
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Dict, List

from geometry_msgs.msg import Twist, Vector3
from lifecycle_msgs.msg import State

from viam_session_harness.external_robot import ExternalRobot, GateSpec
from viam_session_harness.ros_domains import domain_range
from viam_session_interfaces.msg import SessionEvent

_DOMAIN_RANGE = domain_range(range(201, 203))
DOMAINS = {1: _DOMAIN_RANGE[0], 10: _DOMAIN_RANGE[1]}
FORWARD = Twist(linear=Vector3(x=0.5))
OUTPUT = Path('bench_output') / 'external_stop.csv'


def description(count: int) -> dict:
    return {'name': 'bench', 'primary': {
        'name': 'base',
        'nodes': [{'name': 'base_gate', 'driver': 'session_gate',
                   'parameters': {'message_type': 'twist', 'output_topic': '/cmd_vel'}}],
        'resources': [{'name': f'node_{index}', 'kind': 'lifecycle_node',
                       'target': f'/robot_node_{index}'} for index in range(count)]}}


def stamp_ns(event: SessionEvent) -> int:
    return event.stamp.sec * 1_000_000_000 + event.stamp.nanosec


def trial(robot: ExternalRobot, count: int, window_s: float) -> Dict[str, float]:
    """Drive, fall silent, time the stops; leave the robot ready for the next trial."""
    nodes = [f'robot_node_{index}' for index in range(count)]
    client = robot.client('bench', window_s=window_s)
    client.claim('/base_gate')
    for index in range(count):
        client.claim(f'/node_{index}')
    robot.wait_owned(client.handle, ['/base_gate', *(f'/node_{i}' for i in range(count))])
    relayed = robot.outputs.wait_for(lambda item: item[1] == FORWARD,
                                     after_ns=time.monotonic_ns())
    client._stop_heartbeats()      # the link drops
    expired = robot.wait_for_event(client.handle, SessionEvent.EXPIRED)
    zero = robot.outputs.wait_for(lambda item: item[1] == Twist(), after_ns=relayed.t_ns)
    inactive = [robot.transitions.wait_for(
        lambda item, name=name: item == (name, State.PRIMARY_STATE_INACTIVE),
        after_ns=relayed.t_ns) for name in nodes]
    expiry = stamp_ns(expired.item)
    figures = {'zero_ms': (zero.wall_ns - expiry) / 1e6,
               'first_inactive_ms': (min(a.wall_ns for a in inactive) - expiry) / 1e6,
               'last_inactive_ms': (max(a.wall_ns for a in inactive) - expiry) / 1e6}
    for name in nodes:     # the robot's own tooling brings them back
        robot.robot_node(name).trigger_activate()
    # Let the gate's burst (1 s) end, so that the next trial's first zero is its own.
    robot.outputs.wait_for(lambda item: item[1] == Twist(), after_ns=zero.t_ns + int(0.95e9))
    return figures


def run(count: int, trials: int, window_s: float, workdir: Path) -> List[Dict[str, float]]:
    robot = ExternalRobot(
        workdir=workdir, domain_id=DOMAINS[count], description=description(count),
        window_s=window_s, gates=[GateSpec('base_gate', '/cmd_vel')],
        lifecycle_nodes=[f'robot_node_{index}' for index in range(count)])
    rows = []
    try:
        robot.start()
        robot.teleop('base_gate', FORWARD)
        for number in range(trials):
            figures = trial(robot, count, window_s)
            rows.append({'resources': count, 'trial': number, **figures})
            print(f'  {count:>2} resource(s), trial {number}: first zero '
                  f'{figures["zero_ms"]:.2f} ms, first inactive '
                  f'{figures["first_inactive_ms"]:.2f} ms, last inactive '
                  f'{figures["last_inactive_ms"]:.2f} ms', flush=True)
    finally:
        robot.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--trials', type=int, default=10)
    parser.add_argument('--window', type=float, default=0.5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix='external_stop_') as scratch:
        for count in DOMAINS:
            rows += run(count, args.trials, args.window, Path(scratch) / f'n{count}')
    OUTPUT.parent.mkdir(exist_ok=True)
    with open(OUTPUT, 'w', newline='', encoding='utf-8') as output:
        writer = csv.DictWriter(output, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f'\nms from the expiry event stamp, {args.trials} trials each (p50 / max):')
    for count in DOMAINS:
        mine = [row for row in rows if row['resources'] == count]
        cells = []
        for key in ('zero_ms', 'first_inactive_ms', 'last_inactive_ms'):
            values = [row[key] for row in mine]
            cells.append(f'{key[:-3]} {statistics.median(values):.2f} / {max(values):.2f}')
        print(f'  {count:>2} external resource(s): ' + ', '.join(cells))
    print(f'wrote {OUTPUT}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
