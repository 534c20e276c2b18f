"""
A robot that loses its network, run inside a network namespace by test_connectivity_sessions.

The session manager watches the namespace's veth (argv[1]); two motors run, one driven by a
remote client and one by a local client (on the robot). The scenario prints JSON lines with
CLOCK_MONOTONIC times: `ready` once both motors run; then, after the test took the link down,
`closed` (the remote session closed by the robot, its motor stopped, the local one untouched)
and `refused` (a new remote session is refused while the link is down); after the test writes
a line to stdin (link back up), `restarted` (a new remote session starts).
"""

import json
from pathlib import Path
import sys
import tempfile
import time

from lifecycle_msgs.msg import State

from viam_session_harness.sim_robot import MotorSpec, SimRobot
from viam_session_interfaces.msg import SessionEvent
from viam_session_interfaces.srv import ListSessions

WINDOW_S = 10.0  # long: the remote session must end by connectivity loss, not by expiry
TIMEOUT_S = 60.0


def emit(event: str, **fields: object) -> None:
    print(json.dumps({'event': event, 't_ns': time.monotonic_ns(), **fields}), flush=True)


def main() -> None:
    interface = sys.argv[1]
    motors = (MotorSpec('remote_motor', 12, 16), MotorSpec('local_motor', 13, 17))
    with tempfile.TemporaryDirectory() as workdir, SimRobot(
            workdir=Path(workdir), motors=motors, default_window_s=WINDOW_S,
            manager_parameters=[f"connectivity_interfaces:=['{interface}']"]) as robot:
        remote = robot.start_client(resource='/remote_motor', value=0.5, name='laptop')
        local = robot.start_client(resource='/local_motor', value=0.3, name='planner',
                                   local=True)
        remote_id = remote.wait_for('started', TIMEOUT_S)['handle']
        local_id = local.wait_for('started', TIMEOUT_S)['handle']
        running = robot.wait_for_duty('remote_motor', lambda duty: duty > 0.0)
        robot.wait_for_duty('local_motor', lambda duty: duty > 0.0)
        emit('ready', remote=remote_id, local=local_id)

        closed = robot.wait_for_event(remote_id, SessionEvent.CLOSED_BY_ROBOT,
                                      timeout_s=TIMEOUT_S)
        stopped = robot.wait_for_duty('remote_motor', lambda duty: duty == 0.0,
                                      after_ns=running.t_ns, timeout_s=TIMEOUT_S)
        listed = robot.call('/session_manager/list_sessions', ListSessions.Request())
        emit('closed', event_t_ns=closed.t_ns, stop_t_ns=stopped.t_ns,
             reason=closed.message.reason, owned=list(closed.message.owned_resources),
             live=[s.handle for s in listed.sessions],
             local_duty=robot.duty('local_motor'),
             local_active=robot.lifecycle_state('local_motor') == State.PRIMARY_STATE_ACTIVE,
             client_lost=remote.wait_for('lost', TIMEOUT_S)['reason'])

        late = robot.start_client(resource='/remote_motor', value=0.5, name='late laptop')
        emit('refused', reason=late.wait_for('error', TIMEOUT_S)['reason'])

        sys.stdin.readline()  # the test has brought the link back up
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            again = robot.start_client(resource='/remote_motor', value=0.4, name='back')
            line = again.lines.wait_for(lambda item: item['event'] in ('started', 'error'),
                                        TIMEOUT_S, 'start or error')
            if line['event'] == 'started' or time.monotonic() > deadline:
                break
        robot.wait_for_duty('remote_motor', lambda duty: duty > 0.0, after_ns=stopped.t_ns)
        emit('restarted', result=line)


if __name__ == '__main__':
    main()
