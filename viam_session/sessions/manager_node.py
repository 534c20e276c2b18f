"""
The session manager node: wraps SessionTable with ROS services, topics and an expiry timer.

Interface (all under the node's name, default /session_manager):
- services `~/start_session`, `~/end_session`, `~/list_sessions`;
- topic `~/heartbeat` (Heartbeat) from clients;
- topic `~/command` (SessionCommand): session-tagged commands, relayed to the actuator's own
  `<actuator>/command` topic after the session is checked and made the actuator's owner;
- topics `~/events` (SessionEvent, transient-local) and `~/rejections` (Rejection).

On expiry (no heartbeat for a full window) or end, every actuator the session owns is
deactivated through its lifecycle `change_state` service, all at once. The expiry timer is
armed for the earliest deadline of any session, so no polling adds latency.
"""

import math
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future

from viam_session.node_runner import run_node
from viam_session.parameters import declare_float, declare_int, declare_string_array
from viam_session.sessions.actuator_links import ActuatorLink
from viam_session.sessions.table import (
    Session, SessionError, SessionLimits, SessionTable)
from viam_session.time_convert import (
    duration_to_seconds, monotonic_to_ros_time, seconds_to_duration)
from viam_session_interfaces.msg import Heartbeat, Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.msg import SessionInfo
from viam_session_interfaces.srv import EndSession, ListSessions, StartSession

__all__ = ['EVENTS_QOS', 'HEARTBEAT_QOS', 'SessionManager', 'main']

# Heartbeats are periodic and only the newest matters: best effort, so one lost before
# discovery completes cannot hold the next ones back (reliable delivery is in order, and a
# lost first sample waits for the writer's repair cycle, seconds in Fast DDS).
HEARTBEAT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
EVENTS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
# How often a start request looks again for the client's publishers in the ROS graph.
DISCOVERY_POLL_S = 0.01
# The timer never waits less than this, so a deadline a hair away does not spin the loop.
MIN_TIMER_DELAY_S = 0.0001


