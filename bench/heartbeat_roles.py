"""
The processes of the heartbeat design benchmark: a receiver and a load generator.

`bench/heartbeat_designs.py` starts them with the venv's Python, one role each:

    heartbeat_roles.py receiver  --design D --window S --ids FILE
    heartbeat_roles.py generator --design D --window S --ids FILE --first I --count N

They report in JSON lines on stdout (every time a CLOCK_MONOTONIC `t`, which is system-wide on
Linux) and take one command a line on stdin: `mark` (report counters), `stop I` (generator:
stop asserting session I), `quit`. End of stdin means quit, so they never outlive the bench.

Designs (the receiver side is what the session manager would do):
- `A`: every session publishes a Heartbeat message on one shared topic at window/5; the
  receiver's one subscription looks the id up in a dict and moves its deadline.
- `B1`, `B2`: one topic per session, liveliness MANUAL_BY_TOPIC with lease = window, the
  client only calls `assert_liveliness()` at window/5; the receiver has one subscription per
  session with a liveliness event callback, on its main node (`B1`) or on a node of their own
  spun by a second executor in a thread (`B2`).
- `C`: each generator process publishes one String per window/5 listing all its sessions' ids.
- `base`: no sessions; the receiver only takes the command traffic.
Every design's receiver also takes the command traffic (std_msgs/Float64) on its main node.
"""

import argparse
from functools import partial
import json
import signal
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import rclpy
from rclpy.duration import Duration
from rclpy.event_handler import QoSLivelinessChangedInfo, SubscriptionEventCallbacks
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64, String

from viam_session_interfaces.msg import Heartbeat

DESIGNS = ('base', 'A', 'B1', 'B2', 'C')
SHARED_TOPIC = '/bench/heartbeat'
BATCH_TOPIC = '/bench/heartbeat_batch'
COMMAND_TOPIC = '/bench/command'
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# The session manager's heartbeat QoS (viam_session.sessions.manager_node.HEARTBEAT_QOS), kept
# here so the bench does not depend on the manager module's imports.
HEARTBEAT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# Heartbeats per window, as the client library sends them.
BEATS_PER_WINDOW = 5
# How often the receiver reports discovery progress until every session is alive.
PROGRESS_PERIOD_S = 0.5

_print_lock = threading.Lock()


def emit(event: str, **fields: object) -> None:
    """Print one JSON line for the bench, with the CLOCK_MONOTONIC time."""
    line = json.dumps({'event': event, 't': time.monotonic(), **fields})
    with _print_lock:
        sys.stdout.write(line + '\n')
        sys.stdout.flush()


def session_topic(session_id: str) -> str:
    """Return the per-session liveliness topic of design B."""
    return f'{SHARED_TOPIC}/h{session_id}'


def liveliness_qos(window_s: float) -> QoSProfile:
    """Return the QoS of design B: manual liveliness with lease = window, reliable, depth 1."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
                      liveliness_lease_duration=Duration(seconds=window_s))


def read_commands(handlers: Dict[str, Callable[[List[str]], None]],
                  on_end: Callable[[], None]) -> threading.Thread:
    """Run `handlers[word](args)` for each stdin line in a thread; `on_end` on quit or EOF."""
    def loop() -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == 'quit':
                break
            handler = handlers.get(words[0])
            if handler is None:
                emit('error', message=f'unknown command {line.strip()!r}')
            else:
                handler(words[1:])
        on_end()

    thread = threading.Thread(target=loop, name='commands', daemon=True)
    thread.start()
    return thread


def make_executor(kind: str) -> Executor:
    """Return a SingleThreadedExecutor, or rclpy's experimental EventsExecutor."""
    if kind == 'events':
        from rclpy.experimental import EventsExecutor
        return EventsExecutor()
    return SingleThreadedExecutor()


# --- receiver ------------------------------------------------------------------------------------


