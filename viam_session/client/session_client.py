"""
A session with the robot, kept alive from a thread of the client's own.

    with SessionClient(client_name='teleop') as session:
        session.command('/left_motor', 0.5)
        ...

Each session has a heartbeat writer of its own (liveliness MANUAL_BY_TOPIC, lease = window,
on a topic with a random name). A plain thread asserts its liveliness 12.5 times per window
(`assertion_period_s`), so an application that blocks its own loop, or a busy executor,
does not starve it; DDS checks the lease on the robot below Python. When the robot reports
the session expired, ended or closed, refuses a command because the session is over, or stops
listening to its heartbeats, `on_lost(reason)` runs once and further commands raise
SessionLost. The reason says which: `expired: <the robot's reason>`, `ended ...`, `closed by
robot: <why>`, `the session manager ... is gone`.

The start reply gives the session's secret id (`session_id`: keep it to this client; it ends
and resumes the session) and its public handle (`handle`: what the robot's events, listings
and diagnostics show). Commands name the handle and carry an HMAC tag keyed by the secret and a
sequence (`sessions.command_auth`), so the shared command topic reveals nothing usable.

Refused commands. The robot answers a command it refuses (unknown resource, a value outside
what the actuator accepts, a session that is over) on its rejections topic, and answers
nothing to a command it takes. Each refusal of this session's commands goes to
`on_rejection(CommandRejected)` as it arrives, and the next `command()` or `claim()` raises it
(the first since the previous call; that call's own command is then not sent). With
`wait_s`, `command()` also waits that long for the refusal of its own command and raises it:
`command('/motor', 1.5, wait_s=0.2)` raises within a round trip. A refusal leaves the robot
as it was: the owner of the resource and what it does are unchanged.

The session is ended cleanly by `end()`, `close()`, the context manager, or at interpreter
exit. `end()` returns what the robot stopped (an EndResult, a list); if the session ended but
something it owned could not be stopped, `not_stopped` names it and a RuntimeWarning says so,
without raising: the session is over either way.
"""

import atexit
import math
import secrets
import threading
import time
from typing import Callable, Iterable, List, Optional, Tuple
import warnings

from rcl_interfaces.srv import GetParameters
import rclpy
from rclpy.context import Context
from rclpy.event_handler import PublisherEventCallbacks, QoSPublisherMatchedInfo
from rclpy.exceptions import InvalidHandle
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions

from viam_session.service_call import call_service
from viam_session.sessions.command_auth import CommandSigner
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.sessions.manager_node import EVENTS_QOS, SERVICES_QOS
from viam_session.sessions.table import over_reason
from viam_session.time_convert import duration_to_seconds, seconds_to_duration
from viam_session_interfaces.msg import Heartbeat, Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.srv import EndSession, StartSession

__all__ = ['CommandRejected', 'EndResult', 'HEARTBEATS_PER_WINDOW', 'MIN_ASSERTION_PERIOD_S',
           'SessionClient', 'SessionError', 'SessionLost', 'assertion_period_s']

# How many times per window the client asserts its writer's liveliness (Viam's SDKs: 5). The
# robot expires a session after a full window without an assertion, so a run of lost
# assertions spanning a window expires a healthy session. At 5 per window, 4 lost in a row
# leave a gap of exactly one window, which any jitter turns into an expiry: behind 30 % loss
# that is 0.3^4 per assertion, about 70 false expiries an hour at the 2 s window (and seen by
# bench/false_expiry.py and the partial-loss fault test). At 12.5 per window it takes 12 lost
# in a row (a gap of 1.04 windows; 11 leave 0.96): 0.3^12 per assertion, under 0.05 an hour at
# windows >= 0.5 s. Not a whole number on purpose. It costs 2.5 times the assertions.
HEARTBEATS_PER_WINDOW = 12.5
# ... but never more often than this: a Python thread on a loaded machine is late by more than
# 8 ms (12.5 per 100 ms window) often enough to lose the margin, and 100 sessions from one
# process would be 12,500 assertions a second. Windows under 250 ms get fewer per window
# (5 at the 100 ms window) and no promise behind a lossy link.
MIN_ASSERTION_PERIOD_S = 0.02
# Until the robot answers the start request, liveliness is asserted this often, so the robot
# sees the writer alive as soon as it has matched it.
EARLY_ASSERTION_PERIOD_S = 0.01
# When the robot stops listening to the heartbeats, its event usually says why within
# milliseconds; this long the client waits for it before reporting the loss itself.
UNMATCHED_GRACE_S = 0.5
# Refusals kept for the next command() call; the oldest are dropped past this (the callback
# sees every one).
MAX_PENDING_REFUSALS = 100


def assertion_period_s(window_s: float) -> float:
    """Return the period of a client's liveliness assertions for a window of `window_s`."""
    return max(window_s / HEARTBEATS_PER_WINDOW, MIN_ASSERTION_PERIOD_S)


