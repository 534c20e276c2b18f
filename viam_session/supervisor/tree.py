"""
Robot description: a robot as a tree of parts holding managed nodes, validated and ordered.

ROS-free: the lifecycle supervisor node wraps it. A description is YAML (see
`config/robot_example.yaml`)::

    robot:
      name: rover                     # letters, digits, '_'
      primary:                        # the primary part
        name: base                    # part name, unique in the robot
        namespace: /                  # absolute ROS namespace; default: the parent part's
        host: rover-base              # where the part runs; default: the parent part's
        nodes:                        # managed lifecycle nodes of this part
          - name: left_motor          # ROS node name; fully qualified <namespace>/<name>
            driver: dc_motor          # a key of DRIVER_TYPES ('external': any lifecycle node)
            parameters: {pwm_line: 12, direction_line: 16}  # ROS parameters of the node
            depends_on: [motor_board]  # same part by name, another part as /namespace/name
            liveliness_lease_s: 1.0   # optional, > 0; default: the supervisor's
            respawn: {max_attempts: 3, backoff_s: 0.5, within_s: 600}  # optional (*)
        resources:                    # external things to stop, not started or watched
          - name: base_stop           # a ROS name; fully qualified <namespace>/<name>
            kind: trigger             # lifecycle_node | trigger | set_bool | controller
            target: /base/emergency_stop  # node (lifecycle_node), service, or controller name
            controller_manager: /controller_manager  # controller only; this is the default
            timeout_s: 1.0            # optional, > 0: how long one stop attempt may take
            retries: 1                # optional, >= 0: attempts after a failed or silent one
            depends_on: [left_motor]  # nodes or resources, named as for nodes
            stop_with: [left_motor]   # optional: stopped whenever a session stop stops these
        parts: []                     # sub-parts, with the same keys as a part

The primary's defaults are namespace '/' and host 'localhost'; without `respawn` a failed node
is not brought back. (*) At most `max_attempts` attempts to bring a node back within any
`within_s` seconds (default 600), each after a back-off doubling from `backoff_s` (default 1):
a crash loop is given up, a sub-part behind a link that drops now and then is not.
A key whose value is null counts as absent; an unknown key, or a key given twice in one YAML
mapping, is an error (either would otherwise be ignored silently).
Names follow what ROS 2 accepts (letters, digits and '_', not starting with a digit), so
`external` nodes written by others can be managed too.

External resources are what an existing robot already has: any lifecycle node (stopped by a
`deactivate` through its standard lifecycle service), a std_srvs/Trigger service (called),
a std_srvs/SetBool service (called with false), a ros2_control controller (deactivated
through `<controller_manager>/switch_controller`). They share one namespace with nodes (a
resource may not take a node's fully qualified name). The session manager stops those a
session claimed when it is over; the supervisor's ordered shutdown stops each in the step
that its dependencies and its part allow, as if it were a node; nothing starts them.
`stop_with` (actuators or resources, named as for `depends_on`, of any part) says what a
resource is stopped together with: whenever the session manager stops one of them because a
session is over, it stops the resource too, whether a session claimed it or not (a brake
engaged with the base's gate). `depends_on` orders the supervisor's shutdown and says nothing
about that; a resource stopped with itself, directly or through others, is a cycle.

Each driver type names the parameters it cannot run without and those that are GPIO lines. A
line is held by one node: two nodes on the same host may not name the same line of the same
chip (parameters `chip_backend`, default 'sim', and `chip`, default '0', as the drivers have).

Order. A node starts after the nodes it depends on and stops before them (a resource stops
before what it depends on). A part's nodes start before its sub-parts' nodes and stop after
them: a sub-part runs on what its parent part provides and reports to it once it is down, and
the primary, last down, closes client sessions.
Hence a node may not depend on a node of a sub-part of its own part. The two rules make one
partial order: `startup_waves()` follows it, `shutdown_waves()` its reverse; each wave may run
in parallel and each node is in the earliest wave the order allows. `dependents_of()` follows
`depends_on` only: the part rule orders start and stop, it does not make a sub-part need every
node of its parent part, so a dead motor board takes down its motors, not the arm.

`load_robot_description(path)` and `parse_robot_description(data)` return a `PartsTree` or raise
one `RobotDescriptionError` whose `problems` name every offending entry by its place, e.g.
`robot.primary.parts[0].nodes[1] (shoulder): depends_on 'board2' is not a node of part 'arm'`.
"""

from collections import deque
from dataclasses import dataclass, field, replace
import math
import os
from pathlib import Path
import re
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from viam_session.chips import CHIP_BACKENDS
from viam_session.driver_parameters import DRIVER_PARAMETERS, ParameterSpec
import yaml

__all__ = ['DRIVER_TYPES', 'DriverType', 'ExternalResource', 'ManagedNode', 'Part',
           'PartsTree', 'RESOURCE_KINDS', 'Respawn', 'RobotDescriptionError', 'ShutdownStep',
           'load_robot_description', 'parse_robot_description']

DEFAULT_HOST = 'localhost'
DEFAULT_CHIP_BACKEND = 'sim'
DEFAULT_CHIP = '0'
MAX_GPIO_LINE = 1023
NO_LINE = -1    # what the drivers take for an optional line that is not wired
NODE_NAME_MAX_LENGTH = 255    # rmw's limits
NAMESPACE_MAX_LENGTH = 245