class Receiver:
    """The session manager side of one design, reduced to what heartbeats cost."""

    def __init__(self, design: str, window_s: float, session_ids: Sequence[str],
                 executor_kind: str) -> None:
        self._design = design
        self._window_s = window_s
        self._ids = list(session_ids)
        self._deadlines: Dict[str, float] = dict.fromkeys(self._ids, 0.0)
        self._alive = [False] * len(self._ids)
        self._received = 0
        self._unknown = 0
        self._commands = 0
        self._lost = 0
        self._last_command = 0.0
        self.node = Node('bench_receiver')
        self.executors: List[Executor] = [make_executor(executor_kind)]
        self.executors[0].add_node(self.node)
        self.node.create_subscription(Float64, COMMAND_TOPIC, self._on_command, COMMAND_QOS)
        self._create_heartbeat_entities(executor_kind)

    def _create_heartbeat_entities(self, executor_kind: str) -> None:
        if self._design == 'A':
            self.node.create_subscription(
                Heartbeat, SHARED_TOPIC, self._on_heartbeat, HEARTBEAT_QOS)
        elif self._design == 'C':
            self.node.create_subscription(String, BATCH_TOPIC, self._on_batch, HEARTBEAT_QOS)
        elif self._design in ('B1', 'B2'):
            node = self.node
            if self._design == 'B2':
                node = Node('bench_liveliness')
                self.executors.append(make_executor(executor_kind))
                self.executors[1].add_node(node)
            self._create_liveliness_subscriptions(node)

    def _create_liveliness_subscriptions(self, node: Node) -> None:
        qos = liveliness_qos(self._window_s)
        for index, session_id in enumerate(self._ids):
            callbacks = SubscriptionEventCallbacks(
                liveliness=partial(self._on_liveliness, index))
            node.create_subscription(Heartbeat, session_topic(session_id), self._on_data, qos,
                                     event_callbacks=callbacks)

    # --- callbacks (the per-design cost being measured) ---------------------------------------

    def _on_heartbeat(self, message: Heartbeat) -> None:
        session_id = message.handle
        if session_id in self._deadlines:
            self._deadlines[session_id] = time.monotonic() + self._window_s
        else:
            self._unknown += 1
        self._received += 1

    def _on_batch(self, message: String) -> None:
        deadline = time.monotonic() + self._window_s
        deadlines = self._deadlines
        for session_id in message.data.split(','):
            if session_id in deadlines:
                deadlines[session_id] = deadline
            else:
                self._unknown += 1
        self._received += 1

    def _on_liveliness(self, index: int, info: QoSLivelinessChangedInfo) -> None:
        now = time.monotonic()
        alive = info.alive_count > 0
        if self._alive[index] and not alive:
            self._lost += 1
            emit('lost', index=index, lost_t=now)
        self._alive[index] = alive

    def _on_data(self, message: Heartbeat) -> None:
        self._received += 1

    def _on_command(self, message: Float64) -> None:
        self._last_command = message.data
        self._commands += 1

    # --- reporting -------------------------------------------------------------------------

    def alive_count(self) -> int:
        """Return how many sessions are alive (B) or have been heard from in a window."""
        if self._design in ('B1', 'B2'):
            return sum(self._alive)
        now = time.monotonic()
        return sum(1 for deadline in self._deadlines.values() if deadline > now)

    def report_progress(self, stop: threading.Event) -> None:
        """Report discovery progress until every session is alive, then `complete`."""
        total = len(self._ids)
        while not stop.is_set():
            alive = self.alive_count()
            if alive == total:
                emit('complete', alive=alive, total=total)
                return
            emit('progress', alive=alive, total=total)
            stop.wait(PROGRESS_PERIOD_S)

    def mark(self, _args: List[str]) -> None:
        """Report the counters (the bench takes differences between two marks)."""
        emit('mark', received=self._received, commands=self._commands, lost=self._lost,
             unknown=self._unknown, alive=self.alive_count(), total=len(self._ids))


def run_receiver(args: argparse.Namespace, session_ids: List[str]) -> None:
    """Create the receiver's entities, report, and spin until told to quit."""
    started = time.monotonic()
    receiver = Receiver(args.design, args.window, session_ids, args.executor)
    emit('created', seconds=time.monotonic() - started, sessions=len(session_ids))
    stop = threading.Event()

    def quit_all() -> None:
        stop.set()
        rclpy.try_shutdown()

    read_commands({'mark': receiver.mark}, quit_all)
    threading.Thread(target=receiver.report_progress, args=(stop,), daemon=True).start()
    spinners = [threading.Thread(target=executor.spin, daemon=True)
                for executor in receiver.executors[1:]]
    for spinner in spinners:
        spinner.start()
    try:
        receiver.executors[0].spin()
    except rclpy.executors.ExternalShutdownException:
        pass
    for spinner in spinners:
        spinner.join(timeout=10)


# --- generator -----------------------------------------------------------------------------------


class Heartbeater:
    """Do one heartbeat action per session (or per batch) at window/5, spread evenly."""

    def __init__(self, actions: List[Callable[[], None]], period_s: float,
                 window_s: float) -> None:
        self._actions = actions
        self._period_s = period_s
        self._window_s = window_s
        self.sent = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        """Act on schedule; if more than a window behind, say so once and keep going."""
        count = len(self._actions)
        slot = self._period_s / count
        next_due = time.monotonic()
        k = 0
        said_behind = False
        while not self.stopping.is_set():
            now = time.monotonic()
            if not said_behind and now - next_due > self._window_s:
                emit('behind', lag_s=now - next_due)
                said_behind = True
            while next_due <= now:
                self._actions[k % count]()
                self.sent += 1
                k += 1
                next_due += slot
            self.stopping.wait(next_due - time.monotonic())