class SessionError(RuntimeError):
    """The robot refused a session request, or did not answer in time."""


class SessionLost(SessionError):
    """The session is over (expired, ended, or closed by the robot); commands are refused."""


class CommandRejected(SessionError):
    """The robot refused a command of this session; nothing changed on the robot."""

    def __init__(self, reason: str, *, resource: str, value: float) -> None:
        super().__init__(f'the robot refused {resource} = {value!r}: {reason}')
        self.reason = reason
        self.resource = resource
        self.value = value


class EndResult(list):
    """
    The resources an ended session's end stopped (a list, as `end()` always returned).

    `not_stopped` names what the session owned and the robot could not stop (empty when all
    stopped), `message` is the robot's answer.
    """

    def __init__(self, stopped: Iterable[str], *, not_stopped: Iterable[str] = (),
                 message: str = '') -> None:
        super().__init__(stopped)
        self.not_stopped = list(not_stopped)
        self.message = message


class SessionClient:
    """One session with a robot's session manager, in a ROS context of its own."""

    def __init__(self, *, client_name: str, manager: str = '/session_manager',
                 window_s: float = 0.0, local: bool = False,
                 on_lost: Optional[Callable[[str], None]] = None,
                 on_heartbeat: Optional[Callable[[int, int], None]] = None,
                 on_rejection: Optional[Callable[[CommandRejected], None]] = None,
                 domain_id: Optional[int] = None) -> None:
        """
        Prepare a client; nothing is sent until `start()`.

        `window_s` 0 asks for the robot's default window; `local` is for a client running on
        the robot itself, whose session survives a loss of the robot's connectivity.
        `on_heartbeat(sequence, t_ns)` runs after each liveliness assertion, in the heartbeat
        thread; `t_ns` is CLOCK_MONOTONIC just before the assertion was made (read after it, it
        could be late by the thread's wait for the GIL: a stop measured from it looked early).
        `on_rejection(refusal)` for each refused command of this session, in the client's
        executor thread (see the module docstring).
        """
        if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not (
                math.isfinite(window_s) and window_s >= 0.0):
            raise ValueError(f'window_s must be a finite number >= 0, got {window_s!r}')
        if not client_name:
            raise ValueError('client_name must not be empty')
        self._client_name = client_name
        self._manager = manager
        self._requested_window_s = float(window_s)
        self._local = local
        self._on_lost = on_lost
        self._on_heartbeat = on_heartbeat
        self._rejection_callback = on_rejection
        self._lock = threading.Lock()
        self._refused = threading.Condition(self._lock)
        # Refusals not raised yet, each with its number (refusals counted since the start).
        self._refusals: List[Tuple[int, CommandRejected]] = []
        self._refusal_count = 0
        self.end_result: Optional[EndResult] = None
        self._session_id = ''
        self._handle = ''
        self._signer: Optional[CommandSigner] = None
        self._window_s = 0.0
        self._sequence = 0
        self._lost_reason: Optional[str] = None
        self._heartbeat_writer: Optional[Publisher] = None
        self._heartbeats_stopped = threading.Event()
        self._heartbeat_thread: Optional[threading.Thread] = None
        self._assertion_period_s = EARLY_ASSERTION_PERIOD_S

        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node(f'session_client_{secrets.token_hex(4)}', context=self._context,
                          enable_rosout=False, start_parameter_services=False)
        # As deep as the manager's services: with ROS's default (10), 118 of 200 clients that
        # started at once got no reply, though the manager had sent every one.
        self._start = self._node.create_client(StartSession, f'{manager}/start_session',
                                               qos_profile=SERVICES_QOS)
        self._end = self._node.create_client(EndSession, f'{manager}/end_session',
                                             qos_profile=SERVICES_QOS)
        self._parameters = self._node.create_client(GetParameters, f'{manager}/get_parameters')
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
        """Return the session's secret id: it ends and resumes the session; never publish it."""
        return self._session_id

    @property
    def handle(self) -> str:
        """Return the session's public handle, as the robot's events and listings name it."""
        return self._handle

    @property
    def window_s(self) -> float:
        return self._window_s

    @property
    def lost_reason(self) -> Optional[str]:
        """Why the session is over, or None while it is live (or not started)."""
        return self._lost_reason

    def start(self, *, resume_session_id: str = '', timeout_s: float = 10.0) -> str:
        """
        Open the session (or resume a live one of this client name); return its secret id.

        Resuming from another process: construct the client with the session's window and
        pass the secret id `start` returned there.
        """
        deadline = time.monotonic() + timeout_s
        if self._heartbeat_writer is not None:
            raise SessionError('start() was already called; use a new SessionClient')
        window_s = self._requested_window_s or self._default_window(timeout_s)
        # A command published before discovery has matched its subscriber is lost: let
        # discovery of the command topic finish first.
        self._wait_for_command_subscriber(deadline)
        topic = f'{self._manager}/heartbeat/{self._node.get_name()}_{secrets.token_hex(4)}'
        self._heartbeat_writer = self._node.create_publisher(
            Heartbeat, topic, heartbeat_qos(window_s),
            event_callbacks=PublisherEventCallbacks(matched=self._on_matched))
        self._start_heartbeats()
        request = StartSession.Request(
            client=self._client_name, client_node=self._node.get_fully_qualified_name(),
            heartbeat_topic=topic, resume_session_id=resume_session_id, local=self._local)
        request.requested_window = seconds_to_duration(self._requested_window_s)
        try:
            response = self._call(self._start, request, max(deadline - time.monotonic(), 0.1))
            if not response.success:
                raise SessionError(f'robot refused the session: {response.message}')
        except SessionError:
            self._stop_heartbeats()
            raise
        with self._lock:
            self._session_id = response.session_id
            self._handle = response.handle
            self._signer = CommandSigner(response.session_id, response.handle,
                                         response.command_sequence)
            self._window_s = duration_to_seconds(response.window)
            self._assertion_period_s = assertion_period_s(self._window_s)
        atexit.register(self.close)
        return self._session_id

    def command(self, resource: str, value: float, *, wait_s: float = 0.0) -> None:
        """
        Send `value` to the actuator `resource` (its fully qualified node name).

        Raises SessionLost once the session is over, and CommandRejected for a refusal of an
        earlier command that arrived since the previous call (this command is then not sent).
        With `wait_s` > 0, waits up to that long for the robot's refusal of this command and
        raises it; returning means none came in time (the robot does not confirm commands).
        """
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            # A bool is a number here: True is 1.0 (on), False 0.0, as an output takes them.
            raise ValueError(f'command value must be a finite number, got {value!r}')
        with self._lock:
            if self._lost_reason is not None:
                raise SessionLost(f'session is over: {self._lost_reason}')
            if not self._session_id:
                raise SessionError('no session: call start() first')
            if self._refusals:
                _, refusal = self._refusals[0]
                self._refusals.clear()
                raise refusal
            sequence, tag = self._signer.sign(resource, float(value))
            message = SessionCommand(handle=self._handle, resource=resource, value=float(value),
                                     sequence=sequence, tag=tag)
            sent_after = self._refusal_count
            # Under the lock: commands from two threads leave in sequence order, or the robot
            # would refuse the one overtaken as a replay.
            self._commands.publish(message)
        if wait_s > 0.0:
            self._raise_refusal_of(message, sent_after, time.monotonic() + wait_s)

    def _raise_refusal_of(self, message: SessionCommand, after: int, deadline: float) -> None:
        """Raise the refusal of `message` (numbered after `after`) if it comes in time."""
        with self._lock:
            while True:
                for index, (number, refusal) in enumerate(self._refusals):
                    if number > after and refusal.resource == message.resource and (
                            refusal.value == message.value):
                        del self._refusals[index]
                        raise refusal
                if self._lost_reason is not None:
                    raise SessionLost(f'session is over: {self._lost_reason}')
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._refused.wait(remaining)

    def claim(self, resource: str) -> None:
        """
        Own `resource` without a value of its own: `command(resource, 1.0)`.

        For a session gate this opens it (`command(gate, 0.0)` closes it again); for an
        external resource of the robot description (a lifecycle node, a stop service, a
        controller) it makes this session the owner, so the robot stops the resource when
        this session is over. Ownership is the latest commander's, as for any actuator.
        """
        self.command(resource, 1.0)

    def end(self, *, timeout_s: float = 10.0) -> EndResult:
        """
        End the session; the robot stops what it owned. Return what it stopped (EndResult).

        A session that ended with something the robot could not stop does not raise: that is
        in the result's `not_stopped` (also kept as `end_result`), and a RuntimeWarning says
        so. A refused end (the session unknown or over already) raises SessionError.
        """
        self._stop_heartbeats()
        with self._lock:
            session_id, self._session_id = self._session_id, ''
            if self._lost_reason is None:
                self._lost_reason = 'ended by this client'
            self._refused.notify_all()
        if not session_id:
            return EndResult([])
        response = self._call(self._end, EndSession.Request(session_id=session_id), timeout_s)
        if not response.success and not response.not_stopped:
            raise SessionError(f'robot refused to end the session: {response.message}')
        self.end_result = EndResult(response.stopped_resources,
                                    not_stopped=response.not_stopped, message=response.message)
        if response.not_stopped:
            warnings.warn(f'session {self._handle} ended, but the robot could not stop '
                          f'{list(response.not_stopped)}: {response.message}', RuntimeWarning,
                          stacklevel=2)
        return self.end_result

    def close(self) -> None:
        """End the session if it is live, then stop the client's threads and ROS context."""
        atexit.unregister(self.close)
        if not self._context.ok():
            return
        try:
            if self._session_id and self._lost_reason is None:
                self.end()
        except SessionError as error:
            # Over on the robot's side already (expired just before its event arrived here):
            # there is nothing left to end. Any other refusal is the caller's to see.
            if ' is over' not in str(error):
                raise
            self._lost_reason = str(error)
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

    # --- start ---------------------------------------------------------------------------------

    def _default_window(self, timeout_s: float) -> float:
        """Ask the session manager for its default window (its `default_window_s` parameter)."""
        response = self._call(self._parameters, GetParameters.Request(names=['default_window_s']),
                              timeout_s)
        if len(response.values) != 1 or response.values[0].double_value <= 0.0:
            raise SessionError(f'{self._manager} has no default_window_s parameter')
        return response.values[0].double_value

    def _wait_for_command_subscriber(self, deadline: float) -> None:
        while self._commands.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise SessionError(f'{self._manager} does not subscribe to commands')
            time.sleep(0.005)

    # --- heartbeats ----------------------------------------------------------------------------

    def _start_heartbeats(self) -> None:
        self._heartbeats_stopped.clear()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name='session_client_heartbeats', daemon=True)
        self._heartbeat_thread.start()

    def _heartbeat_loop(self) -> None:
        self._assert_liveliness()
        while not self._heartbeats_stopped.wait(self._assertion_period_s):
            self._assert_liveliness()

    def _assert_liveliness(self) -> None:
        with self._lock:
            if self._lost_reason is not None:
                return
            started = bool(self._session_id)
            if started:
                self._sequence += 1
            sequence = self._sequence
        before_ns = time.monotonic_ns()
        self._heartbeat_writer.assert_liveliness()
        if started and self._on_heartbeat is not None:
            self._on_heartbeat(sequence, before_ns)

    def _stop_heartbeats(self) -> None:
        self._heartbeats_stopped.set()
        thread = self._heartbeat_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    # --- news from the robot -------------------------------------------------------------------

    def _on_event(self, event: SessionEvent) -> None:
        states = {SessionEvent.EXPIRED: 'expired', SessionEvent.ENDED: 'ended',
                  SessionEvent.CLOSED_BY_ROBOT: 'closed by robot'}
        if not self._session_id or event.handle != self._handle or event.state not in states:
            return      # this client's own end: _session_id was cleared before the request
        self._lose(_stated(states[event.state], event.reason))

    def _on_rejection(self, rejection: Rejection) -> None:
        handle = self._handle
        if not self._session_id or rejection.handle != handle:
            return
        if rejection.subject == 'heartbeat':
            self._lose(f'heartbeat refused: {rejection.reason}')
            return
        if rejection.subject != 'command':
            return
        refusal = CommandRejected(rejection.reason, resource=rejection.resource,
                                  value=rejection.value)
        with self._lock:
            self._refusal_count += 1
            self._refusals.append((self._refusal_count, refusal))
            del self._refusals[:-MAX_PENDING_REFUSALS]
            self._refused.notify_all()
        over = over_reason(rejection.reason, handle)
        if over is not None:
            self._lose(over)
        if self._rejection_callback is not None:
            self._rejection_callback(refusal)

    def _on_matched(self, info: QoSPublisherMatchedInfo) -> None:
        if info.current_count == 0 and info.current_count_change < 0 and self._session_id:
            timer = threading.Timer(UNMATCHED_GRACE_S, self._lose_unheard)
            timer.daemon = True
            timer.start()

    def _lose_unheard(self) -> None:
        """Report the loss when the robot stopped listening: say whether its manager left."""
        with self._lock:
            if self._lost_reason is not None or not self._session_id:
                return      # told already, or ended
        namespace, _, name = self._manager.rpartition('/')
        try:
            present = (name, namespace or '/') in self._node.get_node_names_and_namespaces()
        except InvalidHandle:
            return          # this client was closed meanwhile
        self._lose("the robot stopped listening to this session's heartbeats" if present else
                   f'the session manager {self._manager} is gone (it left the ROS graph)')

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self._lost_reason is not None or not self._session_id:
                return
            self._lost_reason = reason
            self._refused.notify_all()
        self._stop_heartbeats()
        if self._on_lost is not None:
            self._on_lost(reason)

    @staticmethod
    def _call(client, request, timeout_s: float):
        try:
            return call_service(client, request, timeout_s)
        except TimeoutError as error:
            raise SessionError(str(error)) from error


def _stated(state: str, reason: str) -> str:
    """Return `state: reason`, once: the robot's reason may name the state already."""
    return reason if reason.startswith(state) else f'{state}: {reason}'
