"""
Stopping a robot's own things: lifecycle nodes, stop services and ros2_control controllers.

An external resource (`supervisor.tree.ExternalResource`) is something an existing robot
already has and that the session manager and the supervisor must be able to stop without a
change to its code. One class per kind, with one `stop()` that returns a future of a
`StopResult`:

- `lifecycle_node`: `deactivate` through `<target>/change_state`; a refused deactivate counts
  as stopped when `<target>/get_state` says the node is not active;
- `trigger`: `std_srvs/Trigger` on the service `target`, called once per attempt;
- `set_bool`: `std_srvs/SetBool` on `target` with data false;
- `controller`: `controller_manager_msgs/SwitchController` on
  `<controller_manager>/switch_controller`, deactivating the controller `target`
  (best effort). `controller_manager_msgs` comes with ros2_control; where it is not
  importable, `ExternalResources` refuses such a resource with ValueError.

An attempt is bounded by the resource's `timeout_s` (discovery of the service included); a
failed or silent attempt is logged and retried up to `retries` times; then the result says
what went wrong. Stops run as tasks of the node's executor, so a resource that never
answers delays nothing else. The last problem of each resource is kept for diagnostics.
"""

from dataclasses import dataclass
import importlib
import time
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import CallbackGroup
from rclpy.client import Client
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.task import Future
from std_srvs.srv import SetBool, Trigger

from viam_session.supervisor.lifecycle_link import bounded, sleep, STATE_LABELS
from viam_session.supervisor.tree import ExternalResource

__all__ = ['ControllerStop', 'ExternalResources', 'LifecycleNodeStop', 'ResourceStop',
           'SetBoolStop', 'StopResult', 'TriggerStop', 'controller_support_problem']

# How often an attempt looks again for a service that is not discovered yet.
DISCOVERY_POLL_S = 0.01
CONTROLLER_MESSAGES = 'controller_manager_msgs.srv'


@dataclass(frozen=True)
class StopResult:
    """How stopping one resource ended."""

    name: str
    success: bool
    message: str
    attempts: int
    elapsed_s: float


def controller_support_problem() -> Optional[str]:
    """Return why controller resources cannot be stopped here, or None if they can."""
    try:
        importlib.import_module(CONTROLLER_MESSAGES)
    except ImportError as error:
        return (f'controller resources need controller_manager_msgs (ros2_control), which '
                f'is not importable here ({error})')
    return None


class ResourceStop:
    """Stop one resource: attempts bounded by its timeout, retried; subclasses do one call."""

    def __init__(self, node: Node, resource: ExternalResource, group: CallbackGroup) -> None:
        self.resource = resource
        self._node = node
        self._group = group

    @property
    def budget_s(self) -> float:
        """Return the longest a stop may take: every attempt timing out."""
        return self.resource.timeout_s * (self.resource.retries + 1)

    def stop(self) -> Future:
        """Start stopping (from any thread); return a future of its StopResult."""
        return self._node.executor.create_task(self._stop)

    async def attempt(self) -> Tuple[bool, str]:
        """Make one attempt within the resource's timeout; return (stopped, what happened)."""
        raise NotImplementedError

    async def cannot_act(self, timeout_s: float) -> Optional[str]:
        """Return why a session owning the resource now would own nothing that moves, or None."""
        return None

    async def _stop(self) -> StopResult:
        started = time.monotonic()
        name = self.resource.fully_qualified_name
        tries = self.resource.retries + 1
        problems = []
        for number in range(1, tries + 1):
            ok, message = await self.attempt()
            if ok:
                return StopResult(name, True, message, number, time.monotonic() - started)
            problems.append(message)
            self._node.get_logger().warning(
                f'stopping {self.resource.kind} {name}: attempt {number} of {tries}: {message}')
        return StopResult(name, False, f'not stopped after {tries} attempt(s): '
                          + '; '.join(problems), tries, time.monotonic() - started)

    async def call(self, client: Client, request: Any,
                   timeout_s: Optional[float] = None) -> Tuple[Optional[Any], str]:
        """Call `client` within the timeout; return (response, '') or (None, the problem)."""
        timeout_s = self.resource.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while not client.service_is_ready():
            if time.monotonic() >= deadline:
                return None, f'{client.srv_name} not available within {timeout_s:g} s'
            await sleep(self._node, DISCOVERY_POLL_S, self._group)
        future = client.call_async(request)
        remaining = max(deadline - time.monotonic(), 0.0)
        if not await bounded(self._node, future, remaining, self._group) or (
                future.result() is None):
            client.remove_pending_request(future)
            return None, f'{client.srv_name} did not answer within {timeout_s:g} s'
        return future.result(), ''

    def client(self, service_type: type, name: str) -> Client:
        return self._node.create_client(service_type, name, callback_group=self._group)


