"""
Watch a lifecycle supervisor from inside a network namespace: JSON lines out, commands in.

`python -m viam_session_harness.netfault.part_observer [--supervisor FQN] NODE...` runs beside the
supervisor (in the primary's namespace, where the test process cannot subscribe) and prints one
JSON object per line with its CLOCK_MONOTONIC arrival time `t_ns` (shared by every namespace):

- `ready` once every NODE answered get_state (the link carries DDS both ways) and the
  supervisor's services are up;
- `part_event` {data}: each message of the supervisor's `~/part_events`.

Commands on stdin, one per line: `startup` -> `startup` {success, message} (the supervisor's
`~/startup`); `state` -> `state` {state} (its `~/get_state` JSON). End of stdin ends it.
"""

import argparse
import json
import sys
import threading
import time
from typing import Dict, List, Optional

from lifecycle_msgs.srv import GetState
import rclpy
from rclpy.client import Client
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from viam_session.service_call import call_service
from viam_session.supervisor.supervisor_node import PART_EVENTS_QOS

__all__ = ['main']

TIMEOUT_S = 60.0
GET_STATE_TRY_S = 1.0

_print_lock = threading.Lock()   # lines come from the executor thread and the main thread


def emit(event: str, **fields: object) -> None:
    line = json.dumps({'event': event, 't_ns': time.monotonic_ns(), **fields})
    with _print_lock:
        print(line, flush=True)


def wait_discovered(clients: Dict[str, Client], timeout_s: float) -> None:
    """Wait until each node answers get_state (`clients`: its get_state client, by name)."""
    deadline = time.monotonic() + timeout_s
    for fqn, client in clients.items():
        while True:
            try:
                call_service(client, GetState.Request(), GET_STATE_TRY_S)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f'{fqn} did not answer get_state') from None


def main(args: Optional[List[str]] = None) -> int:
    """Observe until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--supervisor', default='/lifecycle_supervisor')
    parser.add_argument('nodes', nargs='+', help='fully qualified names of managed nodes')
    options = parser.parse_args(args)
    rclpy.init()
    node = Node('part_observer', enable_rosout=False)
    node.create_subscription(String, f'{options.supervisor}/part_events',
                             lambda m: emit('part_event', data=json.loads(m.data)),
                             PART_EVENTS_QOS)
    # Created before spinning: entities created later from another thread may wait for the
    # executor to wake up.
    get_state = {fqn: node.create_client(GetState, f'{fqn}/get_state') for fqn in options.nodes}
    services = {name: node.create_client(Trigger, f'{options.supervisor}/{name}')
                for name in ('startup', 'get_state')}
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        wait_discovered(get_state, TIMEOUT_S)
        for client in services.values():
            if not client.wait_for_service(timeout_sec=TIMEOUT_S):
                raise TimeoutError(f'{client.srv_name} is not available')
        emit('ready')
        for line in sys.stdin:
            command = line.strip()
            if command == 'startup':
                reply = call_service(services['startup'], Trigger.Request(), 2 * TIMEOUT_S)
                emit('startup', success=reply.success, message=reply.message)
            elif command == 'state':
                reply = call_service(services['get_state'], Trigger.Request(), TIMEOUT_S)
                emit('state', state=json.loads(reply.message))
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
