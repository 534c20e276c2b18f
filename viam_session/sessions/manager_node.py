"""
The session manager node: wraps SessionTable with ROS services, topics and an expiry timer.

Interface (all under the node's name, default /session_manager):
- services `~/start_session`, `~/end_session`, `~/list_sessions`, `~/stop_session_resources`,
  and `~/close_all_sessions` (std_srvs/Trigger, for the supervisor's ordered shutdown);
- one heartbeat topic per session, named by its client in the start request, watched for DDS
  liveliness by a HeartbeatWatch (see heartbeat_watch.py for why);
- topic `~/command` (SessionCommand): commands naming their session by its public handle and
  authenticated by an HMAC tag keyed by its secret id, with a sequence that must increase
  (`command_auth`), relayed to the actuator's own `<actuator>/command` topic after the session
  and the value are checked (the value against what the actuator accepts, `actuator_ranges`)
  and the session is made the actuator's owner; a refused command changes no owner and
  relays nothing;
- topics `~/events` (SessionEvent, transient-local) and `~/rejections` (Rejection), and a
  status on `/diagnostics` every second (sessions, their age and what they own);
- topic `~/connected` (std_msgs/Bool, transient-local): whether the robot has connectivity
  (always true without a connectivity watch), for the supervisor's connectivity_loss_policy.

Only the start reply carries a session's secret id; events, listings, rejections, diagnostics
and logs (which /rosout publishes) name sessions by their handle. A rejection names a session
only for a command proven to be its own, so a forger cannot make a client see refusals.
A heartbeat topic must have one writer: DDS liveliness counts writers without saying which one
is alive, so a second writer (alive, or merely in the graph) could keep a gone client's session
alive; the manager closes such a session at once (`closed by robot`), which stops what it owns.

Resources come from the `actuators` parameter and, optionally, from a robot description
(`robot_description`, the supervisor's YAML): its dc_motor, servo, gpio_output and
session_gate nodes are actuators too, and its external resources (`resources:` of each part:
lifecycle nodes, Trigger and SetBool stop services, ros2_control controllers; see
`external_resources`) can be *claimed*: a SessionCommand to an external resource's fully
qualified name (any finite value) makes the session its owner and is relayed nowhere; a
`lifecycle_node` resource only while it is active (an inactive one cannot act: refused).
Ownership is the same for both: the latest commander owns. A resource with `stop_with` in the
description is stopped whenever the manager stops one of those, claimed or not (a brake
engaged whenever the base's gate is stopped; `described_resources.StoppedWith`).

A session must hear from its heartbeat writer within one window of its start; from then on it
lives while the writer's liveliness holds and expires the moment DDS reports it lost (one lease,
that is one window, after the last assertion). On expiry, end or a robot-side connectivity loss,
every actuator the session owns is deactivated through its lifecycle `change_state` service,
and every external resource it claimed is stopped as its kind says, all at once, unless
`automatic_stop` is off: then only events are published and the integrator decides, through
`~/stop_session_resources`. The expiry timer is armed for the earliest deadline of any session
that is not held alive, so no polling adds latency. Sessions that end together (a dropped link
takes every session behind it within one assertion period) are handled as one batch: every stop
is requested before any of their events is published, their heartbeat subscriptions released
or their expiry logged.

On SIGINT/SIGTERM commands and new sessions are refused at once and the keep-alives stop (the
drivers' watchdogs stop what is left driven). With `supervisor` set and that node in the ROS
graph, the manager then waits, at most `ordered_exit_timeout_s`, for the supervisor's ordered
shutdown to close the sessions (`~/close_all_sessions`, its last step) or for the supervisor to
leave; a SIGTERM meanwhile ends the wait. What is still open is then closed (`closed by robot`).
`ros2 launch` signals every process at once, so this is what keeps its Ctrl-C in order.
A refused deactivation of an actuator that its `get_state` reports inactive, unconfigured or
finalized counts as a stop: it is safe (the supervisor may have taken it down first).
"""

from dataclasses import dataclass
import math
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Set, Tuple

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from std_msgs.msg import Bool, Header
from std_srvs.srv import Trigger

from viam_session.node_runner import run_node
from viam_session.parameters import (
    declare_bool, declare_float, declare_int, declare_string, declare_string_array)
from viam_session.sessions.actuator_links import ActuatorLink
from viam_session.sessions.actuator_ranges import ActuatorRanges
from viam_session.sessions.connectivity import ConnectivityWatch
from viam_session.sessions.connectivity_config import declare_connectivity_watch
from viam_session.sessions.described_resources import described_resources, DescribedResources
from viam_session.sessions.diagnostics import actuator_status, ActuatorView, session_status
from viam_session.sessions.discovery_waits import DiscoveryWaits
from viam_session.sessions.external_resources import ExternalResources
from viam_session.sessions.heartbeat_watch import HEARTBEAT_TYPE, HeartbeatWatch
from viam_session.sessions.keepalive import KeepAlives, LapsedActuators
from viam_session.sessions.names import check_node_name
from viam_session.sessions.quoting import quoted
from viam_session.sessions.table import (
    NotAuthenticated, Session, SessionError, SessionLimits, SessionTable, StoppedSession)
from viam_session.sessions.writer_presence import WriterPresence
from viam_session.time_convert import (
    duration_to_seconds, monotonic_to_ros_time, seconds_to_duration)
from viam_session_interfaces.msg import Rejection, SessionCommand, SessionEvent, SessionInfo
from viam_session_interfaces.srv import (
    EndSession, ListSessions, StartSession, StopSessionResources)

__all__ = ['CONNECTED_QOS', 'EVENTS_QOS', 'SessionManager', 'STATE_NAMES', 'main']