class SessionManager(Node):
    """Sessions, their deadlines, and the actuators they own."""

    def __init__(self, node_name: str = 'session_manager', **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        limits = SessionLimits(
            default_window_s=declare_float(
                self, 'default_window_s', 2.0, 'Heartbeat window of a session that asks for none.',
                low=0.001, high=3600.0),
            min_window_s=declare_float(self, 'min_window_s', 0.03,
                                       'Shortest window a client may ask for.',
                                       low=0.001, high=3600.0),
            max_window_s=declare_float(self, 'max_window_s', 60.0,
                                       'Longest window a client may ask for.',
                                       low=0.001, high=3600.0),
            max_sessions=declare_int(self, 'max_sessions', 1024, 'Most sessions at once.',
                                     low=1, high=65536))
        self._discovery_timeout_s = declare_float(
            self, 'discovery_timeout_s', 5.0,
            "How long a start request waits to discover the client's publishers.",
            low=0.1, high=60.0)
        self._stop_timeout_s = declare_float(
            self, 'stop_timeout_s', 1.0, 'How long to wait for an actuator to confirm a stop.',
            low=0.01, high=60.0)
        actuators = declare_string_array(
            self, 'actuators', 'Fully qualified node names of the actuator drivers to manage.')
        bad = [name for name in actuators if not name.startswith('/')]
        if bad:
            raise ValueError(f'actuators must be fully qualified node names (start with /): {bad}')
        self._table = SessionTable(clock=time.monotonic, limits=limits)
        # Start and end await discovery and lifecycle replies; in a group of their own they
        # never hold back heartbeats, commands or the expiry timer while they wait.
        self._stop_replies = ReentrantCallbackGroup()
        self._links = {name: ActuatorLink(self, name, self._stop_replies) for name in actuators}

        self._events = self.create_publisher(SessionEvent, '~/events', EVENTS_QOS)
        self._rejections = self.create_publisher(Rejection, '~/rejections', 10)
        self.create_service(StartSession, '~/start_session', self._on_start,
                            callback_group=self._stop_replies)
        self.create_service(EndSession, '~/end_session', self._on_end,
                            callback_group=self._stop_replies)
        self.create_service(ListSessions, '~/list_sessions', self._on_list)
        heartbeats = self.create_subscription(
            Heartbeat, '~/heartbeat', self._on_heartbeat, HEARTBEAT_QOS)
        commands = self.create_subscription(SessionCommand, '~/command', self._on_command, 100)
        self._client_topics = (heartbeats.topic_name, commands.topic_name)

        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._expiry_timer = self.create_timer(
            3600.0, self._on_expiry_timer, clock=self._steady_clock, autostart=False)
        self._expiry_armed_for: Optional[float] = None
        self.get_logger().info(
            f'managing {len(self._links)} actuator(s) {sorted(self._links)}; window '
            f'{limits.default_window_s} s (bounds [{limits.min_window_s}, '
            f'{limits.max_window_s}] s), at most {limits.max_sessions} sessions')

    # --- services ------------------------------------------------------------------------------

    async def _on_start(self, request: StartSession.Request,
                        response: StartSession.Response) -> StartSession.Response:
        client = request.client or 'unnamed client'
        if request.client_node and not await self._discovered(request.client_node):
            response.success = False
            response.message = (
                f'the robot did not discover the heartbeat and command publishers of '
                f'{request.client_node} within {self._discovery_timeout_s} s')
            self.get_logger().warning(f'start refused for {client}: {response.message}')
            return response
        try:
            session = self._table.start(
                client, duration_to_seconds(request.requested_window), request.resume_session_id)
        except SessionError as error:
            response.success, response.message = False, str(error)
            self.get_logger().warning(f'start refused for {client}: {error}')
            return response
        resumed = bool(request.resume_session_id)
        response.success = True
        response.message = 'resumed' if resumed else 'started'
        response.session_id = session.session_id
        response.window = seconds_to_duration(session.window_s)
        self._publish_event(session, SessionEvent.STARTED, response.message, sorted(session.owned))
        self.get_logger().info(
            f'session {session.session_id} {response.message} for {client}, '
            f'window {session.window_s} s')
        self._arm_expiry_timer()
        return response

    async def _on_end(self, request: EndSession.Request,
                      response: EndSession.Response) -> EndSession.Response:
        try:
            stopped = self._table.end(request.session_id)
        except SessionError as error:
            response.success, response.message = False, str(error)
            return response
        failed = await self._stop_and_wait(stopped.owned)
        self._publish_event(stopped.session, SessionEvent.ENDED, stopped.reason, stopped.owned)
        response.stopped_resources = [name for name in stopped.owned if name not in failed]
        response.success = not failed
        response.message = 'ended' if not failed else f'ended; could not stop {failed}'
        self.get_logger().info(f'session {request.session_id} ended, stopped {stopped.owned}')
        return response

    def _on_list(self, request: ListSessions.Request,
                 response: ListSessions.Response) -> ListSessions.Response:
        response.sessions = [
            SessionInfo(session_id=s.session_id, client=s.client,
                        window=seconds_to_duration(s.window_s),
                        last_heartbeat=monotonic_to_ros_time(s.last_heartbeat),
                        owned_resources=sorted(s.owned))
            for s in self._table.live()]
        return response

    # --- topics --------------------------------------------------------------------------------

    def _on_heartbeat(self, message: Heartbeat) -> None:
        try:
            self._table.heartbeat(message.session_id)
        except SessionError as error:
            self._reject(message.session_id, 'heartbeat', str(error))

    def _on_command(self, message: SessionCommand) -> None:
        link = self._links.get(message.resource)
        if link is None:
            self._reject(message.session_id, 'command',
                         f'unknown actuator {message.resource!r}; managed: {sorted(self._links)}')
            return
        if not math.isfinite(message.value):
            self._reject(message.session_id, 'command',
                         f'value must be finite, got {message.value}')
            return
        try:
            previous = self._table.claim(message.session_id, message.resource)
        except SessionError as error:
            self._reject(message.session_id, 'command', str(error))
            return
        if previous is not None:
            self.get_logger().info(
                f'{message.resource} taken over by session {message.session_id} from {previous}')
        if link.stopped_by_manager:
            self._reactivate_then_send(link, message.value)
        else:
            link.send(message.value)

    # --- expiry --------------------------------------------------------------------------------

    def _arm_expiry_timer(self) -> None:
        """Arm the timer for the earliest deadline, unless it is armed for an earlier one."""
        deadline = self._table.next_deadline()
        if deadline is None:
            self._expiry_timer.cancel()
            self._expiry_armed_for = None
            return
        armed_for = self._expiry_armed_for
        timer_armed = armed_for is not None and not self._expiry_timer.is_canceled()
        if timer_armed and armed_for <= deadline:
            return
        delay = max(deadline - time.monotonic(), MIN_TIMER_DELAY_S)
        self._expiry_timer.timer_period_ns = int(delay * 1e9)
        self._expiry_timer.reset()
        self._expiry_armed_for = deadline

    def _on_expiry_timer(self) -> None:
        self._expiry_timer.cancel()
        self._expiry_armed_for = None
        for stopped in self._table.expire_due():
            self._stop(stopped.owned)
            self._publish_event(
                stopped.session, SessionEvent.EXPIRED, stopped.reason, stopped.owned)
            self.get_logger().warning(
                f'session {stopped.session.session_id} of {stopped.session.client} expired '
                f'({stopped.session.window_s} s without a heartbeat); stopping {stopped.owned}')
        self._arm_expiry_timer()

    # --- stopping actuators --------------------------------------------------------------------

    def _stop(self, names: Iterable[str]) -> Dict[str, Future]:
        """Ask every named actuator to deactivate at once; return the pending requests by name."""
        futures = {}
        for name in names:
            link = self._links[name]
            link.stopped_by_manager = True
            future = link.deactivate()
            if future is None:
                self.get_logger().error(f'cannot stop {name}: its lifecycle service is not up')
                continue
            future.add_done_callback(
                lambda done, name=name: self._log_stop_result(name, done))
            futures[name] = future
        return futures

    def _log_stop_result(self, name: str, done: Future) -> None:
        result = done.result()
        if result is None or not result.success:
            self.get_logger().warning(f'{name} refused to deactivate (was it already inactive?)')

    async def _discovered(self, client_node: str) -> bool:
        """Wait (bounded) until this node knows the client's heartbeat and command writers."""
        def seen() -> bool:
            return all(
                any(f'{info.node_namespace.rstrip("/")}/{info.node_name}' == client_node
                    for info in self.get_publishers_info_by_topic(topic))
                for topic in self._client_topics)

        if seen():
            return True
        found = Future()
        poller = self.create_timer(
            DISCOVERY_POLL_S, lambda: found.done() or not seen() or found.set_result(True),
            clock=self._steady_clock, callback_group=self._stop_replies)
        try:
            return await self._bounded(found, self._discovery_timeout_s)
        finally:
            poller.cancel()
            self.destroy_timer(poller)

    async def _stop_and_wait(self, names: List[str]) -> List[str]:
        """Stop the actuators and wait (bounded) for them; return the names not confirmed."""
        futures = self._stop(names)
        all_done = Future()

        def check(_: object = None) -> None:
            if not all_done.done() and all(f.done() for f in futures.values()):
                all_done.set_result(True)

        for future in futures.values():
            future.add_done_callback(check)
        check()
        await self._bounded(all_done, self._stop_timeout_s)
        return [name for name in names
                if name not in futures or not futures[name].done()
                or not futures[name].result().success]

    async def _bounded(self, done: Future, timeout_s: float) -> bool:
        """Await `done` (which callbacks set to True); False once `timeout_s` has passed."""
        timeout = self.create_timer(
            timeout_s, lambda: done.done() or done.set_result(False),
            clock=self._steady_clock, callback_group=self._stop_replies)
        try:
            return await done
        finally:
            timeout.cancel()
            self.destroy_timer(timeout)

    def _reactivate_then_send(self, link: ActuatorLink, value: float) -> None:
        """Reactivate an actuator this manager stopped, then relay the live session's command."""
        link.pending_value = value
        if link.activating:
            return
        future = link.activate()
        if future is None:
            self.get_logger().error(f'cannot reactivate {link.name}: lifecycle service not up')
            return
        link.activating = True

        def on_activated(done: Future) -> None:
            link.activating = False
            if done.result() is not None and done.result().success:
                link.stopped_by_manager = False
                owner = self._table.owner_of(link.name)
                if owner is not None:
                    link.send(link.pending_value)

        future.add_done_callback(on_activated)

    def close_all_sessions(self, reason: str) -> None:
        """
        Stop every session's actuators and tell clients `closed by robot` (on shutdown).

        Called from outside the executor thread while it still spins; waits (bounded) for the
        actuators to confirm.
        """
        pending = []
        for session in self._table.live():
            owned = sorted(session.owned)
            pending += self._stop(owned).values()
            self._publish_event(session, SessionEvent.CLOSED_BY_ROBOT, reason, owned)
        confirmed = threading.Semaphore(0)
        for future in pending:
            future.add_done_callback(lambda _: confirmed.release())
        deadline = time.monotonic() + self._stop_timeout_s
        for _ in pending:
            if not confirmed.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                self.get_logger().error('not every actuator confirmed its stop on shutdown')
                break

    # --- helpers -------------------------------------------------------------------------------

    def _publish_event(self, session: Session, state: int, reason: str, owned: List[str]) -> None:
        event = SessionEvent(session_id=session.session_id, client=session.client, state=state,
                             reason=reason, owned_resources=owned)
        event.last_heartbeat = monotonic_to_ros_time(session.last_heartbeat)
        event.stamp = self.get_clock().now().to_msg()
        self._events.publish(event)

    def _reject(self, session_id: str, subject: str, reason: str) -> None:
        self.get_logger().warning(f'{subject} rejected: {reason}', throttle_duration_sec=1.0)
        rejection = Rejection(session_id=session_id, subject=subject, reason=reason)
        rejection.stamp = self.get_clock().now().to_msg()
        self._rejections.publish(rejection)


def main(args: Optional[List[str]] = None) -> int:
    """Run the session manager; on SIGINT/SIGTERM it closes every session, stopping actuators."""
    return run_node(SessionManager, args=args,
                    before_shutdown=lambda node: node.close_all_sessions('robot shutting down'))


if __name__ == '__main__':
    sys.exit(main())
