"""
Many sessions from one client process, for benchmarks across a faulty link.

`python -m viam_session_harness.netfault.session_fleet` runs (in a client namespace) one ROS
node that holds N sessions with the session manager: one heartbeat writer per session, on a
topic of its own with the heartbeat QoS of the client library, and one plain thread that
asserts every writer's liveliness at the client library's rate (`assertion_period_s(window)`),
the writers' assertions spread evenly over the period. A hundred `SessionClient`s would be a
hundred DDS participants; this is what they send, at the cost of one.

It reads commands on stdin, one per line, and prints one JSON line for each (with a
CLOCK_MONOTONIC `t_ns`, shared by every namespace of the machine):

    start N WINDOWS M   ->  started {handles}        (old writers destroyed; N new sessions, or
                                                     none and an `error` if one is refused or
                                                     not answered in time;
                                                     actuator j, /motor<j> for j < M, commanded
                                                     at 0.5 by session j mod N; WINDOWS
                                                     is one window in seconds or a comma
                                                     list: session i gets window i mod its
                                                     length)
    command             ->  commanded               (the actuators' commands again: a command
                                                     can be lost while discovery settles)
    writers             ->  writers {writers}       (each session's writer GUID, as below)
    gaps                ->  gaps {longest_ms}       (per session, the longest time between two
                                                     of its assertions so far, in ms: a
                                                     starved client shows here)
    hold                ->  held {last_ns, writers} (no assertion from now on; last_ns[i] is
                                                     when session i's last assertion returned,
                                                     writers[i] its writer's GUID in hex, as
                                                     the impairment forwarder names writers)
    resume              ->  (no answer)             (assertions go on, as a client keeps trying)

It exits when stdin closes.
"""

import heapq
import itertools
import json
import secrets
import sys
import threading
import time
from typing import List, Optional, Sequence, Tuple

import rclpy
from rclpy.context import Context
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions

from viam_session.client.session_client import assertion_period_s
from viam_session.service_call import call_service
from viam_session.sessions.command_auth import CommandSigner
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.time_convert import seconds_to_duration
from viam_session_interfaces.msg import Heartbeat, SessionCommand
from viam_session_interfaces.srv import StartSession

__all__ = ['SessionFleet', 'actuator_name', 'main', 'owner_of']

MANAGER = '/session_manager'
POWER = 0.5
TIMEOUT_S = 60.0


def actuator_name(index: int) -> str:
    """Return the node name of actuator `index` (`/motor<index>`)."""
    return f'/motor{index}'


def owner_of(actuator: int, sessions: int) -> int:
    """Return the index of the session that drives actuator `actuator`: actuator mod sessions."""
    return actuator % sessions