_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
_ROBOT_KEYS = ('name', 'primary')
_PART_KEYS = ('name', 'namespace', 'host', 'nodes', 'resources', 'parts')
_NODE_KEYS = ('name', 'driver', 'parameters', 'depends_on', 'liveliness_lease_s', 'respawn')
_RESPAWN_KEYS = ('max_attempts', 'backoff_s', 'within_s')
_RESOURCE_KEYS = ('name', 'kind', 'target', 'controller_manager', 'timeout_s', 'retries',
                  'depends_on', 'stop_with')
RESOURCE_KINDS = ('lifecycle_node', 'trigger', 'set_bool', 'controller')
DEFAULT_CONTROLLER_MANAGER = '/controller_manager'
DEFAULT_RESOURCE_TIMEOUT_S = 1.0
DEFAULT_RESOURCE_RETRIES = 1

_Vertex = Union[str, Tuple[str, str]]     # a node, or a part's barrier (see Ordering below)
_Needs = Mapping[_Vertex, Sequence[_Vertex]]


class RobotDescriptionError(ValueError):
    """A robot description that cannot be used; `problems` names each offending entry."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        """Say what is wrong with the description read from `source`."""
        self.source = source
        self.problems = tuple(problems)
        count = '1 problem' if len(problems) == 1 else f'{len(problems)} problems'
        super().__init__(f'invalid robot description {source} ({count}):'
                         + ''.join(f'\n  - {problem}' for problem in problems))


@dataclass(frozen=True, kw_only=True)
class DriverType:
    """
    A kind of managed node: parameters it cannot run without, parameters naming GPIO lines.

    `parameters` are all it declares, from `driver_parameters` (the table the driver declares
    them from); empty for 'external', whose parameters are not checked.
    """

    name: str
    required: Tuple[str, ...] = ()
    gpio_lines: Tuple[str, ...] = ()
    parameters: Mapping[str, ParameterSpec] = field(init=False)

    def __post_init__(self) -> None:
        """Take the parameters from the driver's own table."""
        object.__setattr__(self, 'parameters', DRIVER_PARAMETERS.get(self.name, {}))


DRIVER_TYPES: Mapping[str, DriverType] = MappingProxyType({driver.name: driver for driver in (
    DriverType(name='board', gpio_lines=('enable_line',)),
    DriverType(name='dc_motor', required=('pwm_line', 'direction_line'),
               gpio_lines=('pwm_line', 'direction_line', 'enable_line')),
    DriverType(name='digital_input', required=('line',), gpio_lines=('line',)),
    DriverType(name='encoder', required=('a_line', 'b_line'), gpio_lines=('a_line', 'b_line')),
    DriverType(name='gpio_output', required=('line',), gpio_lines=('line',)),
    DriverType(name='servo', required=('pwm_line',), gpio_lines=('pwm_line',)),
    DriverType(name='session_gate'),
    DriverType(name='external'),
)})


@dataclass(frozen=True, kw_only=True)
class Respawn:
    """How many times, and how far apart, the supervisor tries to bring a failed node back."""

    max_attempts: int = 0
    backoff_s: float = 1.0
    within_s: float = 600.0


@dataclass(frozen=True, kw_only=True)
class ManagedNode:
    """A lifecycle node the supervisor manages; `depends_on` holds fully qualified names."""

    name: str
    namespace: str
    part: str
    driver: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    depends_on: Tuple[str, ...] = ()
    liveliness_lease_s: Optional[float] = None
    respawn: Respawn = Respawn()

    @property
    def fully_qualified_name(self) -> str:
        return _join(self.namespace, self.name)


@dataclass(frozen=True, kw_only=True)
class ExternalResource:
    """Something the robot already has, stopped as `kind` says (module docstring)."""

    name: str
    namespace: str
    part: str
    kind: str
    target: str
    controller_manager: str = DEFAULT_CONTROLLER_MANAGER
    timeout_s: float = DEFAULT_RESOURCE_TIMEOUT_S
    retries: int = DEFAULT_RESOURCE_RETRIES
    depends_on: Tuple[str, ...] = ()
    stop_with: Tuple[str, ...] = ()     # fully qualified names (module docstring)

    @property
    def fully_qualified_name(self) -> str:
        return _join(self.namespace, self.name)


@dataclass(frozen=True, kw_only=True)
class Part:
    """A part of the robot: its nodes and resources (fully qualified) and its sub-parts."""

    name: str
    namespace: str
    host: str
    parent: Optional[str]
    nodes: Tuple[str, ...] = ()
    parts: Tuple[str, ...] = ()
    resources: Tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ShutdownStep:
    """Nodes and resources to stop in parallel, then the parts that are down after them."""

    nodes: Tuple[str, ...]
    parts_down: Tuple[str, ...]
    resources: Tuple[str, ...] = ()


