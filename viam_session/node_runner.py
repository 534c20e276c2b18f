"""
Run a node until SIGINT/SIGTERM, with a last step that still has ROS to talk to.

SIGUSR1 prints every thread's stack to stderr (`kill -USR1 <pid>`): what a node that does not
answer or does not exit is doing.
"""

import faulthandler
import signal
import sys
import threading
import traceback
from typing import Callable, List, Optional, TypeVar

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

N = TypeVar('N', bound=Node)

__all__ = ['run_node', 'spin_until_signal']


def run_node(create_node: Callable[[], N], *, before_shutdown: Callable[[N], None],
             args: Optional[List[str]] = None,
             on_signal_again: Optional[Callable[[N], None]] = None) -> int:
    """
    Initialise rclpy, create the node and spin it until SIGINT/SIGTERM; return an exit code.

    SIGINT/SIGTERM are left to spin_until_signal, so ROS outlives the signal for
    `before_shutdown`; `on_signal_again` is told of a SIGTERM that follows (see there). A bad
    parameter or configuration ends the process with its message and exit code 2, having
    touched nothing.
    """
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = create_node()
    except (ValueError, ParameterException) as error:
        print(f'bad configuration: {error}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    again = None if on_signal_again is None else (lambda: on_signal_again(node))
    return spin_until_signal(node, before_shutdown=lambda: before_shutdown(node),
                             on_signal_again=again)


def spin_until_signal(node: Node, *, before_shutdown: Callable[[], None],
                      on_signal_again: Optional[Callable[[], None]] = None) -> int:
    """
    Spin `node` in a thread until SIGINT or SIGTERM (or an exception in a callback).

    `before_shutdown` then runs while the executor still spins, so it can call services and
    publish (stop actuators, tell clients); afterwards the node and rclpy are shut down.
    A SIGTERM that comes while `before_shutdown` runs calls `on_signal_again` (on the main
    thread, between two of its steps): `ros2 launch` sends SIGTERM 5 s after SIGINT and
    SIGKILL 5 s later, so a process that waits for an ordered shutdown ends the wait there.
    A repeated SIGINT does not: on Ctrl-C the terminal signals launch's whole process group
    and launch then sends SIGINT to each of its processes once more.
    Returns a process exit code: 0 after a signal, 1 after an exception in a callback.
    """
    name = node.get_name()
    stop = threading.Event()
    signalled = threading.Event()
    failure: List[BaseException] = []

    def on_signal(signum: int, _: object) -> None:
        if stop.is_set() and signum == signal.SIGTERM and on_signal_again is not None:
            on_signal_again()
        signalled.set()
        stop.set()

    previous_handlers = {signum: signal.signal(signum, on_signal)
                         for signum in (signal.SIGINT, signal.SIGTERM)}
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass
        except BaseException as error:  # noqa: B902 - reported below, then the node stops safe
            failure.append(error)
        finally:
            stop.set()

    spinner = threading.Thread(target=spin, name=f'{name}_executor', daemon=True)
    spinner.start()
    try:
        while not stop.wait(1.0):  # a timed wait lets the main thread run signal handlers
            pass
    finally:
        try:
            before_shutdown()
        finally:
            executor.shutdown(timeout_sec=1.0)
            spinner.join(timeout=2.0)
            node.destroy_node()
            rclpy.try_shutdown()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if signalled.is_set():
                # On its way out, outputs safe: launch's repeated SIGINT must not kill it now
                # (exit code -2; Python's own handlers are gone once the interpreter finalizes).
                signal.signal(signal.SIGINT, signal.SIG_IGN)
    if failure:
        print(f'{name}: stopped after an error in a callback:', file=sys.stderr)
        traceback.print_exception(failure[0], file=sys.stderr)
        return 1
    return 0