EVENTS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
# ROS's service default keeps 10 requests: a burst from more clients than that (a fleet that
# reconnects at once) lost the rest in DDS, unanswered. As deep as the default max_sessions.
SERVICES_QOS = QoSProfile(depth=1024, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
CONNECTED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
# How often the starts waiting for their client's command publisher look in the ROS graph.
DISCOVERY_POLL_S = 0.01
# rqt_robot_monitor expects about one status per second.
DIAGNOSTICS_PERIOD_S = 1.0
# Commands to actuators carry a liveliness lease of this many keep-alive periods.
KEEPALIVE_LEASE_PERIODS = 3
# The timer never waits less than this, so a deadline a hair away does not spin the loop.
MIN_TIMER_DELAY_S = 0.0001
NANOSECONDS_PER_SECOND = 1_000_000_000
# How often held sessions' writers are looked for in the ROS graph (writer_presence).
PRESENCE_CHECK_PERIOD_S = 1.0
# How often a manager waiting to exit looks whether the supervisor has closed the sessions.
EXIT_POLL_S = 0.05
# Longest client name a session may have: it is in every event, listing and log line.
MAX_CLIENT_NAME_LENGTH = 256
# Lifecycle states in which an actuator's outputs are at their safe level.
STOPPED_STATES = (State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_UNCONFIGURED,
                  State.PRIMARY_STATE_FINALIZED)
STATE_NAMES = {SessionEvent.STARTED: 'started', SessionEvent.EXPIRED: 'expired',
               SessionEvent.ENDED: 'ended', SessionEvent.CLOSED_BY_ROBOT: 'closed by robot'}


@dataclass
class _HeartbeatTopic:
    """What the manager knows of one session's heartbeat topic."""

    handle: str  # or a start request's own mark while that request waits (_open)
    alive: bool = False
    incompatible: str = ''  # a QoS policy a writer could not match with, while waiting


class SessionManager(Node):
    """Sessions, their heartbeats, and the actuators they own."""

    def __init__(self, node_name: str = 'session_manager', **kwargs) -> None:
        # Set first: destroy_node also runs for a node whose parameters were refused.
        self._connectivity: Optional[ConnectivityWatch] = None
        self._watch: Optional[HeartbeatWatch] = None
        self._keepalives: Optional[KeepAlives] = None
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
        self._automatic_stop = declare_bool(
            self, 'automatic_stop', True,
            "Stop a session's actuators when it expires, ends or is closed by the robot. False "
            'opts out: events are still published, and the integrator stops actuators through '
            '~/stop_session_resources.')
        self._discovery_timeout_s = declare_float(
            self, 'discovery_timeout_s', 5.0,
            "How long a start request waits to discover the client's command publisher, and a "
            "command waits for its actuator's driver to tell its command range.",
            low=0.1, high=60.0)
        self._stop_timeout_s = declare_float(
            self, 'stop_timeout_s', 1.0, 'How long to wait for an actuator to confirm a stop.',
            low=0.01, high=60.0)
        self._keepalive_period_s = declare_float(
            self, 'command_keepalive_period_s', 0.1,
            "How often a driven actuator's last command is sent again, for drivers whose "
            'watchdog stops them when commands stop (their command_timeout_s must exceed 3 '
            'periods, the liveliness lease of these commands).', low=0.01, high=10.0)
        self._supervisor = declare_string(
            self, 'supervisor', '', 'Fully qualified name of the lifecycle supervisor whose '
            'ordered shutdown closes the sessions last; on SIGINT/SIGTERM the manager leaves '
            'the closing to it while it is there (bounded); empty: none, close at once.')
        if self._supervisor and not self._supervisor.startswith('/'):
            raise ValueError('supervisor must be a fully qualified node name (start with /) or '
                             f'empty, got {self._supervisor!r}')
        self._ordered_exit_timeout_s = declare_float(
            self, 'ordered_exit_timeout_s', 4.5, "On SIGINT/SIGTERM, how long the supervisor's "
            'ordered shutdown may take to close the sessions before the manager closes them '
            '(launch sends SIGTERM 5 s after SIGINT).', low=0.0, high=60.0)
        self._exiting = False
        self._closing_on_request = 0
        self._exit_wait_over = threading.Event()
        actuators = declare_string_array(
            self, 'actuators', 'Fully qualified node names of the actuator drivers to manage.')
        bad = [name for name in actuators if not name.startswith('/')]
        if bad:
            raise ValueError(f'actuators must be fully qualified node names (start with /): {bad}')
        description_path = declare_string(
            self, 'robot_description', '', 'Robot description YAML (as for the supervisor): '
            'its actuator drivers are managed too, and its external resources can be claimed '
            "and are stopped; empty: none. Its names are under this node's namespace.")
        described = (described_resources(description_path, namespace=self.get_namespace())
                     if description_path else DescribedResources(actuators={}, external=()))
        command_types = {**dict.fromkeys(actuators, 'float64'), **described.actuators}
        self._connectivity = declare_connectivity_watch(
            self, on_lost=lambda reason: self._post(self._on_connectivity_lost, reason),
            on_restored=lambda: self._post(self._on_connectivity_restored))
        self._connectivity_lost: Optional[str] = None
        self._table = SessionTable(clock=time.monotonic, limits=limits)
        # Start and end await discovery and lifecycle replies; in a group of their own they
        # never hold back commands or the expiry timer while they wait.
        self._waiting = ReentrantCallbackGroup()
        self._links = {
            name: ActuatorLink(self, name, self._waiting,
                               lease_s=KEEPALIVE_LEASE_PERIODS * self._keepalive_period_s,
                               boolean=command_type == 'bool')
            for name, command_type in command_types.items()}
        self._ranges = ActuatorRanges(self, described.ranges, command_types, self._waiting,
                                      timeout_s=self._discovery_timeout_s)
        self._external = ExternalResources(self, described.external, self._waiting)
        self._stopped_with = described.stopped_with
        clashes = sorted(set(self._links) & set(self._external.names))
        if clashes:
            raise ValueError(f'{clashes} are both actuators and external resources')
        self._heartbeat_topics: Dict[str, _HeartbeatTopic] = {}
        self._topic_of: Dict[str, str] = {}  # session handle -> its heartbeat topic
        self._watch = HeartbeatWatch(
            context=self.context, node_name=f'{self.get_name()}_heartbeats',
            namespace=self.get_namespace(), post=self._post,
            on_liveliness=self._on_liveliness, on_crowded=self._on_crowded,
            on_incompatible=self._on_incompatible,
            on_topic_failure=self._on_heartbeat_topic_failure, on_failure=self._on_watch_failure)

        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._events = self.create_publisher(SessionEvent, '~/events', EVENTS_QOS)
        self._rejections = self.create_publisher(Rejection, '~/rejections', 10)
        # True while the robot has connectivity; published once at start and on every change,
        # latched, so the supervisor (connectivity_loss_policy) and late joiners see it.
        self._connected = self.create_publisher(Bool, '~/connected', CONNECTED_QOS)
        self._connected.publish(Bool(data=True))
        self.create_service(StartSession, '~/start_session', self._on_start,
                            qos_profile=SERVICES_QOS, callback_group=self._waiting)
        self.create_service(EndSession, '~/end_session', self._on_end, qos_profile=SERVICES_QOS,
                            callback_group=self._waiting)
        self.create_service(StopSessionResources, '~/stop_session_resources',
                            self._on_stop_resources, qos_profile=SERVICES_QOS,
                            callback_group=self._waiting)
        self.create_service(ListSessions, '~/list_sessions', self._on_list,
                            qos_profile=SERVICES_QOS)
        self.create_service(Trigger, '~/close_all_sessions', self._on_close_all,
                            qos_profile=SERVICES_QOS, callback_group=self._waiting)
        commands = self.create_subscription(SessionCommand, '~/command', self._on_command, 100)
        self._command_topic = commands.topic_name

        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._expiry_timer = self.create_timer(
            3600.0, self._on_expiry_timer, clock=self._steady_clock, autostart=False)
        self._expiry_armed_for: Optional[float] = None
        # From a thread of their own (keepalive.py: why, and why a lapse ends them).
        self._keepalives = KeepAlives(
            period_s=self._keepalive_period_s,
            on_lapse=lambda lapsed, gap_s: self._post(self._on_keepalives_lapsed, lapsed, gap_s),
            name=f'{self.get_name()}_keepalives')
        self._lapsed = LapsedActuators()
        self._resume_timer = self.create_timer(
            3600.0, self._on_resume_timer, clock=self._steady_clock, autostart=False)
        # Runs only while a start waits to discover its client's command publisher.
        self._discovery_waits = DiscoveryWaits(time.monotonic)
        self._discovery_timer = self.create_timer(
            DISCOVERY_POLL_S, self._check_discovery, clock=self._steady_clock, autostart=False)
        # Writers per heartbeat topic, counted once per check for both of its uses.
        self._writer_counts: Dict[str, int] = {}
        self._presence = WriterPresence(lambda topic: self._writer_counts[topic])
        self.create_timer(PRESENCE_CHECK_PERIOD_S, self._check_writers_present,
                          clock=self._steady_clock)
        # From the executor: the drivers' ranges are asked in tasks of its own.
        self._ask_ranges = self.create_timer(0.0, self._ask_actuator_ranges)
        if self._connectivity is not None:
            # Started from the executor, so that its first report has an executor to go to.
            self._start_connectivity = self.create_timer(0.0, self._start_connectivity_watch)
        self.get_logger().info(
            f'managing {len(self._links)} actuator(s) {sorted(self._links)} and '
            f'{len(self._external.names)} external resource(s) {self._external.names}; window '
            f'{limits.default_window_s} s (bounds [{limits.min_window_s}, '
            f'{limits.max_window_s}] s), at most {limits.max_sessions} sessions; automatic '
            f'stop {"on" if self._automatic_stop else "OFF (opt-out)"}')

    def destroy_node(self) -> None:
        """Stop the connectivity and heartbeat watches, then the node."""
        if self._keepalives is not None:
            self._keepalives.close()
        if self._connectivity is not None:
            self._connectivity.stop()
        if self._watch is not None:
            self._watch.close()
        super().destroy_node()

    # --- services ------------------------------------------------------------------------------

    async def _on_start(self, request: StartSession.Request,
                        response: StartSession.Response) -> StartSession.Response:
        client = request.client or 'unnamed client'
        try:
            session = await self._open(request, client)
        except SessionError as error:
            response.success, response.message = False, str(error)
            self.get_logger().warning(f'start refused for {quoted(client)}: {error}')
            return response
        response.success = True
        response.message = 'resumed' if request.resume_session_id else 'started'
        response.session_id = session.secret
        response.handle = session.handle
        response.command_sequence = session.command_sequence
        response.window = seconds_to_duration(session.window_s)
        self._publish_event(session, SessionEvent.STARTED, response.message, sorted(session.owned))
        self.get_logger().info(
            f'session {session.handle} {response.message} for {client}, '
            f'window {session.window_s} s, heartbeats on {request.heartbeat_topic}')
        return response

    async def _open(self, request: StartSession.Request, client: str) -> Session:
        """Check, wait for discovery, then start or resume the session; raise SessionError."""
        topic = request.heartbeat_topic
        if not topic:
            raise SessionError('heartbeat_topic is required (see StartSession.srv)')
        if len(client) > MAX_CLIENT_NAME_LENGTH:
            raise SessionError(f'client name {quoted(client)} is longer than '
                               f'{MAX_CLIENT_NAME_LENGTH} characters')
        if request.client_node:
            try:
                check_node_name(request.client_node, 'client_node')
            except ValueError as error:
                raise SessionError(str(error)) from error
        self._check_may_start(request)
        requested = request.requested_window
        if requested.nanosec >= NANOSECONDS_PER_SECOND:
            # builtin_interfaces/Duration keeps nanosec below one second; taking 2^32-1 as
            # 4.29 s would grant a window nobody asked for.
            raise SessionError(
                f'requested_window is not a normalised Duration: nanosec must be below '
                f'{NANOSECONDS_PER_SECOND}, got sec {requested.sec}, nanosec {requested.nanosec}')
        resume_id = request.resume_session_id
        window_s = self._table.window_for(
            client, duration_to_seconds(request.requested_window), resume_id)
        resume_handle = self._table.handle_of(resume_id, 'resume') if resume_id else ''
        self._check_topic_free(topic, resume_handle)
        if request.client_node and not await self._discovered(request.client_node):
            raise SessionError(
                'the robot did not discover the command publisher of '
                f'{quoted(request.client_node)} '
                f'within {self._discovery_timeout_s} s')
        # Again, after the wait and with no wait from here to the attach: meanwhile the robot
        # may have begun to shut down or lost connectivity (and closed the sessions it had),
        # or another start may have taken the topic; two sessions on one topic would share one
        # watch, and the first to end would leave the other held alive with nothing watching.
        self._check_may_start(request)
        known = self._check_topic_free(topic, resume_handle)
        in_use = dict(self.get_topic_names_and_types()).get(topic, [HEARTBEAT_TYPE])
        if in_use != [HEARTBEAT_TYPE]:
            raise SessionError(f'heartbeat topic {topic} is in use with type '
                               f'{", ".join(in_use)}; it may carry only {HEARTBEAT_TYPE}')
        try:
            self._watch.watch(topic, window_s)
        except ValueError as error:
            raise SessionError(str(error)) from error
        if known is None:
            pending = self._heartbeat_topics[topic] = _HeartbeatTopic(f'starting {id(request)}')
            # A client that names its node made its writer before the call (StartSession.srv):
            # not in this graph yet, it is still being discovered, so it is waited for too.
            if (self.count_publishers(topic) or request.client_node) and not await self._heard(
                    pending, self._discovery_timeout_s) and not pending.incompatible:
                self.get_logger().warning(
                    f'no heartbeat writer on {topic} heard alive within '
                    f'{self._discovery_timeout_s} s of the start for {quoted(client)}: its '
                    f'session starts and expires in {window_s:g} s unless it is heard')
        try:
            # The wait for the writer above kept the topic (its mark), not the robot's state.
            self._check_may_start(request)
            if self.count_publishers(topic) > 1:   # a valid name: watch() checked it
                raise SessionError(f'heartbeat topic {topic} has more than one writer; it must '
                                   'have only the one of the client starting the session')
            # Checked again: the session may have expired while discovery was awaited.
            session = self._table.start(
                client, duration_to_seconds(request.requested_window), resume_id,
                remote=not request.local)
        except SessionError:
            if known is None:
                del self._heartbeat_topics[topic]
                self._watch.unwatch(topic)
            raise
        self._attach_heartbeat_topic(session, topic)
        self._arm_expiry_timer()
        return session

    def _check_may_start(self, request: StartSession.Request) -> None:
        """Raise SessionError while the robot takes no new sessions of this kind."""
        if self._exiting:
            raise SessionError('the robot is shutting down')
        if self._connectivity_lost is not None and not request.local:
            raise SessionError(f'the robot has lost connectivity ({self._connectivity_lost}); '
                               'only local sessions may start')

    def _check_topic_free(self, topic: str, resume_handle: str) -> Optional[_HeartbeatTopic]:
        """Return what is known of `topic`; raise SessionError if another session has it."""
        known = self._heartbeat_topics.get(topic)
        if known is not None and known.handle != resume_handle:
            raise SessionError(f'heartbeat topic {topic} belongs to another session')
        return known

    async def _on_end(self, request: EndSession.Request,
                      response: EndSession.Response) -> EndSession.Response:
        try:
            stopped = self._table.end(request.session_id)
        except SessionError as error:
            response.success, response.message = False, str(error)
            return response
        handle = stopped.session.handle
        self._detach_heartbeat_topic(handle)
        failed: List[str] = []
        if self._automatic_stop:
            stopping = self._stopped_with.expand(stopped.owned)
            failed = await self._stop_and_wait(stopping)
            response.stopped_resources = [name for name in stopping if name not in failed]
            response.not_stopped = failed
        self._publish_event(stopped.session, SessionEvent.ENDED, stopped.reason, stopped.owned)
        response.success = not failed
        response.message = 'ended' if not failed else f'ended; could not stop {failed}'
        self.get_logger().info(f'session {handle} ended, stopped '
                               f'{list(response.stopped_resources)}')
        return response

    async def _on_stop_resources(
            self, request: StopSessionResources.Request,
            response: StopSessionResources.Response) -> StopSessionResources.Response:
        try:
            names = self._stopped_with.expand(self._table.resources_to_stop(request.handle))
        except SessionError as error:
            response.success, response.message = False, str(error)
            return response
        failed = await self._stop_and_wait(names)
        response.stopped_resources = [name for name in names if name not in failed]
        response.success = not failed
        response.message = 'stopped' if not failed else f'could not stop {failed}'
        self.get_logger().info(
            f'stopped {list(response.stopped_resources)} of session {request.handle} '
            'on request')
        return response

    async def _on_close_all(self, request: Trigger.Request,
                            response: Trigger.Response) -> Trigger.Response:
        """Close every session (`closed by robot`) and stop what they owned: ordered shutdown."""
        self._closing_on_request += 1
        try:
            closed = self._table.close_all('robot shutting down')
            owned = sorted({name for stopped in closed for name in stopped.owned})
            failed: List[str] = []
            if self._automatic_stop:
                # The ordered shutdown has taken the nodes down already: asked to deactivate,
                # they would refuse (and log an error); what is not active is stopped.
                down = await self._not_active([name for name in owned if name in self._links])
                failed = await self._stop_and_wait([name for name in owned if name not in down])
            for stopped in closed:
                self._detach_heartbeat_topic(stopped.session.handle)
                self._publish_event(stopped.session, SessionEvent.CLOSED_BY_ROBOT,
                                    stopped.reason, stopped.owned)
        finally:
            self._closing_on_request -= 1
        response.success = not failed
        response.message = (f'closed {len(closed)} session(s), stopped '
                            f'{[name for name in owned if name not in failed]}')
        if failed:
            response.message += f'; could not stop {failed}'
        self.get_logger().info(f'on request: {response.message}')
        return response

    def _on_list(self, request: ListSessions.Request,
                 response: ListSessions.Response) -> ListSessions.Response:
        response.sessions = [
            SessionInfo(handle=s.handle, client=s.client,
                        window=seconds_to_duration(s.window_s),
                        last_heartbeat=monotonic_to_ros_time(s.last_heartbeat),
                        owned_resources=sorted(s.owned),
                        heartbeat_topic=self._topic_of.get(s.handle, ''),
                        local=not s.remote)
            for s in self._table.live()]
        return response

    # --- heartbeats ----------------------------------------------------------------------------

    def _post(self, callback, *args: object) -> bool:
        """Run `callback(*args)` on this node's executor thread (safe from any thread)."""
        executor = self.executor
        if executor is None:
            return False
        executor.create_task(callback, *args)
        return True

    def _attach_heartbeat_topic(self, session: Session, topic: str) -> None:
        """Make `topic` the session's heartbeat topic, replacing an earlier one (resume)."""
        if self._topic_of.get(session.handle, topic) != topic:
            self._detach_heartbeat_topic(session.handle)
            # The old writer held the session alive; the new one must, within a window, or
            # the session expires: a writer whose liveliness is never reported (seen in tests)
            # must not leave the session held for ever.
            self._table.hold(session.handle, False)
        self._topic_of[session.handle] = topic
        state = self._heartbeat_topics.setdefault(topic, _HeartbeatTopic(session.handle))
        state.handle = session.handle  # the start request's mark, while it waited
        if state.alive:
            self._table.hold(session.handle, True)
        if state.incompatible:
            self._on_incompatible(topic, state.incompatible)

    def _detach_heartbeat_topic(self, handle: str) -> None:
        topic = self._topic_of.pop(handle, '')
        state = self._heartbeat_topics.get(topic)
        if state is not None and state.handle == handle:
            self._watch.unwatch(topic)
            del self._heartbeat_topics[topic]

    def _on_liveliness(self, changes: List[Tuple[str, bool]]) -> None:
        """Hold sessions whose writer is alive; expire, all at once, those whose writer is lost."""
        expired = []
        for topic, alive in changes:
            state = self._heartbeat_topics.get(topic)
            if state is None:
                continue  # a topic that was replaced or whose session is over
            state.alive = alive
            try:
                if alive:
                    self._table.hold(state.handle, True)
                else:
                    expired.append(self._table.expire(state.handle))
            except SessionError:
                # Held: past its deadline already, the expiry timer is about to take it.
                # Expired: over already (an earlier change of this batch, or the timer).
                continue
        self._finish(expired, SessionEvent.EXPIRED)

    def _on_crowded(self, topic: str) -> None:
        """Close the session whose heartbeat topic has a second writer (module docstring)."""
        state = self._heartbeat_topics.get(topic)
        if state is None:
            return
        try:
            closed = self._table.close(
                state.handle, f'a second writer appeared on its heartbeat topic {topic}: its '
                "liveliness can no longer be told from the client's")
        except SessionError:
            return  # over already
        self._finish([closed], SessionEvent.CLOSED_BY_ROBOT)

    def _on_incompatible(self, topic: str, policy: str) -> None:
        state = self._heartbeat_topics.get(topic)
        if state is not None and state.handle not in self._topic_of:
            state.incompatible = policy  # told once the start request has its session
        elif state is not None:
            self._reject(state.handle, 'heartbeat',
                         f'the heartbeat writer on {topic} cannot match: incompatible QoS '
                         f'{policy} (reliable, liveliness MANUAL_BY_TOPIC, lease <= window)')

    def _on_heartbeat_topic_failure(self, topic: str, error: Exception) -> None:
        """Close the one session whose heartbeat topic cannot be watched; serve the others."""
        state = self._heartbeat_topics.get(topic)
        if state is None:
            return
        try:
            closed = self._table.close(
                state.handle, f'its heartbeat topic {topic} cannot be watched: {error}')
        except SessionError:
            return  # over already
        self._finish([closed], SessionEvent.CLOSED_BY_ROBOT)

    def _on_watch_failure(self, error: BaseException) -> None:
        """Stop the manager: sessions held alive by a dead watch would never expire."""
        self.get_logger().fatal(f'the heartbeat watch failed ({error!r}); shutting down')
        raise RuntimeError('heartbeat watch failed') from error

    # --- topics --------------------------------------------------------------------------------

    def _on_command(self, message: SessionCommand) -> None:
        """
        Check a command, then make its session the owner and relay it; refuse it otherwise.

        Everything that can refuse it is checked before the owner changes: the command is the
        session's (its tag, an increasing sequence), the resource is known, the value is
        finite and within what the actuator accepts (its range may have to be asked of the
        driver first, see actuator_ranges), an external lifecycle node is active.
        """
        try:
            self._table.authenticate(message.handle, message.resource, message.value,
                                     message.sequence, bytes(message.tag))
        except NotAuthenticated as error:
            self._reject('', 'command', str(error))   # not proven to be the session's
            return
        name = message.resource
        if self._exiting:
            self._reject_command(message, 'the robot is shutting down')
            return
        if name not in self._links and name not in self._external:
            self._reject_command(
                message, f'unknown resource {quoted(name)}: not an actuator '
                f'({", ".join(sorted(self._links)) or "none"}) nor an external resource '
                f'({", ".join(self._external.names) or "none"})')
            return
        if not math.isfinite(message.value):
            self._reject_command(message, f'{name}: value must be finite, got {message.value}')
            return
        if name in self._external:
            if self._table.owner_of(name) == message.handle or (
                    self._table.get(message.handle) is None):
                # Owned already (nothing changes), or no such live session (refused at once).
                self._claim_and_relay(message)
            else:
                self._post(self._claim_external, message)
            return
        self._ranges.when_known(name, lambda unknown: self._on_range_known(message, unknown))

    def _on_range_known(self, message: SessionCommand, unknown: str) -> None:
        name = message.resource
        if self._exiting:
            self._reject_command(message, 'the robot is shutting down')
            return
        if unknown:
            self._reject_command(message, f'{name}: command range unknown, so nothing is '
                                 f'relayed to it: {unknown}')
            return
        problem = self._ranges.get(name).problem(message.value)
        if problem:
            self._reject_command(message, f'{name} refuses {message.value!r}: {problem}')
            return
        self._claim_and_relay(message)

    async def _claim_external(self, message: SessionCommand) -> None:
        """Claim an external resource, unless it cannot act (a lifecycle node not active)."""
        problem = await self._external.cannot_act(message.resource, self._discovery_timeout_s)
        if self._exiting:
            self._reject_command(message, 'the robot is shutting down')
        elif problem:
            self._reject_command(message, f'{message.resource} cannot be claimed: {problem}')
        else:
            self._claim_and_relay(message)

    def _claim_and_relay(self, message: SessionCommand) -> None:
        """Make the session the owner of a checked command's resource; relay it to actuators."""
        try:
            previous = self._table.claim(message.handle, message.resource)
        except SessionError as error:
            self._reject_command(message, str(error))
            return
        if previous is not None:
            self.get_logger().info(
                f'{message.resource} taken over by session {message.handle} from {previous}')
        link = self._links.get(message.resource)
        if link is None:
            return  # an external resource: claimed, nothing to relay
        if link.stopped_by_manager:
            self._reactivate_then_send(link, message.value)
        else:
            self._drive(link, message.value)

    def _drive(self, link: ActuatorLink, value: float) -> None:
        """
        Send `value` to the actuator, then keep it alive until the manager stops it.

        With automatic stop off an actuator stays driven after its session is over, until the
        integrator stops it (`_stop`).
        """
        self._lapsed.discard(link.name)
        link.send(value)
        self._keepalives.drive(link.name, link.send, value, lapse_s=self._lapse_s(link))

    def _lapse_s(self, link: ActuatorLink) -> float:
        """
        Return the keep-alive gap after which the driver may have stopped by its watchdog.

        Its timeout less one period for the delivery; with no driver known yet, the lease of
        the commands (which a driver's timeout must exceed).
        """
        period_s = self._keepalive_period_s
        timeout_s = link.watchdog_timeout_s()
        if timeout_s is None:
            return KEEPALIVE_LEASE_PERIODS * period_s
        return max(timeout_s - period_s, period_s)

    def _on_keepalives_lapsed(self, lapsed: Dict[str, float], gap_s: float) -> None:
        """
        Keep-alives stopped for longer than a watchdog allows: left to the watchdogs.

        Each is driven again by its owner's next command, or one window of the owner's session
        from now if that session still owns it then (docs/design.md, Keep-alive).
        """
        self.get_logger().error(
            f'keep-alives lapsed: {gap_s * 1e3:.0f} ms between two rounds (the manager was '
            f'stalled); {sorted(lapsed)} left to the watchdogs of their drivers (safe)')
        now = time.monotonic()
        for name, value in lapsed.items():
            owner = self._table.owner_of(name)
            session = self._table.get(owner) if owner is not None else None
            if session is None:
                continue  # over, or with automatic stop off no longer owned: not resumed
            self._lapsed.add(name, owner, value, window_s=session.window_s, now=now)
            self._reject(owner, 'command', f'keep-alives to {name} lapsed for '
                         f'{gap_s * 1e3:.0f} ms (the robot was stalled): its driver may have '
                         f'stopped it; driven again by the next command, or in '
                         f'{session.window_s:g} s if the session still owns it then')
        self._arm_resume_timer()

    def _arm_resume_timer(self) -> None:
        self._resume_timer.cancel()
        resume = self._lapsed.next_resume()
        if resume is not None:
            delay = max(resume - time.monotonic(), MIN_TIMER_DELAY_S)
            self._resume_timer.timer_period_ns = int(delay * 1e9)
            self._resume_timer.reset()

    def _on_resume_timer(self) -> None:
        """Drive again what lapsed a window ago, if the same live session still owns it."""
        for name, value in self._lapsed.take_due(time.monotonic(), self._table.owner_of):
            link = self._links[name]
            if not link.stopped_by_manager and not self._exiting:
                self.get_logger().info(f'{name}: driven again after its keep-alives lapsed')
                self._drive(link, value)
        self._arm_resume_timer()

    # --- expiry, connectivity, shutdown --------------------------------------------------------

    def _check_writers_present(self) -> None:
        """
        Let the window run for held sessions whose writer left the graph (writer_presence).

        Also close every session whose heartbeat topic has more than one writer in the graph
        (module docstring), alive or not.
        """
        self._writer_counts = {topic: self.count_publishers(topic)
                               for topic in self._heartbeat_topics}
        for topic, count in self._writer_counts.items():
            if count > 1:
                self._on_crowded(topic)
        held = {topic: state for topic, state in self._heartbeat_topics.items() if state.alive}
        released = False
        for topic in self._presence.gone(held):
            state = held[topic]
            state.alive = False
            try:
                self._table.hold(state.handle, False)
            except SessionError:
                continue   # over already
            released = True
            self.get_logger().error(
                f'session {state.handle}: its heartbeat writer left the ROS graph and DDS '
                'reported no liveliness loss; it expires one window from now unless the '
                'writer is seen alive again')
        if released:
            self._arm_expiry_timer()

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
        self._finish(self._table.expire_due(), SessionEvent.EXPIRED)
        self._arm_expiry_timer()

    def _ask_actuator_ranges(self) -> None:
        self.destroy_timer(self._ask_ranges)
        self._ranges.ask_all()

    def _start_connectivity_watch(self) -> None:
        self.destroy_timer(self._start_connectivity)
        self._connectivity.start()

    def _on_connectivity_lost(self, reason: str) -> None:
        self._connectivity_lost = reason
        self._connected.publish(Bool(data=False))
        self.get_logger().error(f'robot lost connectivity: {reason}; closing remote sessions')
        self._finish(self._table.close_remote(f'robot lost connectivity: {reason}'),
                     SessionEvent.CLOSED_BY_ROBOT)

    def _on_connectivity_restored(self) -> None:
        self._connectivity_lost = None
        self._connected.publish(Bool(data=True))
        self.get_logger().info('robot connectivity restored; remote sessions may start again')

    def _finish(self, over: List[StoppedSession], state: int) -> None:
        """
        Stop what sessions that are over owned (unless opted out), then publish their events.

        Every stop is requested before anything else is done for any of these sessions: the
        drivers deactivate in parallel while the events, the heartbeat subscriptions and the
        logs are seen to.
        """
        owned = [name for stopped in over for name in stopped.owned]
        stopping = self._stopped_with.expand(owned) if self._automatic_stop else []
        if stopping:
            self._stop(stopping)
        for stopped in over:
            self._publish_event(stopped.session, state, stopped.reason, stopped.owned)
        for stopped in over:
            self._detach_heartbeat_topic(stopped.session.handle)
        if over:
            # One line for all: on a loaded robot each log call can take milliseconds.
            action = 'stopping' if self._automatic_stop else 'automatic stop is off, not stopping'
            claimed = set(owned)
            along = [name for name in stopping if name not in claimed]
            self.get_logger().warning(f'{len(over)} session(s) {STATE_NAMES[state]}: ' + '; '.join(
                f'{stopped.session.handle} of {stopped.session.client} ({stopped.reason}), '
                f'{action} {stopped.owned}' for stopped in over)
                + (f'; stopped with them (stop_with): {along}' if along else ''))

    def exit_in_order(self) -> None:
        """
        SIGINT/SIGTERM: refuse commands, let the supervisor close the sessions, close the rest.

        Runs outside the executor thread while it still spins (see the module docstring).
        """
        self._exiting = True
        self._keepalives.close()
        if self._supervisor and self._ordered_exit_timeout_s > 0:
            watch = self.create_timer(EXIT_POLL_S, self._check_exit_wait_over,
                                      clock=self._steady_clock)
            if not self._exit_wait_over.wait(self._ordered_exit_timeout_s):
                self.get_logger().warning(
                    f'{self._supervisor} did not close the sessions within '
                    f'{self._ordered_exit_timeout_s:g} s: closing them')
            watch.cancel()
            self.destroy_timer(watch)
        self.close_all_sessions('robot shutting down')

    def hurry_exit(self) -> None:
        """Stop waiting for the supervisor: SIGTERM came (safe in a signal handler)."""
        self._exit_wait_over.set()

    def _check_exit_wait_over(self) -> None:
        """On the executor: over once no session is left open or the supervisor has left."""
        closed = not self._table.live() and not self._closing_on_request
        namespace, _, name = self._supervisor.rpartition('/')
        present = (name, namespace or '/') in self.get_node_names_and_namespaces()
        if closed or not present:
            self._exit_wait_over.set()

    def close_all_sessions(self, reason: str) -> None:
        """
        Close every session, tell clients `closed by robot` and stop what they owned.

        Called on shutdown from outside the executor thread while it still spins; waits
        (bounded) for the actuators to confirm.
        """
        pending = []
        closed = self._table.close_all(reason)
        for stopped in closed:
            if self._automatic_stop:
                pending += self._stop(stopped.owned).values()
            self._publish_event(stopped.session, SessionEvent.CLOSED_BY_ROBOT, reason,
                                stopped.owned)
        confirmed = threading.Semaphore(0)
        for future in pending:
            future.add_done_callback(lambda _: confirmed.release())
        deadline = time.monotonic() + self._stop_wait_s(
            [name for stopped in closed for name in stopped.owned])
        for _ in pending:
            if not confirmed.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                self.get_logger().error('not every actuator confirmed its stop on shutdown')
                break

    # --- stopping actuators --------------------------------------------------------------------

    def _stop(self, names: Iterable[str]) -> Dict[str, Future]:
        """Stop every named resource, and what stops with them, at once; return the requests."""
        futures = {}
        for name in self._stopped_with.expand(names):
            if name in self._external:
                futures[name] = self._external.stop(name)
                continue
            link = self._links[name]
            # Before the stop: no keep-alive may reach the driver after it.
            self._keepalives.release(name)
            self._lapsed.discard(name)
            link.stopped_by_manager = True
            link.stops += 1
            future = link.deactivate()
            if future is None:
                link.problem = 'cannot stop: its lifecycle service is not up'
                self.get_logger().error(f'cannot stop {name}: its lifecycle service is not up')
                continue
            future.add_done_callback(
                lambda done, name=name: self._log_stop_result(name, done))
            futures[name] = future
        return futures

    def _log_stop_result(self, name: str, done: Future) -> None:
        result = done.result()
        link = self._links[name]
        if result is not None and result.success:
            link.problem = ''
            return
        state = link.get_state()
        if state is None:
            link.problem = 'last stop: deactivate refused; its state is unknown'
            self.get_logger().warning(f'{name} refused to deactivate; its state is unknown')
            return

        def on_state(reply: Future) -> None:
            answer = reply.result()
            if answer is not None and answer.current_state.id in STOPPED_STATES:
                link.problem = ''
                self.get_logger().info(f'{name} was {answer.current_state.label} already')
            else:
                label = answer.current_state.label if answer is not None else 'unknown'
                link.problem = f'last stop: deactivate refused; it is {label}'
                self.get_logger().warning(f'{name} refused to deactivate; it is {label}')

        state.add_done_callback(on_state)

    async def _heard(self, state: _HeartbeatTopic, timeout_s: float) -> bool:
        """
        Wait (bounded) until a heartbeat writer that is already there is seen alive.

        Its window must not run while the manager's new subscription and the writer are still
        matching each other: when that took longer than the window (seen under load), a healthy
        session expired one window after its start without a liveliness report ever reaching
        the manager. Bounded like discovery (a start is answered within discovery_timeout_s),
        not by the window: on Jazzy under load, a 0.5 s session of the client library expired
        0.53 s after its start, its writer still unmatched. A writer reported unable to match
        (incompatible QoS) will never be heard: the wait ends there, False.
        """
        if state.alive or state.incompatible:
            return state.alive
        heard = Future()

        def check() -> None:
            if not heard.done() and (state.alive or state.incompatible):
                heard.set_result(state.alive)

        poller = self.create_timer(DISCOVERY_POLL_S, check, clock=self._steady_clock,
                                   callback_group=self._waiting)
        try:
            return await self._bounded(heard, timeout_s)
        finally:
            # Destroyed without cancelling first: a task closed at shutdown must not raise
            # InvalidHandle from cancel().
            self.destroy_timer(poller)

    async def _discovered(self, client_node: str) -> bool:
        """Wait (bounded) until this node knows the client's command writer."""
        if client_node in self._command_publishers():
            return True
        found = Future()
        self._discovery_waits.add(client_node, self._discovery_timeout_s, found.set_result)
        if self._discovery_timer.is_canceled():
            self._discovery_timer.reset()
        return await found

    def _check_discovery(self) -> None:
        """Conclude the starts waiting for their client's command writer (DiscoveryWaits)."""
        self._discovery_waits.check(self._command_publishers())
        if not self._discovery_waits:
            self._discovery_timer.cancel()

    def _command_publishers(self) -> Set[str]:
        """Return the fully qualified names of the nodes that publish on ~/command."""
        return {f'{info.node_namespace.rstrip("/")}/{info.node_name}'
                for info in self.get_publishers_info_by_topic(self._command_topic)}

    async def _stop_and_wait(self, names: List[str]) -> List[str]:
        """Stop them and what stops with them, wait (bounded); return the names not confirmed."""
        names = self._stopped_with.expand(names)
        futures = self._stop(names)
        await self._bounded(self._all_done(futures.values()), self._stop_wait_s(names))
        refused = [name for name in names if name in self._links and name in futures
                   and futures[name].done() and futures[name].result() is not None
                   and not futures[name].result().success]
        safe = await self._not_active(refused)
        return [name for name in names
                if name not in futures or not futures[name].done()
                or futures[name].result() is None
                or not futures[name].result().success and name not in safe]

    async def _not_active(self, names: List[str]) -> Set[str]:
        """Return those actuators of `names` that say they are not active (bounded wait)."""
        if not names:
            return set()
        futures = {name: self._links[name].get_state() for name in names}
        asked = {name: future for name, future in futures.items() if future is not None}
        await self._bounded(self._all_done(asked.values()), self._stop_timeout_s)
        return {name for name, future in asked.items()
                if future.done() and future.result() is not None
                and future.result().current_state.id in STOPPED_STATES}

    @staticmethod
    def _all_done(futures: Iterable[Future]) -> Future:
        """Return a future set to True once every one of `futures` is done."""
        pending = list(futures)
        all_done = Future()

        def check(_: object = None) -> None:
            if not all_done.done() and all(f.done() for f in pending):
                all_done.set_result(True)

        for future in pending:
            future.add_done_callback(check)
        check()
        return all_done

    def _stop_wait_s(self, names: Iterable[str]) -> float:
        """Return how long to wait for these to confirm a stop: external ones may retry."""
        return max(self._stop_timeout_s, self._external.budget_s(names))

    async def _bounded(self, done: Future, timeout_s: float) -> bool:
        """Await `done` (which callbacks set to True); False once `timeout_s` has passed."""
        timeout = self.create_timer(
            timeout_s, lambda: done.done() or done.set_result(False),
            clock=self._steady_clock, callback_group=self._waiting)
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
            link.problem = 'cannot reactivate: its lifecycle service is not up'
            self.get_logger().error(f'cannot reactivate {link.name}: lifecycle service not up')
            return
        link.activating = True
        stops = link.stops

        def on_activated(done: Future) -> None:
            link.activating = False
            owner = self._table.owner_of(link.name)
            if link.stops != stops:
                # A stop was requested while this activation ran: it leaves the actuator
                # inactive, so a live owner's command needs one more activation.
                if owner is not None:
                    self._reactivate_then_send(link, link.pending_value)
                return
            if done.result() is not None and done.result().success:
                self._reactivated(link)
            else:
                self._check_active_after_refusal(link, stops)

        future.add_done_callback(on_activated)

    def _reactivated(self, link: ActuatorLink) -> None:
        """Count the actuator as active again: relay its live owner's command."""
        link.stopped_by_manager = False
        link.problem = ''
        if self._table.owner_of(link.name) is not None:
            self._drive(link, link.pending_value)

    def _check_active_after_refusal(self, link: ActuatorLink, stops: int) -> None:
        """
        Count a refused reactivation of an actuator that is active as done.

        Another node may have activated it since this manager stopped it (the supervisor brings
        a driver whose liveliness was late back to active): its activation is then refused,
        and without this check every later command would ask again and be refused too.
        """
        state = link.get_state()
        if state is None:
            link.problem = 'reactivation for a new session refused; its state is unknown'
            return

        def on_state(reply: Future) -> None:
            if link.stops != stops:
                if self._table.owner_of(link.name) is not None:
                    self._reactivate_then_send(link, link.pending_value)
                return
            answer = reply.result()
            if answer is not None and answer.current_state.id == State.PRIMARY_STATE_ACTIVE:
                self.get_logger().info(f'{link.name} was active already (activated by another '
                                       'node): driven by its owner')
                self._reactivated(link)
                return
            label = answer.current_state.label if answer is not None else 'unknown'
            link.problem = f'reactivation for a new session refused; it is {label}'
            self.get_logger().warning(f'{link.name}: reactivation refused; it is {label}')

        state.add_done_callback(on_state)

    # --- helpers -------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        status = session_status(
            name=f'{self.get_fully_qualified_name()}: sessions', sessions=self._table.live(),
            now=time.monotonic(), automatic_stop=self._automatic_stop,
            connectivity_lost=self._connectivity_lost)
        statuses = [status]
        if self._links:
            statuses.append(actuator_status(
                name=f'{self.get_fully_qualified_name()}: actuators',
                actuators=[ActuatorView(name=name, owner=self._table.owner_of(name),
                                        stopped=link.stopped_by_manager, problem=link.problem)
                           for name, link in self._links.items()]))
        if self._external.names:
            statuses.append(self._external.status(
                f'{self.get_fully_qualified_name()}: external resources'))
        self._diagnostics.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                            status=statuses))

    def _publish_event(self, session: Session, state: int, reason: str, owned: List[str]) -> None:
        event = SessionEvent(handle=session.handle, client=session.client, state=state,
                             reason=reason, owned_resources=owned)
        event.last_heartbeat = monotonic_to_ros_time(session.last_heartbeat)
        event.stamp = self.get_clock().now().to_msg()
        self._events.publish(event)

    def _reject(self, handle: str, subject: str, reason: str, *, resource: str = '',
                value: float = 0.0) -> None:
        self.get_logger().warning(f'{subject} rejected: {reason}', throttle_duration_sec=1.0)
        rejection = Rejection(handle=handle, subject=subject, reason=reason,
                              resource=resource, value=value)
        rejection.stamp = self.get_clock().now().to_msg()
        self._rejections.publish(rejection)

    def _reject_command(self, message: SessionCommand, reason: str) -> None:
        self._reject(message.handle, 'command', reason, resource=message.resource,
                     value=message.value)


def main(args: Optional[List[str]] = None) -> int:
    """Run the session manager; on SIGINT/SIGTERM every session is closed, in order (above)."""
    return run_node(SessionManager, args=args, before_shutdown=SessionManager.exit_in_order,
                    on_signal_again=SessionManager.hurry_exit)


if __name__ == '__main__':
    sys.exit(main())
