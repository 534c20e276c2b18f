"""
The lifecycle supervisor: a robot as a tree of parts, started and stopped in order, watched.

One node (`lifecycle_supervisor`) reads a robot description (`viam_session.supervisor.tree`)
and manages every node in it through the standard lifecycle services, so `ros2 lifecycle`
keeps working on each of them.

- Startup (`~/startup`, std_srvs/Trigger; or `autostart:=true`): wave after wave, parents
  first: configure the wave's nodes in parallel, then activate them, each checked with
  get_state. On a failure the ramp-up stops, what was activated is deactivated again (latest
  wave first) and the reply names the failing node, the transition and the node's last error
  log (from /rosout).
- Shutdown (`~/shutdown`, and on SIGINT/SIGTERM of the supervisor): the shutdown plan, children
  first, each step's nodes in parallel: deactivate, then cleanup. Down means unconfigured:
  outputs safe and lines released, and the node can be started again (a shutdown transition
  to finalized could not be undone without restarting the process). After each step the parts
  it leaves down are reported ("part X down": log and `~/part_events`). A part's external
  resources (`resources:` in the description) are stopped in the step the order gives them,
  beside its nodes (`sessions.external_resources`). Last the session manager
  (`session_manager`) is asked to close every client session (`closed by robot`).
  On exit (SIGINT/SIGTERM) the supervisor then lets go of its nodes (its `<node>/alive`
  readers leave the graph) and stops the driver processes it started. `ros2 launch` signals
  every process at once: the drivers keep their outputs safe and wait for this (see
  `drivers.base`), the session manager waits for the sessions to be closed, and a node that
  leaves meanwhile is done, not dead. A SIGTERM during it (launch's, 5 s after SIGINT) cuts
  the ordered shutdown short.
- Liveliness: each driver offers `<node>/alive` (liveliness AUTOMATIC); the supervisor requests
  the node's lease (`liveliness_lease_s` in the description, else
  `default_liveliness_lease_s`). A node whose liveliness is lost is dead, and so is one whose
  process, started by the supervisor, exits (`supervisor.process_watch`: known at once, not a
  lease later). A dead node is reported, its
  output lines parked at their safe level by the supervisor when it runs on this host
  (`supervisor.parking`), its dependents (transitively) deactivated, and then, within its
  `respawn` budget and with a doubling back-off, respawned if the supervisor started it, or
  configured and activated again when it comes back (once the nodes it depends on are: a
  sub-part on another host returns with its link, parents first); its dependents follow.
  A node that comes back still active was only late: it costs no attempt (whoever started
  it), its dependents are activated again.
- Connectivity: with `connectivity_loss_policy:=shutdown`, the session manager reporting the
  robot's connectivity lost (`<session_manager>/connected` false) runs the same ordered
  shutdown; the default, `stop`, leaves it to the manager, which closes the remote sessions
  and so stops their actuators.
- `~/get_state` (std_srvs/Trigger): JSON of every node's state, part, liveliness and error.
- `/diagnostics`: one status per part and per node, at 1 Hz and on every change. An actuator
  the session manager stops (dc_motor, servo, gpio_output, session_gate) that is inactive
  once the tree is up, and not held down by the supervisor, is idle between sessions: OK
  `inactive (idle: no session)`, not WARN.
"""

from collections import deque
import faulthandler
from functools import partial
import json
import signal
import sys
import threading
import time
import traceback
from typing import Any, Awaitable, Deque, Dict, List, Optional, Set, Tuple

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition, TransitionEvent
from rcl_interfaces.msg import Log
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.event_handler import QoSLivelinessChangedInfo, SubscriptionEventCallbacks
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from std_msgs.msg import Bool, Empty, String
from std_srvs.srv import Trigger

from viam_session.chips import ChipError, LineInUseError
from viam_session.drivers.base import alive_qos
from viam_session.node_runner import run_node
from viam_session.parameters import declare_bool, declare_float, declare_string
from viam_session.sessions.described_resources import ACTUATOR_DRIVERS
from viam_session.sessions.external_resources import ExternalResources
from viam_session.sessions.manager_node import CONNECTED_QOS
from viam_session.supervisor.diagnostics import tree_diagnostics
from viam_session.supervisor.lifecycle_link import (
    bounded, LifecycleLink, sleep, STATE_LABELS)
from viam_session.supervisor.parking import park_lines, ParkedLines
from viam_session.supervisor.process_watch import ProcessExitWatch
from viam_session.supervisor.spawner import DriverSpawner
from viam_session.supervisor.status import TreeStatus
from viam_session.supervisor.tree import load_robot_description

