"""
`session_client`: open a session, drive one actuator, keep heartbeating until stopped.

Prints one JSON object per line (started, heartbeat, rejected, lost, ended) with CLOCK_MONOTONIC
timestamps, so a demo or a test can tell exactly when the last heartbeat left: a heartbeat's
is taken just before its liveliness assertion, which cannot have left before it.
"""

import argparse
import json
import signal
import sys
import threading
import time
from typing import List, Optional

from viam_session.client.session_client import SessionClient, SessionError

__all__ = ['main']


_print_lock = threading.Lock()  # heartbeats are printed from the heartbeat thread


def _print(event: str, **fields: object) -> None:
    line = json.dumps({'event': event, 't_ns': time.monotonic_ns(), **fields})
    with _print_lock:
        print(line, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--manager', default='/session_manager',
                        help='fully qualified name of the session manager node')
    parser.add_argument('--name', default='session_client', help='client name shown by the robot')
    parser.add_argument('--window', type=float, default=0.0,
                        help='requested heartbeat window in seconds (0: the robot default)')
    parser.add_argument('--resource', required=True,
                        help='actuator to drive, e.g. /left_motor')
    parser.add_argument('--value', type=float, required=True, help='command value, e.g. power')
    parser.add_argument('--claim', action='append', default=[], metavar='RESOURCE',
                        help='also own this resource (open a session gate, claim an external '
                             'resource); repeatable')
    parser.add_argument('--resume', default='',
                        help='secret id of a live session of this client name to resume')
    parser.add_argument('--local', action='store_true',
                        help='this client runs on the robot: keep the session when the robot '
                             'loses connectivity')
    parser.add_argument('--duration', type=float, default=0.0,
                        help='end the session cleanly after this many seconds (0: run until '
                             'SIGINT/SIGTERM)')
    args = parser.parse_args(argv)

    finished = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: finished.set())

    def on_lost(reason: str) -> None:
        _print('lost', reason=reason)
        finished.set()

    try:
        client = SessionClient(
            client_name=args.name, manager=args.manager, window_s=args.window,
            local=args.local, on_lost=on_lost,
            on_heartbeat=lambda sequence, t_ns: _print('heartbeat', sequence=sequence, t_ns=t_ns),
            on_rejection=lambda refusal: _print('rejected', resource=refusal.resource,
                                                value=refusal.value, reason=refusal.reason))
    except ValueError as error:
        _print('error', reason=str(error))
        return 2
    try:
        session_id = client.start(resume_session_id=args.resume)
        _print('started', session_id=session_id, handle=client.handle, window_s=client.window_s)
        client.command(args.resource, args.value)
        _print('commanded', resource=args.resource, value=args.value)
        for resource in args.claim:
            client.claim(resource)
            _print('claimed', resource=resource)
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while not finished.wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                break
        if client.lost_reason is None:
            _print('ended', stopped=client.end())
        return 0
    except (SessionError, ValueError) as error:
        _print('error', reason=str(error))
        return 1
    finally:
        client.close()


if __name__ == '__main__':
    sys.exit(main())