class LifecycleNodeStop(ResourceStop):
    """
    Deactivate any lifecycle node through its standard services, if it is active.

    Its state is asked first: `deactivate` is no transition of any other state, and Jazzy's
    rclpy lets such a request raise out of the node's change_state callback, which ends a
    node spun with `rclpy.spin` (someone else's node, stopped already).
    """

    def __init__(self, node: Node, resource: ExternalResource, group: CallbackGroup) -> None:
        super().__init__(node, resource, group)
        self._change_state = self.client(ChangeState, f'{resource.target}/change_state')
        self._get_state = self.client(GetState, f'{resource.target}/get_state')

    async def attempt(self) -> Tuple[bool, str]:
        started = time.monotonic()
        label, problem = await self._state_label()
        if label is None:
            return False, problem
        if label != 'active':
            return True, f'already {label}'
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_DEACTIVATE
        response, problem = await self.call(self._change_state, request, self._left(started))
        if response is None:
            return False, problem
        if response.success:
            return True, 'deactivated'
        label, problem = await self._state_label(self._left(started))
        if label is None:
            return False, f'deactivate refused, and then {problem}'
        if label == 'active':
            return False, 'deactivate refused; the node is still active'
        return True, f'already {label}'

    async def cannot_act(self, timeout_s: float) -> Optional[str]:
        """Refuse an inactive lifecycle node: it does not move, and stopping it does nothing."""
        label, problem = await self._state_label(timeout_s)
        if label is None:
            return f'its state is unknown ({problem})'
        if label != 'active':
            return (f'the lifecycle node {self.resource.target} is {label}, not active: it '
                    'cannot act, and a session may own it only while it can (bring it up '
                    'first)')
        return None

    async def _state_label(self, timeout_s: Optional[float] = None
                           ) -> Tuple[Optional[str], str]:
        state, problem = await self.call(self._get_state, GetState.Request(), timeout_s)
        if state is None:
            return None, problem
        return STATE_LABELS.get(state.current_state.id, 'unknown'), ''

    def _left(self, started: float) -> float:
        return max(self.resource.timeout_s - (time.monotonic() - started), 0.0)


class TriggerStop(ResourceStop):
    """Call a std_srvs/Trigger stop service."""

    def __init__(self, node: Node, resource: ExternalResource, group: CallbackGroup) -> None:
        super().__init__(node, resource, group)
        self._service = self.client(Trigger, resource.target)

    async def attempt(self) -> Tuple[bool, str]:
        response, problem = await self.call(self._service, Trigger.Request())
        if response is None:
            return False, problem
        fallback = 'stopped' if response.success else 'the service said no'
        return response.success, response.message or fallback


class SetBoolStop(ResourceStop):
    """Call a std_srvs/SetBool enable service with data false."""

    def __init__(self, node: Node, resource: ExternalResource, group: CallbackGroup) -> None:
        super().__init__(node, resource, group)
        self._service = self.client(SetBool, resource.target)

    async def attempt(self) -> Tuple[bool, str]:
        response, problem = await self.call(self._service, SetBool.Request(data=False))
        if response is None:
            return False, problem
        fallback = 'set false' if response.success else 'the service said no'
        return response.success, response.message or fallback