class SessionFleet:
    """N sessions on one node, in a ROS context of its own; one thread asserts them all."""

    def __init__(self) -> None:
        self._context = Context()
        rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node(f'session_fleet_{secrets.token_hex(3)}', context=self._context,
                          enable_rosout=False, start_parameter_services=False)
        self._commands = self._node.create_publisher(SessionCommand, f'{MANAGER}/command', 10)
        self._start = self._node.create_client(StartSession, f'{MANAGER}/start_session')
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        threading.Thread(target=self._executor.spin, daemon=True).start()
        self._lock = threading.Lock()
        self._writers: List[Publisher] = []
        self._last_ns: List[int] = []
        self._longest_gap_ns: List[int] = []
        self._heap: List[Tuple[int, int, int]] = []  # (due ns, generation, writer index)
        self._generation = itertools.count()
        self._current = -1
        self._periods_ns: List[int] = []
        self._holding = False
        self._signers: List[CommandSigner] = []
        self._actuators = 0
        self._wake = threading.Event()
        threading.Thread(target=self._assert_loop, daemon=True).start()

    def start(self, sessions: int, windows: Sequence[float], actuators: int) -> List[str]:
        """
        Replace the sessions by `sessions` new ones; command the actuators; return the ids.

        Session i has window `windows[i % len(windows)]`.
        """
        with self._lock:
            old, self._writers = self._writers, []
            self._heap.clear()
            self._current = next(self._generation)
            self._holding = False
        for writer in old:
            self._node.destroy_publisher(writer)
        deadline = time.monotonic() + TIMEOUT_S
        while self._commands.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f'{MANAGER} does not subscribe to commands')
            time.sleep(0.005)
        session_windows = [windows[index % len(windows)] for index in range(sessions)]
        periods_ns = [int(assertion_period_s(window_s) * 1e9) for window_s in session_windows]
        topics = [f'{MANAGER}/heartbeat/{self._node.get_name()}_{secrets.token_hex(4)}'
                  for _ in range(sessions)]
        writers = [self._node.create_publisher(
            Heartbeat, topic, heartbeat_qos(window_s),
            event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))
            for topic, window_s in zip(topics, session_windows)]
        with self._lock:
            self._writers, self._periods_ns = writers, periods_ns
            self._last_ns = [0] * sessions
            self._longest_gap_ns = [0] * sessions
            base = time.monotonic_ns()
            for index in range(sessions):
                heapq.heappush(self._heap, (base + periods_ns[index] * index // sessions,
                                            self._current, index))
        self._wake.set()
        handles, signers = [], []
        for index, topic in enumerate(topics):
            request = StartSession.Request(
                client=f'fleet_{index}', client_node=self._node.get_fully_qualified_name(),
                heartbeat_topic=topic)
            request.requested_window = seconds_to_duration(session_windows[index])
            response = call_service(self._start, request, max(deadline - time.monotonic(), 0.1))
            if not response.success:
                raise RuntimeError(f'session {index} refused: {response.message}')
            handles.append(response.handle)
            signers.append(CommandSigner(response.session_id, response.handle,
                                         response.command_sequence))
        self._signers, self._actuators = signers, actuators
        self.command()
        return handles

    def command(self) -> None:
        """Command actuator j of the current set at POWER from session j mod N."""
        for actuator in range(self._actuators):
            signer = self._signers[owner_of(actuator, len(self._signers))]
            sequence, tag = signer.sign(actuator_name(actuator), POWER)
            self._commands.publish(SessionCommand(
                handle=signer.handle, resource=actuator_name(actuator), value=POWER,
                sequence=sequence, tag=tag))

    def hold(self) -> List[int]:
        """Stop asserting; return when each writer's last assertion returned (monotonic ns)."""
        with self._lock:
            self._holding = True
            return list(self._last_ns)

    def longest_gaps_ms(self) -> List[float]:
        """Return, per session, the longest time between two of its assertions so far (ms)."""
        with self._lock:
            return [round(gap * 1e-6, 1) for gap in self._longest_gap_ns]

    def writer_guids(self) -> List[str]:
        """Return each session's heartbeat writer GUID (hex), read from the ROS graph."""
        guids = []
        for writer in self._writers:
            (info,) = self._node.get_publishers_info_by_topic(writer.topic_name)
            guids.append(bytes(info.endpoint_gid)[:16].hex())
        return guids

    def resume(self) -> None:
        """Assert again, every writer from now on."""
        with self._lock:
            self._holding = False
            base = time.monotonic_ns()
            self._heap = [(base, generation, index) for _, generation, index in self._heap]
            heapq.heapify(self._heap)
        self._wake.set()

    def _assert_loop(self) -> None:
        while True:
            with self._lock:
                next_due = None if self._holding else self._assert_due()
            timeout = None if next_due is None else max((next_due - time.monotonic_ns()) * 1e-9,
                                                        0.001)
            self._wake.wait(timeout)
            self._wake.clear()

    def _assert_due(self) -> Optional[int]:
        """Assert every writer that is due (lock held); return the next due instant."""
        now = time.monotonic_ns()
        while self._heap and self._heap[0][0] <= now:
            due, generation, index = heapq.heappop(self._heap)
            if generation != self._current:
                continue
            self._writers[index].assert_liveliness()
            now = time.monotonic_ns()
            if self._last_ns[index]:
                self._longest_gap_ns[index] = max(self._longest_gap_ns[index],
                                                  now - self._last_ns[index])
            self._last_ns[index] = now
            # More than a period behind: go on from now rather than catch up in a burst.
            heapq.heappush(self._heap, (max(due + self._periods_ns[index], now), generation,
                                        index))
        return self._heap[0][0] if self._heap else None


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({'event': event, 't_ns': time.monotonic_ns(), **fields}), flush=True)


def main() -> None:
    """Hold sessions as the commands on stdin say (module docstring)."""
    fleet = SessionFleet()
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ['start']:
            try:
                ids = fleet.start(int(words[1]), [float(w) for w in words[2].split(',')],
                                  int(words[3]))
            except (RuntimeError, TimeoutError) as error:
                _emit('started', handles=[], error=str(error))
            else:
                _emit('started', handles=ids)
        elif words == ['command']:
            fleet.command()
            _emit('commanded')
        elif words == ['writers']:
            _emit('writers', writers=fleet.writer_guids())
        elif words == ['gaps']:
            _emit('gaps', longest_ms=fleet.longest_gaps_ms())
        elif words == ['hold']:
            _emit('held', last_ns=fleet.hold(), writers=fleet.writer_guids())
        elif words == ['resume']:
            fleet.resume()


if __name__ == '__main__':
    main()
