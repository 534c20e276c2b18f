"""
A session with the robot, kept alive by heartbeats from the client's own executor thread.

    with SessionClient(client_name='teleop') as session:
        session.command('/left_motor', 0.5)
        ...

Heartbeats go out at a fifth of the window from a thread of their own (not an executor timer),
so an application that blocks its own loop, or a busy executor, does not starve them. When the
robot reports the session expired or closed, or refuses a heartbeat, `on_lost(reason)` runs
once and further commands raise SessionLost.
"""

import secrets
import threading
import time
from typing import Callable, Optional

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from viam_session.service_call import call_service
from viam_session.sessions.manager_node import EVENTS_QOS, HEARTBEAT_QOS
from viam_session.time_convert import duration_to_seconds, seconds_to_duration
from viam_session_interfaces.msg import Heartbeat, Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.srv import EndSession, StartSession

__all__ = ['HEARTBEATS_PER_WINDOW', 'SessionClient', 'SessionError', 'SessionLost']

HEARTBEATS_PER_WINDOW = 5


class SessionError(RuntimeError):
    """The robot refused a session request, or did not answer in time."""


class SessionLost(SessionError):
    """The session is over (expired, ended, or closed by the robot); commands are refused."""


class SessionClient:
    """One session with a robot's session manager, in a ROS context of its own."""

    def __init__(self, *, client_name: str, manager: str = '/session_manager',
                 window_s: float = 0.0,
                 on_lost: Optional[Callable[[str], None]] = None,
                 on_heartbeat: Optional[Callable[[int], None]] = None,
                 domain_id: Optional[int] = None) -> None:
        self._client_name = client_name
        self._requested_window_s = window_s
        self._on_lost = on_lost
        self._on_heartbeat = on_heartbeat
        self._lock = threading.Lock()
        self._session_id = ''
        self._window_s = 0.0
        self._sequence = 0
        self._lost_reason: Optional[str] = None
        self._heartbeats_stopped = threading.Event()
        self._heartbeat_thread: Optional[threading.Thread] = None

        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node(f'session_client_{secrets.token_hex(4)}', context=self._context,
                          enable_rosout=False, start_parameter_services=False)
        self._start = self._node.create_client(StartSession, f'{manager}/start_session')
        self._end = self._node.create_client(EndSession, f'{manager}/end_session')
        self._heartbeats = self._node.create_publisher(
            Heartbeat, f'{manager}/heartbeat', HEARTBEAT_QOS)
        self._commands = self._node.create_publisher(SessionCommand, f'{manager}/command', 10)
        self._node.create_subscription(SessionEvent, f'{manager}/events', self._on_event,
                                       EVENTS_QOS)
        self._node.create_subscription(Rejection, f'{manager}/rejections', self._on_rejection, 10)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(
            target=self._executor.spin, name='session_client_executor', daemon=True)
        self._spinner.start()

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def window_s(self) -> float:
        return self._window_s

    @property
    def lost_reason(self) -> Optional[str]:
        """Why the session is over, or None while it is live (or not started)."""
        return self._lost_reason

    def start(self, *, timeout_s: float = 10.0) -> str:
        """Open the session and start heartbeats; return the session id."""
        # A message published before discovery has matched its subscriber is lost: let
        # discovery of the heartbeat and command topics finish first.
        self._wait_for_subscribers(time.monotonic() + timeout_s)
        request = StartSession.Request(
            client=self._client_name, client_node=self._node.get_fully_qualified_name())
        request.requested_window = seconds_to_duration(self._requested_window_s)
        response = self._call(self._start, request, timeout_s)
        if not response.success:
            raise SessionError(f'robot refused the session: {response.message}')
        with self._lock:
            self._session_id = response.session_id
            self._window_s = duration_to_seconds(response.window)
            self._lost_reason = None
            self._sequence = 0
        self._heartbeats_stopped.clear()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name='session_client_heartbeats', daemon=True)
        self._heartbeat_thread.start()
        return self._session_id

    def command(self, resource: str, value: float) -> None:
        """Send `value` to the actuator `resource` (its fully qualified node name)."""
        with self._lock:
            if self._lost_reason is not None:
                raise SessionLost(f'session is over: {self._lost_reason}')
            if not self._session_id:
                raise SessionError('no session: call start() first')
            message = SessionCommand(session_id=self._session_id, resource=resource,
                                     value=float(value))
        self._commands.publish(message)

    def end(self, *, timeout_s: float = 10.0) -> list:
        """End the session; the robot stops what it owned. Return the stopped actuators."""
        self._stop_heartbeats()
        with self._lock:
            session_id, self._session_id = self._session_id, ''
            if self._lost_reason is None:
                self._lost_reason = 'ended by this client'
        if not session_id:
            return []
        response = self._call(self._end, EndSession.Request(session_id=session_id), timeout_s)
        if not response.success:
            raise SessionError(f'robot refused to end the session: {response.message}')
        return list(response.stopped_resources)

    def close(self) -> None:
        """End the session if it is live, then stop the client's thread and ROS context."""
        try:
            if self._session_id and self._lost_reason is None:
                self.end()
        finally:
            self._stop_heartbeats()
            self._executor.shutdown(timeout_sec=2.0)
            self._spinner.join(timeout=2.0)
            self._node.destroy_node()
            rclpy.try_shutdown(context=self._context)

    def __enter__(self) -> 'SessionClient':
        if not self._session_id:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _wait_for_subscribers(self, deadline: float) -> None:
        publishers = (self._heartbeats, self._commands)
        while any(publisher.get_subscription_count() == 0 for publisher in publishers):
            if time.monotonic() > deadline:
                raise SessionError('the robot does not subscribe to heartbeats and commands')
            time.sleep(0.005)

    def _heartbeat_loop(self) -> None:
        period_s = self._window_s / HEARTBEATS_PER_WINDOW
        self._send_heartbeat()
        while not self._heartbeats_stopped.wait(period_s):
            self._send_heartbeat()

    def _send_heartbeat(self) -> None:
        with self._lock:
            if not self._session_id or self._lost_reason is not None:
                return
            self._sequence += 1
            message = Heartbeat(session_id=self._session_id, sequence=self._sequence)
        message.sent = self._node.get_clock().now().to_msg()
        self._heartbeats.publish(message)
        if self._on_heartbeat is not None:
            self._on_heartbeat(message.sequence)

    def _stop_heartbeats(self) -> None:
        self._heartbeats_stopped.set()
        thread = self._heartbeat_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _on_event(self, event: SessionEvent) -> None:
        if event.session_id != self._session_id or event.state not in (
                SessionEvent.EXPIRED, SessionEvent.CLOSED_BY_ROBOT):
            return
        state = 'expired' if event.state == SessionEvent.EXPIRED else 'closed by robot'
        self._lose(f'{state}: {event.reason}')

    def _on_rejection(self, rejection: Rejection) -> None:
        if rejection.session_id == self._session_id and rejection.subject == 'heartbeat':
            self._lose(f'heartbeat refused: {rejection.reason}')

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self._lost_reason is not None:
                return
            self._lost_reason = reason
        self._stop_heartbeats()
        if self._on_lost is not None:
            self._on_lost(reason)

    @staticmethod
    def _call(client, request, timeout_s: float):
        try:
            return call_service(client, request, timeout_s)
        except TimeoutError as error:
            raise SessionError(str(error)) from error