class ControllerStop(ResourceStop):
    """Deactivate a ros2_control controller through its controller manager."""

    def __init__(self, node: Node, resource: ExternalResource, group: CallbackGroup) -> None:
        super().__init__(node, resource, group)
        self._switch_type = importlib.import_module(CONTROLLER_MESSAGES).SwitchController
        self._service = self.client(self._switch_type,
                                    f'{resource.controller_manager}/switch_controller')

    async def attempt(self) -> Tuple[bool, str]:
        request = self._switch_type.Request()
        request.deactivate_controllers = [self.resource.target]
        request.strictness = self._switch_type.Request.BEST_EFFORT
        request.timeout = Duration(seconds=self.resource.timeout_s).to_msg()
        response, problem = await self.call(self._service, request)
        if response is None:
            return False, problem
        return response.ok, 'deactivated' if response.ok else 'switch_controller said no'


STOPS = {'lifecycle_node': LifecycleNodeStop, 'trigger': TriggerStop,
         'set_bool': SetBoolStop, 'controller': ControllerStop}


class ExternalResources:
    """The external resources one node stops, by fully qualified name, and their last results."""

    def __init__(self, node: Node, resources: Iterable[ExternalResource],
                 group: CallbackGroup) -> None:
        """Create a stop per resource; raise ValueError naming what cannot be stopped here."""
        resources = list(resources)
        controllers = [r.fully_qualified_name for r in resources if r.kind == 'controller']
        problem = controller_support_problem() if controllers else None
        if problem is not None:
            raise ValueError(f'{problem}; refusing controller resource(s) {controllers}')
        self._node = node
        self._stops: Dict[str, ResourceStop] = {
            r.fully_qualified_name: STOPS[r.kind](node, r, group) for r in resources}
        self._last: Dict[str, StopResult] = {}

    @property
    def names(self) -> Sequence[str]:
        return list(self._stops)

    def __contains__(self, name: object) -> bool:
        return name in self._stops

    def budget_s(self, names: Iterable[str]) -> float:
        """Return the longest stopping these may take (0 if none is external)."""
        return max((self._stops[name].budget_s for name in names if name in self._stops),
                   default=0.0)

    async def cannot_act(self, name: str, timeout_s: float) -> Optional[str]:
        """Return why `name` cannot act now (a lifecycle node not active), or None (bounded)."""
        return await self._stops[name].cannot_act(timeout_s)

    def stop(self, name: str) -> Future:
        """Start stopping `name` (from any thread); return a future of its StopResult."""
        future = self._stops[name].stop()
        future.add_done_callback(self._record)
        return future

    def status(self, name: str) -> DiagnosticStatus:
        """Describe the last stop of each resource; WARN while the last one of any failed."""
        failed = [result.name for result in self._last.values() if not result.success]
        values = []
        for fqn, stop in self._stops.items():
            result = self._last.get(fqn)
            last = 'not stopped yet' if result is None else (
                f'{"stopped" if result.success else "FAILED"}: {result.message} '
                f'({result.attempts} attempt(s), {result.elapsed_s * 1e3:.1f} ms)')
            values.append(KeyValue(key=f'{fqn} ({stop.resource.kind} {stop.resource.target})',
                                   value=last))
        message = (f'{len(self._stops)} external resource(s)'
                   + (f'; last stop failed: {", ".join(failed)}' if failed else ''))
        return DiagnosticStatus(level=DiagnosticStatus.WARN if failed else DiagnosticStatus.OK,
                                name=name, message=message, hardware_id='', values=values)

    def _record(self, future: Future) -> None:
        result = future.result()
        if result is None:
            return
        self._last[result.name] = result
        if result.success:
            self._node.get_logger().info(
                f'{result.name} stopped ({result.message}) in {result.elapsed_s * 1e3:.1f} ms')
        else:
            self._node.get_logger().error(f'{result.name}: {result.message}')
