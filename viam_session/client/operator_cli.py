"""
`viam-session`: look at and manage a robot's sessions from a terminal.

    ros2 run viam_session viam-session list     # live sessions, their windows, what they own
    ros2 run viam_session viam-session watch    # session events as they happen (recent first)
    ros2 run viam_session viam-session start --name me --command /left_motor=0.3  # until Ctrl-C
    ros2 run viam_session viam-session end SESSION_ID    # end it (its secret id, from start)
    ros2 run viam_session viam-session stop HANDLE       # stop its actuators (opt-out robots)
    ros2 run viam_session viam-session --manager /r1/session_manager list   # robot in /r1

Like every executable of a ROS package it is installed in `lib/viam_session`, not on PATH:
`ros2 run` finds it. Without the ros2 command: `python -m viam_session.client.operator_cli`.
"""

import argparse
from contextlib import contextmanager
import signal
import sys
import threading
from typing import Iterator, Optional, Sequence, Tuple

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from viam_session.client.session_client import SessionClient, SessionError
from viam_session.service_call import call_service
from viam_session.sessions.manager_node import EVENTS_QOS, STATE_NAMES
from viam_session.time_convert import duration_to_seconds
from viam_session_interfaces.msg import SessionEvent
from viam_session_interfaces.srv import EndSession, ListSessions, StopSessionResources

__all__ = ['main']


@contextmanager
def _ros_node() -> Iterator[Node]:
    """Yield a node of a ROS context of its own, spun in a background thread."""
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = Node('viam_session_cli', context=context, enable_rosout=False,
                start_parameter_services=False)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield node
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _call(manager: str, service: str, service_type: type, request: object,
          timeout_s: float) -> object:
    with _ros_node() as node:
        return call_service(node.create_client(service_type, f'{manager}/{service}'), request,
                            timeout_s)


def _wait_for_interrupt() -> threading.Event:
    finished = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: finished.set())
    return finished


def list_sessions(args: argparse.Namespace) -> int:
    response = _call(args.manager, 'list_sessions', ListSessions, ListSessions.Request(),
                     args.timeout)
    if not response.sessions:
        print('no live sessions')
    for session in response.sessions:
        where = 'local' if session.local else 'remote'
        owned = ', '.join(session.owned_resources) or 'nothing'
        print(f'{session.handle}  {session.client!r} ({where}), window '
              f'{duration_to_seconds(session.window):g} s, owns {owned}')
    return 0


def end_session(args: argparse.Namespace) -> int:
    response = _call(args.manager, 'end_session', EndSession,
                     EndSession.Request(session_id=args.session_id), args.timeout)
    print(f'{response.message}; stopped {list(response.stopped_resources)}')
    return 0 if response.success else 1


def stop_resources(args: argparse.Namespace) -> int:
    response = _call(args.manager, 'stop_session_resources', StopSessionResources,
                     StopSessionResources.Request(handle=args.handle), args.timeout)
    print(f'{response.message}; stopped {list(response.stopped_resources)}')
    return 0 if response.success else 1


def watch_events(args: argparse.Namespace) -> int:
    finished = _wait_for_interrupt()
    print_lock = threading.Lock()

    def show(event: SessionEvent) -> None:
        owned = ', '.join(event.owned_resources) or 'nothing'
        with print_lock:
            print(f'{STATE_NAMES.get(event.state, event.state):>15}  {event.handle}  '
                  f'{event.client!r}  {event.reason}; owned {owned}', flush=True)

    with _ros_node() as node:
        node.create_subscription(SessionEvent, f'{args.manager}/events', show, EVENTS_QOS)
        finished.wait()
    return 0


def parse_command(text: str) -> Tuple[str, float]:
    """Turn '/left_motor=0.3' into ('/left_motor', 0.3); raise ArgumentTypeError."""
    resource, separator, value = text.partition('=')
    try:
        if separator and resource:
            return resource, float(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f'expected ACTUATOR=VALUE, got {text!r}')


def hold_session(args: argparse.Namespace) -> int:
    finished = _wait_for_interrupt()
    client = SessionClient(client_name=args.name, manager=args.manager, window_s=args.window,
                           local=args.local, on_lost=lambda reason: (
                               print(f'session lost: {reason}', flush=True), finished.set()))
    try:
        session_id = client.start(timeout_s=args.timeout)
        print(f'session {client.handle} live, window {client.window_s:g} s; Ctrl-C ends it '
              f'(secret id {session_id}: `end` takes it; keep it to yourself)', flush=True)
        for resource, value in args.command:
            client.command(resource, value)
        finished.wait()
        if client.lost_reason is None:
            print(f'ended; stopped {client.end()}')
        return 0
    except (SessionError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    finally:
        client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='viam-session', description=__doc__.strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.strip().splitlines()[2:]))
    parser.add_argument('--manager', default='/session_manager',
                        help='fully qualified name of the session manager node')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='seconds to wait for the robot to answer')
    commands = parser.add_subparsers(dest='action', required=True)
    commands.add_parser('list', help='list live sessions').set_defaults(run=list_sessions)
    commands.add_parser('watch', help='print session events').set_defaults(run=watch_events)
    end = commands.add_parser('end', help='end a session')
    end.add_argument('session_id', help='the secret id its start printed (a handle ends nothing)')
    end.set_defaults(run=end_session)
    stop = commands.add_parser('stop', help="stop a session's actuators")
    stop.add_argument('handle', help='its handle, as list and watch show it')
    stop.set_defaults(run=stop_resources)
    start = commands.add_parser('start', help='hold a session open until Ctrl-C')
    start.add_argument('--name', default='viam-session cli', help='client name')
    start.add_argument('--window', type=float, default=0.0,
                       help='heartbeat window in seconds (0: the robot default)')
    start.add_argument('--local', action='store_true', help='a client on the robot itself')
    start.add_argument('--command', type=parse_command, action='append', default=[],
                       metavar='ACTUATOR=VALUE', help='command to send once the session is live')
    start.set_defaults(run=hold_session)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one `viam-session` command; return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except TimeoutError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
