"""
A robot whose client runs in another network namespace, for fault tests and benchmarks.

`python -m viam_session_harness.netfault.remote_robot CLIENT_NS WINDOW_S` runs in namespace
`a` (the robot: session manager, one motor driver, observer); the client process is started in
namespace argv[1] through `ip netns exec`, so its heartbeats cross the link between the
namespaces. argv[2] is the window in seconds. The scenario prints JSON lines with
CLOCK_MONOTONIC times (shared by every namespace):

- `ready` once the client's session drives the motor (session id, client pid);
- after the test writes `fault T_NS` (it broke the link at T_NS): `stopped`, with the instant of
  PWM 0 on the chip, the session's EXPIRED event, and the last heartbeat the client sent
  before T_NS (the last one that can have crossed);
- after `new` (the link is whole again): a new client and session, then `ready` again;
- after the test writes `watch SECONDS`: `watched`, with the session events seen during that
  time (none expected), the duty at the end, the client's heartbeats and any `lost` line.
"""

import json
from pathlib import Path
import sys
import tempfile
import time
from typing import Tuple

from viam_session.chips.sim_chip import LineChange
from viam_session_harness.sim_robot import ClientProcess, SimRobot
from viam_session_interfaces.msg import SessionEvent

__all__ = ['main']

TIMEOUT_S = 60.0


def emit(event: str, **fields: object) -> None:
    print(json.dumps({'event': event, 't_ns': time.monotonic_ns(), **fields}), flush=True)


def start_client(robot: SimRobot, client_ns: str, after_ns: int) -> Tuple[ClientProcess, str,
                                                                          LineChange]:
    """
    Start a client in `client_ns`; return it, its session and the motor's start on the chip.

    `after_ns`: the motor's last stop; PWM changes before it (the manager re-sends commands,
    and each is recorded) belong to the previous session.
    """
    client = robot.start_client(resource='/motor', value=0.5, name='remote',
                                prefix=['ip', 'netns', 'exec', client_ns])
    handle = client.wait_for('started', TIMEOUT_S)['handle']
    running = robot.wait_for_duty('motor', lambda duty: duty > 0.0, after_ns=after_ns,
                                  timeout_s=TIMEOUT_S)
    client.wait_for('heartbeat', TIMEOUT_S)
    # The session's STARTED event, seen late on a loaded machine, would look like news later.
    robot.wait_for_event(handle, SessionEvent.STARTED, timeout_s=TIMEOUT_S)
    emit('ready', handle=handle, client_pid=client.process.pid)
    return client, handle, running


def main() -> None:
    """Run the robot; start a client in the other namespace; answer the commands on stdin."""
    client_ns, window_s = sys.argv[1], float(sys.argv[2])
    with tempfile.TemporaryDirectory() as workdir, SimRobot(
            workdir=Path(workdir), default_window_s=window_s) as robot:
        client, handle, running = start_client(robot, client_ns, 0)
        last_stop_ns = running.t_ns
        for line in sys.stdin:
            command, *arguments = line.split()
            argument = arguments[0] if arguments else ''
            if command == 'new':
                client.close()
                client, handle, running = start_client(robot, client_ns, last_stop_ns)
            elif command == 'fault':
                fault_ns = int(argument)
                expired = robot.wait_for_event(handle, SessionEvent.EXPIRED,
                                               timeout_s=TIMEOUT_S)
                stopped = robot.wait_for_duty('motor', lambda duty: duty == 0.0,
                                              after_ns=running.t_ns, timeout_s=TIMEOUT_S)
                sent = [item['t_ns'] for item in client.lines.snapshot()
                        if item['event'] == 'heartbeat' and item['t_ns'] < fault_ns]
                last_stop_ns = stopped.t_ns
                emit('stopped', stop_t_ns=stopped.t_ns, expired_t_ns=expired.t_ns,
                     last_heartbeat_t_ns=sent[-1])
            elif command == 'watch':
                began = time.monotonic_ns()
                try:
                    event = robot.events.wait_for(
                        lambda item: item.message.handle == handle
                        and item.t_ns > began, float(argument), 'a session event')
                    events = [int(event.message.state)]
                except TimeoutError:
                    events = []
                lines = client.lines.snapshot()
                emit('watched', events=events, duty=robot.duty('motor'),
                     heartbeats=sum(1 for item in lines if item['event'] == 'heartbeat'),
                     lost=[item for item in lines if item['event'] == 'lost'])


if __name__ == '__main__':
    main()