class Generator:
    """Sessions' clients of one design in one process, heartbeating from a thread."""

    def __init__(self, design: str, window_s: float, session_ids: Sequence[str],
                 command_rate: float) -> None:
        self._design = design
        self._window_s = window_s
        self._ids = list(session_ids)
        self._stop_requested: set = set()
        self._stopped: set = set()
        self._last_assert = [0.0] * len(self._ids)
        self.node = Node('bench_generator')
        period_s = window_s / BEATS_PER_WINDOW
        actions = self._create_actions()
        self.heartbeater = Heartbeater(actions, period_s, window_s) if actions else None
        self.commander = None
        if command_rate > 0:
            publisher = self.node.create_publisher(Float64, COMMAND_TOPIC, COMMAND_QOS)
            self.commander = Heartbeater(
                [partial(publisher.publish, Float64(data=0.5))], 1.0 / command_rate, 1.0)

    def _create_actions(self) -> List[Callable[[], None]]:
        if not self._ids:
            return []
        if self._design == 'A':
            return [self._heartbeat_action(session_id) for session_id in self._ids]
        if self._design == 'C':
            publisher = self.node.create_publisher(String, BATCH_TOPIC, HEARTBEAT_QOS)
            return [partial(publisher.publish, String(data=','.join(self._ids)))]
        if self._design in ('B1', 'B2'):
            qos = liveliness_qos(self._window_s)
            return [partial(self._assert, index,
                            self.node.create_publisher(Heartbeat, session_topic(session_id),
                                                       qos))
                    for index, session_id in enumerate(self._ids)]
        return []

    def _heartbeat_action(self, session_id: str) -> Callable[[], None]:
        publisher = self.node.create_publisher(Heartbeat, SHARED_TOPIC, HEARTBEAT_QOS)
        message = Heartbeat(handle=session_id)

        def beat() -> None:
            message.sequence += 1
            now_ns = time.time_ns()
            message.sent.sec, message.sent.nanosec = divmod(now_ns, 1_000_000_000)
            publisher.publish(message)

        return beat

    def _assert(self, index: int, publisher: Publisher) -> None:
        if index in self._stop_requested:
            if index not in self._stopped:
                self._stopped.add(index)
                emit('stopped', index=index, last_assert_t=self._last_assert[index])
            return
        self._last_assert[index] = time.monotonic()  # when the client asserted
        publisher.assert_liveliness()

    def stop_session(self, args: List[str]) -> None:
        """Stop asserting liveliness for one session (its publisher stays)."""
        self._stop_requested.add(int(args[0]))

    def mark(self, _args: List[str]) -> None:
        """Report how many heartbeat actions and commands were sent so far."""
        emit('mark', sent=self.heartbeater.sent if self.heartbeater else 0,
             commands=self.commander.sent if self.commander else 0)

    def workers(self) -> List[Heartbeater]:
        """Return the heartbeat and command loops this process runs."""
        return [worker for worker in (self.heartbeater, self.commander) if worker is not None]


def run_generator(args: argparse.Namespace, session_ids: List[str]) -> None:
    """Create the publishers, heartbeat until told to quit."""
    own_ids = session_ids[args.first:args.first + args.count]
    generator = Generator(args.design, args.window, own_ids, args.command_rate)
    workers = generator.workers()
    threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
    emit('ready', sessions=len(own_ids))
    for thread in threads:
        thread.start()
    done = threading.Event()

    def quit_all() -> None:
        for worker in workers:
            worker.stopping.set()
        done.set()

    read_commands({'mark': generator.mark, 'stop': generator.stop_session}, quit_all)
    done.wait()
    for thread in threads:
        thread.join(timeout=10)
    rclpy.try_shutdown()


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse the role and its options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('role', choices=('receiver', 'generator'))
    parser.add_argument('--design', choices=DESIGNS, required=True)
    parser.add_argument('--window', type=float, required=True)
    parser.add_argument('--ids', required=True, help='file with one session id a line')
    parser.add_argument('--first', type=int, default=0)
    parser.add_argument('--count', type=int, default=0)
    parser.add_argument('--command-rate', type=float, default=0.0)
    parser.add_argument('--executor', choices=('single', 'events'), default='single')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one role until stdin says quit or ends."""
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops its children itself
    with open(args.ids, encoding='utf-8') as ids_file:
        session_ids = [line.strip() for line in ids_file if line.strip()]
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    if args.role == 'receiver':
        run_receiver(args, session_ids)
    else:
        run_generator(args, session_ids)
    return 0


if __name__ == '__main__':
    sys.exit(main())