class PartsTree:
    """A valid robot: its parts, their nodes, and the orders to start and stop them in."""

    def __init__(self, *, name: str, parts: Sequence[Part], nodes: Sequence[ManagedNode],
                 resources: Sequence[ExternalResource] = ()):
        """
        Order a robot's parts (primary first, then sub-parts), nodes and resources.

        Build it with `parse_robot_description`, which checks everything first; here a
        dependency cycle raises ValueError.
        """
        self._name = name
        self._parts = MappingProxyType({part.name: part for part in parts})
        self._nodes = MappingProxyType({node.fully_qualified_name: node for node in nodes})
        self._resources = MappingProxyType(
            {resource.fully_qualified_name: resource for resource in resources})
        self._primary = parts[0]
        needs = _startup_needs([(part.name, part.parent, part.nodes) for part in parts],
                               [(fqn, node.part, node.depends_on)
                                for fqn, node in self._nodes.items()])
        self._startup = _waves(needs)
        # Resources are stopped, never started: they take part in the shutdown order only.
        stop_needs = _startup_needs(
            [(part.name, part.parent, part.nodes + part.resources) for part in parts],
            [(fqn, member.part, member.depends_on)
             for fqn, member in [*self._nodes.items(), *self._resources.items()]])
        self._shutdown = _waves(_reverse(stop_needs))
        self._dependents: Dict[str, List[str]] = {fqn: [] for fqn in self._nodes}
        for fqn, node in self._nodes.items():
            for dependency in node.depends_on:
                self._dependents[dependency].append(fqn)

    @property
    def name(self) -> str:
        return self._name

    @property
    def primary(self) -> Part:
        return self._primary

    @property
    def parts(self) -> Mapping[str, Part]:
        """Return the parts by name, the primary first, each before its sub-parts."""
        return self._parts

    @property
    def nodes(self) -> Mapping[str, ManagedNode]:
        """Return the nodes by fully qualified name, in description order."""
        return self._nodes

    @property
    def resources(self) -> Mapping[str, ExternalResource]:
        """Return the external resources by fully qualified name, in description order."""
        return self._resources

    def startup_waves(self) -> List[List[str]]:
        """Return the nodes to configure and activate, wave after wave, parents first."""
        return [list(wave) for wave in self._startup]

    def shutdown_waves(self) -> List[List[str]]:
        """Return the nodes to deactivate and shut down, wave after wave, children first."""
        waves = [[fqn for fqn in wave if fqn in self._nodes] for wave in self._shutdown]
        return [wave for wave in waves if wave]

    def shutdown_plan(self) -> List[ShutdownStep]:
        """Return the shutdown waves, each with the parts it leaves down; the primary last."""
        wave_of = {fqn: index for index, wave in enumerate(self._shutdown) for fqn in wave}
        down_after: Dict[str, int] = {}
        post_order = self._parts_post_order()
        for name in post_order:
            part = self._parts[name]
            down_after[name] = max([wave_of[fqn] for fqn in part.nodes + part.resources]
                                   + [down_after[sub_part] for sub_part in part.parts] + [0])
        waves = self._shutdown or ((),)
        return [ShutdownStep(nodes=tuple(fqn for fqn in wave if fqn in self._nodes),
                             resources=tuple(fqn for fqn in wave if fqn in self._resources),
                             parts_down=tuple(name for name in post_order
                                              if down_after[name] == index))
                for index, wave in enumerate(waves)]

    def dependents_of(self, node: str) -> List[str]:
        """Return the nodes that depend on `node`, directly or not, in startup order."""
        if node not in self._nodes:
            raise KeyError(f'{node!r} is not a node of robot {self._name!r}')
        found = set()
        pending = [node]
        while pending:
            for dependent in self._dependents[pending.pop()]:
                if dependent not in found:
                    found.add(dependent)
                    pending.append(dependent)
        return [fqn for wave in self._startup for fqn in wave if fqn in found]

    def _parts_post_order(self) -> List[str]:
        order = []
        pending = [self._primary.name]
        while pending:
            name = pending.pop()
            order.append(name)
            pending.extend(self._parts[name].parts)
        return order[::-1]


def load_robot_description(path: Union[str, 'os.PathLike[str]'], *,
                           namespace: str = '/') -> PartsTree:
    """
    Read a YAML robot description; raise RobotDescriptionError naming the file and line.

    `namespace` is the robot's (see `parse_robot_description`).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as error:
        raise RobotDescriptionError(source, [f'cannot read the file: {error}']) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f'line {mark.line + 1}, column {mark.column + 1}: ' if mark else ''
        raise RobotDescriptionError(source, [f'{where}{error.problem} (YAML)']) from None
    except yaml.YAMLError as error:
        raise RobotDescriptionError(source, [f'not YAML: {error}']) from None
    return parse_robot_description(data, source=source, namespace=namespace)


def parse_robot_description(data: Mapping[str, Any], *, source: str = '<data>',
                            namespace: str = '/') -> PartsTree:
    """
    Validate a robot description; raise one RobotDescriptionError listing every problem.

    `namespace` is the robot's own ROS namespace (absolute): the names in a description are
    the robot's, so every one of them, node and part namespaces, `depends_on` names, resource
    targets and controller managers, is taken under it ('/arm' in the description of a robot
    in '/r1' is '/r1/arm').
    """
    if not _is_absolute_name(namespace) and namespace != '/':
        raise RobotDescriptionError(source, [
            f'robot namespace {namespace!r} is not an absolute ROS namespace such as /r1'])
    parser = _Parser(namespace)
    name = parser.parse(data)
    if parser.problems:
        raise RobotDescriptionError(source, parser.problems)
    return PartsTree(name=name, parts=parser.parts, nodes=list(parser.nodes.values()),
                     resources=list(parser.resources.values()))


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(':merge'):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    'while constructing a mapping', node.start_mark,
                    f'duplicate key {key_node.value!r}', key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class _PartPlace:
    """Where nodes being parsed live: their part's entry, name, namespace and host."""

    entry: str
    name: str
    namespace: str
    host: str