__all__ = ['LifecycleSupervisor', 'PART_EVENTS_QOS', 'main']

PART_EVENTS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
CONFIGURE = Transition.TRANSITION_CONFIGURE
ACTIVATE = Transition.TRANSITION_ACTIVATE
DEACTIVATE = Transition.TRANSITION_DEACTIVATE
CLEANUP = Transition.TRANSITION_CLEANUP
ERROR_LOG_LEVEL = 40
EXIT_CALL_TIMEOUT_S = 2.0


def _logger_name(fqn: str) -> str:
    return fqn.strip('/').replace('/', '.')


class LifecycleSupervisor(Node):
    """Start, stop and watch the managed nodes of a robot description (module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('lifecycle_supervisor', **kwargs)
        path = declare_string(self, 'robot_description', '',
                              'Path of the robot description YAML (parts tree).')
        if not path:
            raise ValueError('parameter robot_description (a YAML file) is required')
        self._spawn = declare_bool(
            self, 'spawn_nodes', False, "Start each node of this host's parts as a driver "
            'process (name, namespace and parameters from the description).')
        self._timeout_s = declare_float(
            self, 'transition_timeout_s', 10.0, 'How long one node may take to be discovered '
            'and to complete one lifecycle transition.', low=0.1, high=600.0)
        self._session_manager = declare_string(
            self, 'session_manager', '', 'Name of the session manager whose '
            '~/close_all_sessions ends the ordered shutdown (a relative name is in this '
            "node's namespace); empty: none.")
        if self._session_manager and not self._session_manager.startswith('/'):
            self._session_manager = self.resolve_service_name(self._session_manager,
                                                              only_expand=True)
        self._default_lease_s = declare_float(
            self, 'default_liveliness_lease_s', 1.0, 'Liveliness lease of nodes whose '
            'description gives none.', low=0.01, high=3600.0)
        self._host = declare_string(
            self, 'host', 'localhost', 'The host this supervisor runs on: it spawns and parks '
            'only the nodes of parts on this host.')
        autostart = declare_bool(self, 'autostart', False, 'Start the tree up once running.')
        self._connectivity_policy = declare_string(
            self, 'connectivity_loss_policy', 'stop', 'What a robot-side connectivity loss '
            "(the session manager's ~/connected) does beyond the manager closing remote "
            "sessions: 'stop' nothing more (their actuators stop); 'shutdown' the whole tree, "
            'in the ordered shutdown; it stays down until ~/startup.',
            choices=('stop', 'shutdown'))
        if self._connectivity_policy == 'shutdown' and not self._session_manager:
            raise ValueError("connectivity_loss_policy 'shutdown' needs session_manager (the "
                             'node whose ~/connected reports connectivity)')
        # The description's names are the robot's: under this node's namespace.
        self._tree = load_robot_description(path, namespace=self.get_namespace())

        self._group = ReentrantCallbackGroup()
        self._status = TreeStatus(self._tree)
        self._links: Dict[str, LifecycleLink] = {}
        self._last_error: Dict[str, str] = {}
        self._parked: Dict[str, ParkedLines] = {}
        self._held_down: Dict[str, List[str]] = {}
        self._recovering: Set[str] = set()
        self._returning: Set[str] = set()    # came back by themselves, not active yet
        self._operation: Optional[str] = None
        self._started = False
        self._stopping = False
        self._closed = False
        self._exiting = False
        self._exit_wait_over = threading.Event()
        self._alive_readers: List[Subscription] = []
        for fqn in self._tree.nodes:
            self._links[fqn] = LifecycleLink(self, fqn, self._group)
            self._alive_readers.append(self.create_subscription(
                Empty, f'{fqn}/alive', lambda _: None, alive_qos(self._lease_s(fqn)),
                event_callbacks=SubscriptionEventCallbacks(
                    liveliness=partial(self._on_liveliness, fqn),
                    incompatible_qos=partial(self._on_incompatible, fqn)),
                callback_group=self._group))
            self.create_subscription(TransitionEvent, f'{fqn}/transition_event',
                                     partial(self._on_transition, fqn), 10)
        self._resources = ExternalResources(self, self._tree.resources.values(), self._group)
        self.create_subscription(Log, '/rosout', self._on_log, 100)
        if self._connectivity_policy == 'shutdown':
            self.create_subscription(Bool, f'{self._session_manager}/connected',
                                     self._on_connected, CONNECTED_QOS)
        self._part_events = self.create_publisher(String, '~/part_events', PART_EVENTS_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_service(Trigger, '~/startup', self._on_startup, callback_group=self._group)
        self.create_service(Trigger, '~/shutdown', self._on_shutdown,
                            callback_group=self._group)
        self.create_service(Trigger, '~/get_state', self._on_get_state,
                            callback_group=self._group)
        self.create_timer(1.0, self._publish_diagnostics)

        self._spawner = DriverSpawner(command_source=self._session_manager)
        self._exits: Deque[Tuple[str, int]] = deque()
        self._exits_posted = self.create_guard_condition(self._on_process_exits,
                                                         callback_group=self._group)
        self._exit_watch = ProcessExitWatch(self._post_process_exit)
        if self._spawn:
            for fqn, node in self._tree.nodes.items():
                if self._local(fqn) and self._spawner.can_spawn(node):
                    self._start_process(fqn)
        if autostart:
            self._autostart = self.create_timer(0.0, self._on_autostart,
                                                callback_group=self._group)
        self.get_logger().info(
            f'robot {self._tree.name!r}: {len(self._tree.parts)} part(s), '
            f'{len(self._tree.nodes)} node(s) in {len(self._tree.startup_waves())} wave(s); '
            f'{len(self._spawner.processes)} driver process(es) started')

    # --- services ------------------------------------------------------------------------------

    async def _on_startup(self, request: Trigger.Request,
                          response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = await self._exclusive('startup', self._startup())
        return response

    async def _on_shutdown(self, request: Trigger.Request,
                           response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = await self._exclusive('shutdown', self._shutdown())
        return response

    async def _on_get_state(self, request: Trigger.Request,
                            response: Trigger.Response) -> Trigger.Response:
        fqns = [fqn for fqn, s in self._status.nodes.items() if s.alive is not False]
        states = await self._parallel([self._links[fqn].state(3.0) for fqn in fqns])
        for fqn, state in zip(fqns, states):
            if state is not None:
                self._status.nodes[fqn].state = state
        self._status.allow_rest(self._may_rest())
        listing = self._status.listing()
        listing['operation'] = self._operation or ''
        listing['started'] = self._started
        response.success = not self._status.not_active()
        response.message = json.dumps(listing)
        return response

    async def _exclusive(self, name: str, work: Awaitable[Tuple[bool, str]]) -> Tuple[bool, str]:
        if self._operation is not None:
            work.close()
            return False, f'busy: {self._operation} in progress'
        self._operation = name
        try:
            success, message = await work
        finally:
            self._operation = None
        if success:    # one severity per call site (rclpy refuses a change between calls)
            self.get_logger().info(f'{name}: {message}')
        else:
            self.get_logger().error(f'{name}: {message}')
        self._publish_diagnostics()
        return success, message

    def _on_autostart(self) -> None:
        self.destroy_timer(self._autostart)
        self.executor.create_task(self._exclusive('startup', self._startup()))

    # --- startup -------------------------------------------------------------------------------

    async def _startup(self) -> Tuple[bool, str]:
        self._stopping = False
        activated: List[List[str]] = []
        for wave in self._tree.startup_waves():
            for transition in (CONFIGURE, ACTIVATE):
                results = await self._parallel([self._raise(fqn, transition) for fqn in wave])
                failed = [(fqn, message) for fqn, (ok, message) in zip(wave, results) if not ok]
                if transition == ACTIVATE:
                    activated.append([fqn for fqn in wave if self._status.nodes[fqn].state
                                      == 'active'])
                if failed:
                    for started in reversed(activated):
                        await self._parallel([self._lower(fqn, DEACTIVATE) for fqn in started])
                    self._started = False
                    kept = [fqn for group in activated for fqn in group]
                    return False, ('startup stopped: ' + '; '.join(
                        f'{fqn} failed to {message}' for fqn, message in failed)
                        + f'; deactivated again: {kept or "none"}')
        self._started = True
        for budget in self._status.budgets.values():
            budget.reset()
        return True, f'{len(self._tree.nodes)} node(s) active'

    async def _raise(self, fqn: str, transition: int) -> Tuple[bool, str]:
        """Bring `fqn` to inactive (configure) or active (activate) if it is not there yet."""
        label = 'configure' if transition == CONFIGURE else 'activate'
        if self._status.nodes[fqn].alive is False:
            # A loaded machine makes nodes late as well as dead: one that comes back within
            # the transition timeout is started like the others.
            await self._wait_alive(fqn, self._timeout_s)
        if self._status.nodes[fqn].alive is False:
            return False, f'{label}: the node is dead ({self._status.nodes[fqn].error})'
        state = await self._links[fqn].state(self._timeout_s)
        if state is None:
            return False, f'{label}: {self._unreachable(fqn)}'
        wanted = 'inactive' if transition == CONFIGURE else 'active'
        if state == wanted or state == 'active':
            self._status.set_state(fqn, state)
            return True, state
        if state not in ('unconfigured', 'inactive'):
            return False, f'{label}: the node is {state}' + (
                '; restart its process' if state == 'finalized' else '')
        steps = [CONFIGURE, ACTIVATE] if state == 'unconfigured' else [ACTIVATE]
        for step in steps[:1] if transition == CONFIGURE else steps:
            self._last_error.pop(_logger_name(fqn), None)
            ok, message = await self._links[fqn].transition(step, self._timeout_s)
            if not ok:
                said = self._last_error.get(_logger_name(fqn))
                message += f' (node said: {said})' if said else ''
                self._status.set_state(fqn, self._status.nodes[fqn].state, message)
                return False, message
            self._status.set_state(fqn, message)
        return True, wanted

    def _unreachable(self, fqn: str) -> str:
        process = self._spawner.processes.get(fqn)
        if process is not None and process.poll() is not None:
            return f'its process exited with code {process.returncode}'
        return f'lifecycle services not reachable within {self._timeout_s:g} s'

    # --- shutdown ------------------------------------------------------------------------------

    async def _shutdown(self) -> Tuple[bool, str]:
        self._stopping = True
        self._started = False
        problems: List[str] = []
        for step in self._tree.shutdown_plan():
            results = await self._parallel([self._take_down(fqn) for fqn in step.nodes]
                                           + [self._stop_resource(fqn) for fqn in step.resources])
            failed = {fqn: message for fqn, (ok, message)
                      in zip(step.nodes + step.resources, results) if not ok}
            problems.extend(f'{fqn}: {message}' for fqn, message in failed.items())
            for part in step.parts_down:
                members = self._tree.parts[part].nodes + self._tree.parts[part].resources
                left = [fqn for fqn in members if fqn in failed]
                self._part_event('part_down', part=part, problems=left)
                self.get_logger().info(f'part {part} down' + (
                    f' (could not stop {left})' if left else ''))
        closed = await self._close_sessions()
        if closed is not None:
            problems.append(closed)
        if problems:
            return False, 'shutdown done with problems: ' + '; '.join(problems)
        return True, f'every part down{"; sessions closed" if self._session_manager else ""}'

    async def _take_down(self, fqn: str) -> Tuple[bool, str]:
        """Deactivate, then clean up `fqn`; a dead node counts as down (its lines parked)."""
        if self._status.nodes[fqn].alive is False:
            return True, 'dead'
        state = await self._unless_dead(fqn, self._links[fqn].state(self._timeout_s))
        if self._status.nodes[fqn].alive is False:
            return True, 'dead'
        if state is None:
            return False, self._unreachable(fqn)
        for transition, source in ((DEACTIVATE, 'active'), (CLEANUP, 'inactive')):
            if state == source:
                result = await self._unless_dead(
                    fqn, self._links[fqn].transition(transition, self._timeout_s))
                if self._status.nodes[fqn].alive is False:
                    return True, 'dead'
                ok, state = result
                if not ok:
                    return False, state
                self._status.set_state(fqn, state)
        return True, state

    async def _unless_dead(self, fqn: str, work: Awaitable[Any]) -> Any:
        """
        Await `work`, or give up as soon as `fqn` is dead: a node that exits will not answer.

        When launch stops every process at once, the nodes exit while the ordered shutdown
        waits on them; their liveliness loss ends each wait instead of its timeout.
        """
        task = self.executor.create_task(work)
        while not await bounded(self, task, 0.05, self._group):
            if self._status.nodes[fqn].alive is False:
                return None
        return task.result()

    async def _stop_resource(self, fqn: str) -> Tuple[bool, str]:
        result = await self._resources.stop(fqn)
        return result.success, result.message

    async def _lower(self, fqn: str, transition: int) -> Tuple[bool, str]:
        """Deactivate `fqn` if it is active."""
        if self._status.nodes[fqn].alive is False:
            return True, 'dead'
        state = await self._links[fqn].state(self._timeout_s)
        if state != 'active':
            return state is not None, state or 'unreachable'
        ok, message = await self._links[fqn].transition(transition, self._timeout_s)
        if ok:
            self._status.set_state(fqn, message)
        return ok, message

    async def _close_sessions(self) -> Optional[str]:
        """Ask the session manager to close every session; return a problem or None."""
        if not self._session_manager:
            return None
        if not hasattr(self, '_close_client'):
            self._close_client = self.create_client(
                Trigger, f'{self._session_manager}/close_all_sessions',
                callback_group=self._group)
        client = self._close_client
        waited = 0.0
        while not client.service_is_ready():
            if self._exiting and not self._manager_present():
                return self._manager_left('before the call')
            if waited > self._timeout_s:
                return f'{client.srv_name} not available'
            await sleep(self, 0.02, self._group)
            waited += 0.02
        future = client.call_async(Trigger.Request())
        waited = 0.0
        while not await bounded(self, future, 0.05, self._group):
            # A manager that exits meanwhile (launch stops every process at once) closes its
            # sessions itself; its server leaving the graph ends the wait.
            waited += 0.05
            if not client.service_is_ready():
                if self._exiting:
                    return self._manager_left('before answering')
                return f'{self._session_manager} left before answering'
            if waited > self._timeout_s:
                return f'{client.srv_name} did not answer within {self._timeout_s:g} s'
        self._part_event('sessions_closed', part=self._tree.primary.name,
                         message=future.result().message)
        self.get_logger().info(f'client sessions closed: {future.result().message}')
        return None if future.result().success else future.result().message

    def _manager_present(self) -> bool:
        namespace, _, name = self._session_manager.rpartition('/')
        return (name, namespace or '/') in self.get_node_names_and_namespaces()

    def _manager_left(self, when: str) -> None:
        """
        Note the session manager gone while everything exits: not a problem.

        It leaves the closing to this shutdown while it has sessions open (bounded), and
        closes what is left on its way out, so its leaving means its sessions are closed.
        """
        self._part_event('sessions_closed', part=self._tree.primary.name,
                         message=f'{self._session_manager} left {when}')
        self.get_logger().info(f'client sessions closed: {self._session_manager} left {when}, '
                               'closing what it had itself')
        return None

    def close(self) -> None:
        """Run the ordered shutdown (from another thread), let go of the nodes, stop processes."""
        if self._closed:
            return
        self._exiting = True
        executor = self.executor
        if executor is not None:
            # On SIGINT launch gives a process 5 s, then 5 s after SIGTERM: a node that is
            # there answers in milliseconds, so exiting waits on no single call longer than this.
            self._timeout_s = min(self._timeout_s, EXIT_CALL_TIMEOUT_S)
            task = executor.create_task(self._exclusive_shutdown)
            task.add_done_callback(lambda _: self._exit_wait_over.set())
            limit = self._timeout_s * (2 * len(self._tree.shutdown_plan()) + 2)
            if not self._exit_wait_over.wait(limit):
                self.get_logger().error(f'ordered shutdown did not finish within {limit:g} s')
            elif not task.done():
                task.cancel()
                self.get_logger().warning('ordered shutdown cut short by SIGTERM')
        self._closed = True
        self._let_go(executor)
        self._exit_watch.close()
        self._spawner.close()
        for parked in self._parked.values():
            parked.release()
        self._parked.clear()

    def _let_go(self, executor: Optional[Executor]) -> None:
        """
        Destroy the `<node>/alive` readers: the drivers waiting for this exit leave now.

        On the executor's thread: destroyed from another one while it builds its wait set,
        a reader's liveliness event is an invalid handle to it, and the executor fails.
        """
        def destroy() -> None:
            for reader in self._alive_readers:
                self.destroy_subscription(reader)

        if executor is None:
            destroy()
            return
        done = threading.Event()
        executor.create_task(destroy).add_done_callback(lambda _: done.set())
        if not done.wait(EXIT_CALL_TIMEOUT_S):
            self.get_logger().warning('the executor did not let go of the nodes in time')

    def hurry_exit(self) -> None:
        """Stop waiting for the ordered shutdown: SIGTERM came (signal-safe)."""
        self._exit_wait_over.set()

    async def _exclusive_shutdown(self) -> None:
        self._stopping = True
        while self._operation is not None:     # let a startup in progress finish first
            await sleep(self, 0.05, self._group)
        try:
            await self._exclusive('shutdown', self._shutdown())
        except Exception:  # noqa: B902 - reported; the processes are stopped all the same
            self.get_logger().error(f'ordered shutdown failed: {traceback.format_exc()}')

    def _on_connected(self, connected: Bool) -> None:
        if connected.data or not self._started or self._stopping:
            return
        self.get_logger().error('robot lost connectivity: connectivity_loss_policy is '
                                "'shutdown': ordered shutdown of the whole tree")
        self._part_event('connectivity_lost', part=self._tree.primary.name, policy='shutdown')
        self.executor.create_task(self._exclusive_shutdown)

    # --- liveliness ----------------------------------------------------------------------------

    def _on_liveliness(self, fqn: str, info: QoSLivelinessChangedInfo) -> None:
        if self._closed:
            return
        if info.alive_count_change > 0 and info.alive_count > 0:
            was_dead = self._status.nodes[fqn].alive is False
            self._status.set_alive(fqn, True)
            if was_dead:    # a new process, or one that stalled: its state is to be read again
                self._status.nodes[fqn].state = 'unknown'
            self._publish_diagnostics()
            if was_dead and fqn not in self._recovering:
                self.get_logger().info(f'{fqn} is back')
                self.executor.create_task(self._returned(fqn))
        elif info.alive_count == 0 and info.alive_count_change < 0:
            if self._status.nodes[fqn].alive is None:
                # Not seen alive since it was (re)started: the writer lost is the one of the
                # process before, whose exit was handled already.
                return
            self._dead(fqn, 'lost liveliness')

    def _post_process_exit(self, fqn: str, pid: int) -> None:
        """Hand an exit seen by the watch thread to the executor."""
        self._exits.append((fqn, pid))
        self._exits_posted.trigger()

    def _on_process_exits(self) -> None:
        while self._exits:
            fqn, pid = self._exits.popleft()
            process = self._spawner.processes.get(fqn)
            # A respawn in progress handles its own process's failure (it reaps and parks).
            if (self._closed or process is None or process.pid != pid
                    or fqn in self._recovering):
                continue
            self._dead(fqn, f'process exited with code {process.poll()}')

    def _dead(self, fqn: str, reason: str) -> None:
        """Report `fqn` dead and handle it, unless that is done already."""
        if self._status.nodes[fqn].alive is False:
            return     # its process exit, then its liveliness loss: one death
        if self._exiting:
            self._left_during_exit(fqn, reason)
            return
        self._status.set_alive(fqn, False)
        self._status.nodes[fqn].error = reason
        if self._spawner.alive(fqn):
            # Its process runs: late (a loaded machine) or stalled; `_lost` tells them apart.
            self.get_logger().warning(f'{fqn} {reason}; its process still runs')
        elif fqn in self._spawner.processes:
            self.get_logger().error(f'{fqn} {reason}: dead')
        else:   # started by someone else: no process to look at
            self.get_logger().error(f'{fqn} {reason}: dead, or late')
        self._publish_diagnostics()
        self.executor.create_task(self._lost(fqn))

    def _left_during_exit(self, fqn: str, reason: str) -> None:
        """
        Note a node that leaves while everything exits: done, not dead.

        Under `ros2 launch` every process has the signal too; one not taken down yet (its wait
        ran out, or someone else's node) has its lines parked, in case it could not park them.
        """
        state = self._status.nodes[fqn].state
        self._status.set_alive(fqn, False)
        self._status.nodes[fqn].error = f'left during the shutdown, {state}'
        self.get_logger().info(f'{fqn} {reason} during the shutdown, {state}')
        if state not in ('unconfigured', 'finalized'):
            self._park(fqn)
        self._publish_diagnostics()

    def _on_incompatible(self, fqn: str, info: Any) -> None:
        self.get_logger().error(
            f'{fqn}/alive offers an incompatible QoS: its liveliness_lease_s must not exceed '
            f'{self._lease_s(fqn):g} s; it is not watched', throttle_duration_sec=10.0)

    async def _lost(self, fqn: str) -> None:
        """Park, deactivate the dependents, then respawn within the budget."""
        dependents = self._tree.dependents_of(fqn)
        self._recovering.add(fqn)
        try:
            await self._lost_node(fqn, dependents)
        finally:
            self._recovering.discard(fqn)
        if self._status.nodes[fqn].alive:      # came back while being handled
            self.get_logger().warning(f'{fqn} was late, not dead: bringing it back')
            await self._returned(fqn)
            return
        if (self._started and not self._stopping and fqn in self._spawner.processes
                and fqn not in self._recovering):
            await self._respawn(fqn)

    async def _lost_node(self, fqn: str, dependents: List[str]) -> None:
        if fqn not in self._held_down:
            self._held_down[fqn] = [d for d in dependents
                                    if self._status.nodes[d].state == 'active']
        running = fqn in self._spawner.processes and self._spawner.alive(fqn)
        if not running:
            self._reap_and_park(fqn)
        results = await self._parallel([self._lower_dependent(d) for d in dependents])
        stopped = [d for d, (ok, _) in zip(dependents, results) if ok]
        if running:
            # Late, or stalled? One more lease to come back; then, once the tree is started,
            # it is killed, so its lines come free for parking and a new process can claim
            # them. (While processes start, a loaded machine makes late ones: left alone.)
            await self._wait_alive(fqn, self._lease_s(fqn))
            if self._status.nodes[fqn].alive or not self._started:
                return
            self._reap_and_park(fqn)
        self._part_event('node_lost', part=self._tree.nodes[fqn].part, node=fqn,
                         dependents_deactivated=stopped, parked=fqn in self._parked)
        self.get_logger().error(f'{fqn} dead ({self._status.nodes[fqn].error}): dependents '
                                f'deactivated {stopped}'
                                + (', lines parked' if fqn in self._parked else ''))

    async def _lower_dependent(self, fqn: str) -> Tuple[bool, str]:
        """
        Deactivate a dependent of a dead node; stop trying as soon as it is dead too.

        A sub-part's nodes on another host are cut off together: waiting for an unreachable
        dependent would hold the loss report for the transition timeout, and a deactivation
        still pending when the link returns would undo the recovery.
        """
        task = self.executor.create_task(self._lower(fqn, DEACTIVATE))
        while not await bounded(self, task, 0.05, self._group):
            if self._status.nodes[fqn].alive is False:
                task.cancel()
                return True, 'dead'
        return task.result()

    def _reap_and_park(self, fqn: str) -> None:
        if fqn in self._spawner.processes:
            stalled = self._spawner.alive(fqn)
            self._spawner.reap(fqn)
            status = self._status.nodes[fqn]
            code = self._spawner.processes[fqn].returncode
            if stalled:
                status.error += f'; process stalled, killed (exit code {code})'
            elif not status.error.startswith('process exited'):
                status.error += f'; process exit code {code}'
        self._park(fqn)

    async def _wait_alive(self, fqn: str, timeout_s: float) -> None:
        """Wait until `fqn` is alive, `timeout_s` has passed, or its process has exited."""
        waited = 0.0
        process = self._spawner.processes.get(fqn)
        while not self._status.nodes[fqn].alive and waited < timeout_s:
            if process is not None and process.poll() is not None:
                return
            await sleep(self, 0.02, self._group)
            waited += 0.02

    async def _respawn(self, fqn: str) -> None:
        self._recovering.add(fqn)
        try:
            while not self._stopping:
                delay = self._status.budgets[fqn].next_delay()
                if delay is None:
                    self._give_up(fqn)
                    return
                await sleep(self, delay, self._group)
                if self._stopping:
                    return
                self._unpark(fqn)
                self._start_process(fqn)
                if await self._bring_back(fqn):
                    return
                self._spawner.reap(fqn)
                self._park(fqn)
        finally:
            self._recovering.discard(fqn)

    async def _returned(self, fqn: str) -> None:
        """Configure and activate a node that came back by itself, then its dependents."""
        if not self._started or self._stopping:
            return
        # Still active: it was late (a loaded machine), not restarted; nothing to bring back
        # but its dependents, so no attempt is spent.
        state = await self._links[fqn].state(self._timeout_s)
        self._status.nodes[fqn].state = state or 'unknown'
        late = state == 'active'
        if not late and self._status.budgets[fqn].next_delay() is None:
            self._give_up(fqn)
            return
        self._unpark(fqn)
        self._returning.add(fqn)
        try:
            missing = await self._wait_dependencies(fqn)
            if not self._started or self._stopping:
                return
            if missing:
                held = self._held_down.setdefault(missing[0], [])
                if fqn not in held:
                    held.append(fqn)
                self.get_logger().warning(f'{fqn} is back, {missing} not: it follows them')
                return
            await self._bring_back(fqn)
        finally:
            self._returning.discard(fqn)

    async def _wait_dependencies(self, fqn: str) -> List[str]:
        """
        Wait until the nodes `fqn` depends on are active; return those still not (timeout).

        The nodes of a sub-part on another host return together when its link does: each
        waits for the nodes it depends on to be brought back first, so they come back parents
        first, as at startup. One not back in time brings `fqn` back when it is.
        """
        def missing() -> List[str]:
            return [dependency for dependency in self._tree.nodes[fqn].depends_on
                    if dependency in self._returning
                    or self._status.nodes[dependency].state != 'active']

        waited = 0.0
        while missing() and waited < self._timeout_s:
            await sleep(self, 0.02, self._group)
            waited += 0.02
        return missing()

    async def _bring_back(self, fqn: str) -> bool:
        ok, message = await self._raise(fqn, ACTIVATE)
        if not ok:
            self.get_logger().error(f'{fqn}: could not bring it back: {message}')
            return False
        self._status.nodes[fqn].error = ''
        held = self._held_down.pop(fqn, [])
        for dependent in held:
            await self._raise(dependent, ACTIVATE)
        self._part_event('node_recovered', part=self._tree.nodes[fqn].part, node=fqn,
                         dependents_activated=held)
        self.get_logger().info(f'{fqn} back and active; dependents activated again {held}')
        self._publish_diagnostics()
        return True

    def _give_up(self, fqn: str) -> None:
        attempts = self._status.budgets[fqn].attempts
        status = self._status.nodes[fqn]
        status.error = ('dead' if status.alive is False else f'back, {status.state}') + (
            f'; not brought back after {attempts} attempt(s)')
        self.get_logger().error(f'{fqn}: {self._status.nodes[fqn].error}')
        self._part_event('node_given_up', part=self._tree.nodes[fqn].part, node=fqn)
        self._publish_diagnostics()

    # --- parking and processes -----------------------------------------------------------------

    def _park(self, fqn: str) -> None:
        if fqn in self._parked or not self._local(fqn):
            return
        try:
            parked = park_lines(self._tree.nodes[fqn], holder=f'{self.get_fully_qualified_name()}'
                                f' parking {fqn}')
        except LineInUseError as error:
            # Its process holds them: it lives (late or stalled), and keeps them safe itself.
            self.get_logger().warning(f'{fqn}: lines not parked, still held: {error}')
            return
        except (ChipError, ValueError) as error:
            self.get_logger().error(f'{fqn}: could not park its lines: {error}')
            return
        if parked is not None:
            self._parked[fqn] = parked
            self._status.nodes[fqn].parked = True
            self.get_logger().warning(f'{fqn}: lines parked at their safe level')

    def _unpark(self, fqn: str) -> None:
        parked = self._parked.pop(fqn, None)
        if parked is not None:
            parked.release()
            self._status.nodes[fqn].parked = False

    def _start_process(self, fqn: str) -> None:
        process = self._spawner.spawn(self._tree.nodes[fqn], liveliness_lease_s=self._lease_s(fqn))
        self._exit_watch.watch(fqn, process.pid)
        status = self._status.nodes[fqn]
        status.pid, status.alive, status.state = process.pid, None, 'unknown'

    def _local(self, fqn: str) -> bool:
        return self._tree.parts[self._tree.nodes[fqn].part].host == self._host

    def _lease_s(self, fqn: str) -> float:
        lease = self._tree.nodes[fqn].liveliness_lease_s
        return self._default_lease_s if lease is None else lease

    # --- observation ---------------------------------------------------------------------------

    def _on_transition(self, fqn: str, event: TransitionEvent) -> None:
        if self._status.nodes[fqn].alive is not False:
            if self._status.set_state(fqn, STATE_LABELS.get(event.goal_state.id, 'unknown'),
                                      self._status.nodes[fqn].error):
                self._publish_diagnostics()

    def _on_log(self, log: Log) -> None:
        if log.level >= ERROR_LOG_LEVEL:
            self._last_error[log.name] = log.msg

    def _part_event(self, event: str, **fields: Any) -> None:
        self._part_events.publish(String(data=json.dumps(
            {'event': event, 't_ns': time.monotonic_ns(), **fields})))

    def _may_rest(self) -> List[str]:
        """Return the actuators whose inactive state is rest between sessions, not a fault."""
        if not self._started or self._stopping:
            return []
        held = {fqn for dead, dependents in self._held_down.items() for fqn in [dead, *dependents]}
        return [fqn for fqn, node in self._tree.nodes.items()
                if node.driver in ACTUATOR_DRIVERS and fqn not in held]

    def _publish_diagnostics(self) -> None:
        self._status.allow_rest(self._may_rest())
        array = tree_diagnostics(self._status, robot=self._tree.name, host=self._host)
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

    async def _parallel(self, work: List[Awaitable[Any]]) -> List[Any]:
        """Run coroutines as tasks of this node's executor; return their results in order."""
        tasks = [self.executor.create_task(item) for item in work]
        return [await task for task in tasks]


def main(args: Optional[List[str]] = None) -> int:
    """Run the supervisor; on SIGINT/SIGTERM the ordered shutdown runs before it exits."""
    faulthandler.register(signal.SIGUSR1)     # `kill -USR1 <pid>`: every thread's stack
    return run_node(LifecycleSupervisor, args=args, before_shutdown=LifecycleSupervisor.close,
                    on_signal_again=LifecycleSupervisor.hurry_exit)


if __name__ == '__main__':
    sys.exit(main())
