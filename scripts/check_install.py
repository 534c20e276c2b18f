"""
Start an installed session_manager executable and ask it for its sessions.

Usage: python check_install.py PATH_TO_session_manager

Proves that what `colcon build` installed runs: the executable starts, its interfaces load,
it answers `~/list_sessions`, and it exits cleanly on SIGINT. Uses ROS_DOMAIN_ID when set,
else a random domain of 101-200.
"""

import os
import random
import signal
import subprocess
import sys
import time

import rclpy
from viam_session_interfaces.srv import ListSessions

DEADLINE_S = 60.0


def main(executable: str) -> int:
    """Run the check; 0 when the manager answered and exited on SIGINT."""
    domain = int(os.environ.get('ROS_DOMAIN_ID') or random.randint(101, 200))
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    manager = subprocess.Popen([executable], env=env)
    rclpy.init(domain_id=domain)
    node = rclpy.create_node('check_install')
    try:
        client = node.create_client(ListSessions, '/session_manager/list_sessions')
        if not client.wait_for_service(timeout_sec=DEADLINE_S):
            print(f'check_install: {executable} offered no list_sessions within {DEADLINE_S} s')
            return 1
        future = client.call_async(ListSessions.Request())
        deadline = time.monotonic() + DEADLINE_S
        while not future.done() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.5)
        if not future.done():
            print('check_install: list_sessions did not answer')
            return 1
        print(f'check_install: {os.path.basename(executable)} (domain {domain}) answered '
              f'list_sessions: {len(future.result().sessions)} session(s)')
        manager.send_signal(signal.SIGINT)
        code = manager.wait(timeout=DEADLINE_S)
        print(f'check_install: exited {code} on SIGINT')
        return 0 if code == 0 else 1
    finally:
        if manager.poll() is None:
            manager.kill()
        node.destroy_node()
        rclpy.shutdown()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