class _Parser:
    """Build parts and nodes from a description, collecting every problem on the way."""

    def __init__(self, namespace: str) -> None:
        self._robot_namespace = namespace
        self.problems: List[str] = []
        self.parts: List[Part] = []
        self.nodes: Dict[str, ManagedNode] = {}
        self.resources: Dict[str, ExternalResource] = {}
        self._node_labels: Dict[str, str] = {}      # fully qualified name -> label
        self._part_labels: Dict[str, str] = {}      # part entry -> label
        self._node_place: Dict[str, _PartPlace] = {}
        self._resource_place: Dict[str, _PartPlace] = {}
        self._references: Dict[str, List[str]] = {}
        self._stop_with: Dict[str, List[str]] = {}  # resource -> stop_with as written
        self._parent_entry: Dict[str, Optional[str]] = {}
        self._part_nodes: Dict[str, List[str]] = {}
        self._part_resources: Dict[str, List[str]] = {}
        self._part_entry_by_name: Dict[str, str] = {}
        self._lines: Dict[Tuple[str, str, str, int], str] = {}

    def parse(self, data: Any) -> str:
        """Parse everything; return the robot's name (meaningful only without problems)."""
        top = self._fields(data, 'description', ('robot',), required=('robot',))
        if not top or 'robot' not in top:
            return ''
        robot = self._fields(top['robot'], 'robot', _ROBOT_KEYS, required=_ROBOT_KEYS)
        if robot is None:
            return ''
        self._check_name(_label('robot', robot.get('name')), 'name', robot.get('name'))
        if 'primary' in robot:
            self._part(robot['primary'], 'robot.primary', None,
                       (self._robot_namespace, DEFAULT_HOST))
        self._resolve_references()
        self._check_order()
        self._resolve_stop_with()
        self._check_stop_with_cycles()
        return robot.get('name', '')

    def _problem(self, label: str, message: str) -> None:
        self.problems.append(f'{label}: {message}')

    def _fields(self, value: Any, entry: str, allowed: Tuple[str, ...], *,
                required: Tuple[str, ...] = ()) -> Optional[Dict[str, Any]]:
        """Return the entry's keys without nulls, or None if it is not a mapping."""
        if not isinstance(value, Mapping):
            self._problem(entry, f'must be a mapping, got {_describe(value)}')
            return None
        label = _label(entry, value.get('name'))
        for key in value:
            if key not in allowed:
                self._problem(label, f'unknown key {key!r} (expected: {", ".join(allowed)})')
        fields = {key: item for key, item in value.items() if item is not None}
        for key in required:
            if key not in fields:
                self._problem(label, f'missing {key!r}')
        return fields

    def _list(self, fields: Mapping[str, Any], key: str, label: str) -> List[Any]:
        value = fields.get(key, [])
        if not isinstance(value, list):
            self._problem(label, f'{key} must be a list, got {_describe(value)}')
            return []
        return value

    def _check_name(self, label: str, key: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not _NAME.match(value):
            self._problem(label, f"{key} must be a ROS name (letters, digits and '_', not "
                          f'starting with a digit), got {_describe(value)}')
        elif len(value) > NODE_NAME_MAX_LENGTH:
            self._problem(label, f'{key} is longer than {NODE_NAME_MAX_LENGTH} characters')

    def _part(self, value: Any, entry: str, parent: Optional[_PartPlace],
              inherited: Tuple[str, str]) -> Optional[str]:
        fields = self._fields(value, entry, _PART_KEYS, required=('name',))
        if fields is None:
            return None
        name = fields.get('name')
        label = _label(entry, name)
        self._check_name(label, 'name', name)
        namespace, host = inherited
        place = _PartPlace(
            entry=entry, name=name if isinstance(name, str) else '',
            namespace=self._in_robot(self._namespace(label, fields['namespace']))
            if 'namespace' in fields else namespace,
            host=self._host(label, fields['host']) if 'host' in fields else host)
        self._register_part(place, label, parent)
        index = len(self.parts)
        node_names = [self._node(item, f'{entry}.nodes[{number}]', place)
                      for number, item in enumerate(self._list(fields, 'nodes', label))]
        resource_names = [
            self._resource(item, f'{entry}.resources[{number}]', place)
            for number, item in enumerate(self._list(fields, 'resources', label))]
        part_names = [self._part(item, f'{entry}.parts[{number}]', place,
                                 (place.namespace, place.host))
                      for number, item in enumerate(self._list(fields, 'parts', label))]
        self.parts.insert(index, Part(
            name=place.name, namespace=place.namespace, host=place.host,
            parent=parent.name if parent else None,
            nodes=tuple(fqn for fqn in node_names if fqn is not None),
            resources=tuple(fqn for fqn in resource_names if fqn is not None),
            parts=tuple(part for part in part_names if part is not None)))
        return place.name

    def _register_part(self, place: _PartPlace, label: str,
                       parent: Optional[_PartPlace]) -> None:
        self._part_labels[place.entry] = label
        self._parent_entry[place.entry] = parent.entry if parent else None
        self._part_nodes[place.entry] = []
        self._part_resources[place.entry] = []
        if place.name in self._part_entry_by_name:
            self._problem(label, f'part name {place.name!r} is already used by '
                          f'{self._part_labels[self._part_entry_by_name[place.name]]}')
        elif place.name:
            self._part_entry_by_name[place.name] = place.entry

    def _namespace(self, label: str, value: Any) -> str:
        if not isinstance(value, str):
            self._problem(label, f'namespace must be a string, got {_describe(value)}')
            return '/'
        tokens = value.split('/')
        if (value != '/' and (tokens[0] or not all(_NAME.match(token) for token in tokens[1:]))
                or not value or len(value) > NAMESPACE_MAX_LENGTH):
            self._problem(label, f'namespace {value!r} is not an absolute ROS namespace such as '
                          f"'/' or '/arm/gripper' (names of letters, digits and '_', not starting "
                          f'with a digit, at most {NAMESPACE_MAX_LENGTH} characters)')
        return value

    def _in_robot(self, name: str) -> str:
        """Return an absolute name of the description as a name under the robot's namespace."""
        if self._robot_namespace == '/':
            return name
        return self._robot_namespace + (name if name != '/' else '')

    def _host(self, label: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            self._problem(label, f'host must be a non-empty string, got {_describe(value)}')
            return DEFAULT_HOST
        return value

    def _node(self, value: Any, entry: str, place: _PartPlace) -> Optional[str]:
        fields = self._fields(value, entry, _NODE_KEYS, required=('name', 'driver'))
        if fields is None:
            return None
        name = fields.get('name')
        label = _label(entry, name)
        self._check_name(label, 'name', name)
        driver = self._driver(label, fields.get('driver'))
        parameters = self._parameters(label, fields.get('parameters', {}), driver, place.host)
        references = self._depends_on(label, fields)
        lease = self._positive(label, 'liveliness_lease_s', fields.get('liveliness_lease_s'))
        respawn = self._respawn(label, fields.get('respawn'))
        if not isinstance(name, str):
            return None
        node = ManagedNode(name=name, namespace=place.namespace, part=place.name,
                           driver=driver.name if driver else '',
                           parameters=MappingProxyType(parameters), liveliness_lease_s=lease,
                           respawn=respawn)
        fqn = node.fully_qualified_name
        if fqn in self._node_labels:
            self._problem(label, f'fully qualified name {fqn!r} is already used by '
                          f'{self._node_labels[fqn]}')
            return None
        self.nodes[fqn] = node
        self._node_labels[fqn] = label
        self._node_place[fqn] = place
        self._references[fqn] = references
        self._part_nodes[place.entry].append(fqn)
        return fqn

    def _resource(self, value: Any, entry: str, place: _PartPlace) -> Optional[str]:
        fields = self._fields(value, entry, _RESOURCE_KEYS, required=('name', 'kind', 'target'))
        if fields is None:
            return None
        name = fields.get('name')
        label = _label(entry, name)
        self._check_name(label, 'name', name)
        kind = fields.get('kind')
        if kind is not None and kind not in RESOURCE_KINDS:
            self._problem(label, f'unknown resource kind {_describe(kind)} '
                          f'(known: {", ".join(RESOURCE_KINDS)})')
        target = self._resource_target(label, kind, fields.get('target'))
        manager = fields.get('controller_manager', DEFAULT_CONTROLLER_MANAGER)
        if 'controller_manager' in fields and kind != 'controller':
            self._problem(label, "controller_manager is only for kind 'controller'")
        elif not _is_absolute_name(manager):
            self._problem(label, f'controller_manager must be a fully qualified node name, '
                          f'got {_describe(manager)}')
        else:
            manager = self._in_robot(manager)
        timeout_s = self._positive(label, 'timeout_s', fields.get('timeout_s'))
        retries = fields.get('retries', DEFAULT_RESOURCE_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            self._problem(label, f'retries must be an integer >= 0, got {_describe(retries)}')
            retries = DEFAULT_RESOURCE_RETRIES
        references = self._depends_on(label, fields)
        if not isinstance(name, str):
            return None
        resource = ExternalResource(
            name=name, namespace=place.namespace, part=place.name,
            kind=kind if isinstance(kind, str) else '', target=target,
            controller_manager=manager if isinstance(manager, str) else '',
            timeout_s=DEFAULT_RESOURCE_TIMEOUT_S if timeout_s is None else timeout_s,
            retries=retries)
        fqn = resource.fully_qualified_name
        if fqn in self._node_labels:
            self._problem(label, f'fully qualified name {fqn!r} is already used by '
                          f'{self._node_labels[fqn]}')
            return None
        self.resources[fqn] = resource
        self._node_labels[fqn] = label
        self._resource_place[fqn] = place
        self._references[fqn] = references
        self._stop_with[fqn] = self._stop_with_names(label, fields)
        self._part_resources[place.entry].append(fqn)
        return fqn

    def _resource_target(self, label: str, kind: Any, target: Any) -> str:
        if target is None:
            return ''
        if kind == 'controller':
            if not isinstance(target, str) or not _NAME.match(target):
                self._problem(label, f'target of a controller must be its name (a ROS name), '
                              f'got {_describe(target)}')
                return ''
        elif not _is_absolute_name(target):
            what = 'node' if kind == 'lifecycle_node' else 'service'
            self._problem(label, f'target must be the fully qualified {what} name (e.g. '
                          f"'/base/{what}'), got {_describe(target)}")
            return ''
        return self._in_robot(target) if kind != 'controller' else target

    def _driver(self, label: str, value: Any) -> Optional[DriverType]:
        if value is None:
            return None
        if not isinstance(value, str) or value not in DRIVER_TYPES:
            self._problem(label, f'unknown driver type {_describe(value)} '
                          f'(known: {", ".join(DRIVER_TYPES)})')
            return None
        return DRIVER_TYPES[value]

    def _parameters(self, label: str, value: Any, driver: Optional[DriverType],
                    host: str) -> Dict[str, Any]:
        if not isinstance(value, Mapping):
            self._problem(label, f'parameters must be a mapping, got {_describe(value)}')
            return {}
        for key, item in value.items():
            if not isinstance(key, str):
                self._problem(label, f'parameter names must be strings, got {_describe(key)}')
            elif item is None:
                self._problem(label, f'parameter {key!r} has no value')
        parameters = {key: item for key, item in value.items() if item is not None}
        if driver is None:
            return parameters
        self._check_types(label, parameters, driver)
        for required in driver.required:
            if required not in value:
                self._problem(label, f'driver {driver.name!r} requires parameter {required!r}')
        if driver.gpio_lines:
            self._claim_lines(label, parameters, driver, host)
        return parameters

    def _check_types(self, label: str, parameters: Dict[str, Any], driver: DriverType) -> None:
        """Check values against what the driver declares; convert integers given for doubles."""
        if not driver.parameters:
            return
        # Lines and the chip are checked as lines are claimed (_claim_lines).
        claimed = {'chip_backend', 'chip', *driver.gpio_lines} if driver.gpio_lines else set()
        for key in [key for key in parameters if isinstance(key, str) and key not in claimed]:
            spec = driver.parameters.get(key)
            if spec is None:
                self._problem(label, f'driver {driver.name!r} has no parameter {key!r} '
                              f'(it declares: {", ".join(driver.parameters)})')
                continue
            parameters[key], wrong = spec.checked(parameters[key])
            if wrong:
                self._problem(label, f'parameter {key} of driver {driver.name!r} {wrong}')

    def _claim_lines(self, label: str, parameters: Mapping[str, Any], driver: DriverType,
                     host: str) -> None:
        backend = parameters.get('chip_backend', DEFAULT_CHIP_BACKEND)
        chip = parameters.get('chip', DEFAULT_CHIP)
        if backend not in CHIP_BACKENDS:
            self._problem(label, f'parameter chip_backend must be one of '
                          f'{", ".join(CHIP_BACKENDS)}, got {_describe(backend)}')
            return
        if not isinstance(chip, str):
            self._problem(label, f'parameter chip must be a string (quote it in YAML), '
                          f'got {_describe(chip)}')
            return
        for key in driver.gpio_lines:
            line = parameters.get(key)
            if line is None or line == NO_LINE:
                continue
            if isinstance(line, bool) or not isinstance(line, int) or not (
                    0 <= line <= MAX_GPIO_LINE):
                self._problem(label, f'parameter {key} must be a line number in '
                              f'[0, {MAX_GPIO_LINE}], got {_describe(line)}')
                continue
            holder = f'{label} as {key}'
            previous = self._lines.setdefault((host, backend, chip, line), holder)
            if previous != holder:
                self._problem(label, f'{key} {line} of {backend} chip {chip!r} on host {host!r} '
                              f'is already held by {previous}')

    def _depends_on(self, label: str, fields: Mapping[str, Any]) -> List[str]:
        references = self._list(fields, 'depends_on', label)
        for reference in references:
            if not isinstance(reference, str):
                self._problem(label, f'depends_on entries must be node names, '
                              f'got {_describe(reference)}')
        return [reference for reference in references if isinstance(reference, str)]

    def _positive(self, label: str, key: str, value: Any) -> Optional[float]:
        if value is None:
            return None
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value <= 0):
            self._problem(label, f'{key} must be a finite number of seconds > 0, '
                          f'got {_describe(value)}')
            return None
        return float(value)

    def _respawn(self, label: str, value: Any) -> Respawn:
        if value is None:
            return Respawn()
        fields = self._fields(value, f'{label} respawn', _RESPAWN_KEYS,
                              required=('max_attempts',))
        if fields is None:
            return Respawn()
        attempts = fields.get('max_attempts', 0)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            self._problem(label, f'respawn max_attempts must be an integer >= 0, '
                          f'got {_describe(attempts)}')
            attempts = 0
        backoff_s = self._positive(label, 'respawn backoff_s', fields.get('backoff_s'))
        within_s = self._positive(label, 'respawn within_s', fields.get('within_s'))
        return Respawn(max_attempts=attempts,
                       backoff_s=Respawn.backoff_s if backoff_s is None else backoff_s,
                       within_s=Respawn.within_s if within_s is None else within_s)

    def _resolve_references(self) -> None:
        # A node depends on nodes; a resource on nodes and resources.
        members = {**self._node_place, **self._resource_place}
        for fqn, references in self._references.items():
            is_node = fqn in self.nodes
            known = self._node_place if is_node else members
            what = 'node' if is_node else 'node or resource'
            place = known[fqn]
            resolved = [self._resolve(self._node_labels[fqn], place, reference, known, what)
                        for reference in references]
            depends_on = tuple(dict.fromkeys(target for target in resolved if target is not None))
            if is_node:
                self.nodes[fqn] = replace(self.nodes[fqn], depends_on=depends_on)
            else:
                self.resources[fqn] = replace(self.resources[fqn], depends_on=depends_on)

    def _resolve(self, label: str, place: _PartPlace, reference: str,
                 known: Mapping[str, _PartPlace], what: str) -> Optional[str]:
        if reference.startswith('/'):
            target = self._in_robot(reference)
            target = target if target in known else None
            if target is None:
                self._problem(label, f'depends_on {reference!r} is not a {what} of this robot')
                return None
        else:
            target = _join(place.namespace, reference)
            if target not in known or known[target].entry != place.entry:
                elsewhere = [other for other in known if other.rsplit('/', 1)[1] == reference]
                hint = (f"; a {what} of another part is named in full: {', '.join(elsewhere)}"
                        if elsewhere else '')
                self._problem(label, f'depends_on {reference!r} is not a {what} of part '
                              f'{place.name!r}{hint}')
                return None
        if self._is_below(known[target].entry, place.entry):
            self._problem(label, f'depends_on {reference!r} is a {what} of part '
                          f"{known[target].name!r}, under this {what}'s part "
                          f'{place.name!r}, whose nodes start before and stop after it')
            return None
        return target

    def _stop_with_names(self, label: str, fields: Mapping[str, Any]) -> List[str]:
        names = self._list(fields, 'stop_with', label)
        for name in names:
            if not isinstance(name, str):
                self._problem(label, f'stop_with entries must be node or resource names, '
                              f'got {_describe(name)}')
        return [name for name in names if isinstance(name, str)]

    def _resolve_stop_with(self) -> None:
        """Name each resource's stop_with in full: nodes or resources, of any part."""
        members = {**self._node_place, **self._resource_place}
        for fqn, names in self._stop_with.items():
            label, place = self._node_labels[fqn], self._resource_place[fqn]
            resolved = []
            for name in names:
                target = self._in_robot(name) if name.startswith('/') \
                    else _join(place.namespace, name)
                if target in members and (name.startswith('/')
                                          or members[target].entry == place.entry):
                    resolved.append(target)
                    continue
                elsewhere = [other for other in members if other.rsplit('/', 1)[1] == name]
                hint = (f"; one of another part is named in full: {', '.join(elsewhere)}"
                        if elsewhere and not name.startswith('/') else '')
                where = 'this robot' if name.startswith('/') else f'part {place.name!r}'
                self._problem(label, f'stop_with {name!r} is not a node or resource of '
                              f'{where}{hint}')
            self.resources[fqn] = replace(self.resources[fqn],
                                          stop_with=tuple(dict.fromkeys(resolved)))

    def _check_stop_with_cycles(self) -> None:
        """Refuse resources stopped with themselves, naming the first in description order."""
        needs: Dict[_Vertex, List[_Vertex]] = {fqn: [] for fqn in self.nodes}
        needs.update({fqn: list(resource.stop_with) for fqn, resource in self.resources.items()})
        order = list(self.resources)
        for cycle in _cycles(needs):
            first = min(cycle, key=order.index)
            start = cycle.index(first)
            names = [*cycle[start:], *cycle[:start], first]
            self._problem(self._node_labels[first], f'stop_with cycle {" -> ".join(names)}')

    def _is_below(self, entry: str, ancestor: str) -> bool:
        parent = self._parent_entry[entry]
        while parent is not None:
            if parent == ancestor:
                return True
            parent = self._parent_entry[parent]
        return False

    def _check_order(self) -> None:
        places = {**self._node_place, **self._resource_place}
        members = {**self.nodes, **self.resources}
        needs = _startup_needs(
            [(entry, parent, self._part_nodes[entry] + self._part_resources[entry])
             for entry, parent in self._parent_entry.items()],
            [(fqn, places[fqn].entry, member.depends_on) for fqn, member in members.items()])
        position = {fqn: index for index, fqn in enumerate(members)}
        for cycle in _cycles(needs):
            self._report_cycle(cycle, position, members)

    def _report_cycle(self, cycle: List[_Vertex], position: Mapping[str, int],
                      members: Mapping[str, Union[ManagedNode, ExternalResource]]) -> None:
        """Report a cycle from its first node in the description, naming part-rule steps."""
        first = min(filter(_is_node, cycle), key=position.__getitem__)
        start = cycle.index(first)
        names = [first]
        notes = []
        through_part = False
        for vertex in cycle[start + 1:] + cycle[:start] + [first]:
            if not _is_node(vertex):
                through_part = True
                continue
            if through_part:
                notes.append(f'{names[-1]} starts after {vertex}: part '
                             f'{members[names[-1]].part!r} is under part '
                             f'{members[vertex].part!r}')
            names.append(vertex)
            through_part = False
        note = f' ({"; ".join(notes)})' if notes else ''
        self._problem(self._node_labels[first], f'dependency cycle {" -> ".join(names)}{note}')


def _label(entry: str, name: Any) -> str:
    return f'{entry} ({name})' if isinstance(name, str) and name else entry


def _describe(value: Any) -> str:
    if value is None or isinstance(value, (str, int, float, bool)):
        return repr(value)
    return f'a {type(value).__name__}'


def _join(namespace: str, name: str) -> str:
    return f'{namespace.rstrip("/")}/{name}'


def _is_absolute_name(value: Any) -> bool:
    """Return whether `value` is a fully qualified ROS name such as '/base/stop'."""
    return (isinstance(value, str) and value.startswith('/') and len(value) > 1
            and all(_NAME.match(token) for token in value[1:].split('/')))


# Ordering. Vertices are nodes (fully qualified names) and one barrier per part, ('part', key),
# meaning "this part and the parts above it are up". A node waits for its depends_on and for the
# barrier of its part's parent; a barrier waits for its part's nodes and for the barrier above
# it. Barriers take no wave of their own.


def _barrier(part: str) -> _Vertex:
    return ('part', part)


def _is_node(vertex: _Vertex) -> bool:
    return isinstance(vertex, str)


def _startup_needs(
        parts: Sequence[Tuple[str, Optional[str], Sequence[str]]],
        nodes: Sequence[Tuple[str, str, Sequence[str]]]) -> Dict[_Vertex, List[_Vertex]]:
    """Return what each vertex waits for, from (part, parent, nodes) and (node, part, deps)."""
    parent_of = {part: parent for part, parent, _ in parts}
    needs: Dict[_Vertex, List[_Vertex]] = {}
    for part, parent, part_nodes in parts:
        needs[_barrier(part)] = [*part_nodes, *([_barrier(parent)] if parent else [])]
    for node, part, depends_on in nodes:
        parent = parent_of[part]
        needs[node] = [*depends_on, *([_barrier(parent)] if parent else [])]
    return needs


def _reverse(needs: _Needs) -> Dict[_Vertex, List[_Vertex]]:
    reverse: Dict[_Vertex, List[_Vertex]] = {vertex: [] for vertex in needs}
    for vertex, waited_for in needs.items():
        for other in waited_for:
            reverse[other].append(vertex)
    return reverse


def _levels(needs: _Needs) -> Tuple[Dict[_Vertex, int], List[_Vertex]]:
    """Return the earliest wave of each vertex, and the vertices a cycle holds back."""
    waiting = {vertex: set(waited_for) for vertex, waited_for in needs.items()}
    users = _reverse({vertex: list(waited) for vertex, waited in waiting.items()})
    level = {vertex: 0 for vertex, waited in waiting.items() if not waited}
    ready = deque(level)
    while ready:
        vertex = ready.popleft()
        after = level[vertex] + (1 if _is_node(vertex) else 0)
        for user in users[vertex]:
            level[user] = max(level.get(user, 0), after)
            waiting[user].discard(vertex)
            if not waiting[user]:
                ready.append(user)
    return level, [vertex for vertex, waited in waiting.items() if waited]


def _waves(needs: _Needs) -> Tuple[Tuple[str, ...], ...]:
    level, held_back = _levels(needs)
    if held_back:
        raise ValueError(f'dependency cycle among {", ".join(filter(_is_node, held_back))}')
    nodes = [vertex for vertex in needs if _is_node(vertex)]
    return tuple(tuple(node for node in nodes if level[node] == wave)
                 for wave in sorted({level[node] for node in nodes}))


def _cycles(needs: _Needs) -> List[List[_Vertex]]:
    """Return cycles, each as vertices waiting for the next, until none holds anything back."""
    cycles = []
    _, held_back = _levels(needs)
    while held_back:
        held = set(held_back)
        remaining = {vertex: [other for other in needs[vertex] if other in held]
                     for vertex in held_back}
        cycles.append(_walk_to_cycle(remaining))
        on_cycle = set(cycles[-1])
        needs = {vertex: [other for other in waited_for if other not in on_cycle]
                 for vertex, waited_for in remaining.items() if vertex not in on_cycle}
        _, held_back = _levels(needs)
    return cycles


def _walk_to_cycle(needs: _Needs) -> List[_Vertex]:
    """Follow waits from the first vertex until one repeats; each vertex waits for another."""
    path: List[_Vertex] = []
    seen: Dict[_Vertex, int] = {}
    vertex = next(iter(needs))
    while vertex not in seen:
        seen[vertex] = len(path)
        path.append(vertex)
        vertex = needs[vertex][0]
    return path[seen[vertex]:]
