"""
Unit tests of the parts tree: the example robot, ordering properties, every validation error.

Ordering is checked as properties over generated robots (hypothesis): every wave respects both
rules (depends_on, and a part's nodes before its sub-parts' nodes), every node sits in the
earliest wave the rules allow, and the shutdown plan reports sub-parts down before their parent.
"""

import copy
import dataclasses
import math
from pathlib import Path
import re
from typing import Any, Dict, List, Set, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from viam_session.supervisor import (
    DRIVER_TYPES, load_robot_description, parse_robot_description, PartsTree,
    RobotDescriptionError)

EXAMPLE = Path(__file__).resolve().parents[1] / 'config' / 'robot_example.yaml'
DELETE = object()


def small_robot() -> Dict[str, Any]:
    """Return a valid two-part robot: a motor on its board, an arm with a servo on its board."""
    return {'robot': {'name': 'rover', 'primary': {
        'name': 'base',
        'nodes': [
            {'name': 'board', 'driver': 'board', 'parameters': {'enable_line': 5}},
            {'name': 'left_motor', 'driver': 'dc_motor', 'depends_on': ['board'],
             'parameters': {'pwm_line': 12, 'direction_line': 16}},
        ],
        'parts': [{
            'name': 'arm', 'namespace': '/arm',
            'nodes': [
                {'name': 'servo_board', 'driver': 'board', 'parameters': {'enable_line': 6}},
                {'name': 'shoulder', 'driver': 'servo', 'depends_on': ['servo_board'],
                 'parameters': {'pwm_line': 13}},
            ],
        }],
    }}}


def edited(*edits: Tuple[str, Any]) -> Dict[str, Any]:
    """Return the small robot with each (path, value) set; paths read as in error messages."""
    description = small_robot()
    for path, value in edits:
        container: Any = description
        keys = [int(key) if key.isdigit() else key for key in re.findall(r'\w+', path)]
        for key in keys[:-1]:
            container = container[key]
        if value is DELETE:
            del container[keys[-1]]
        else:
            container[keys[-1]] = value
    return description


def problems_of(description: Any) -> Tuple[str, ...]:
    """Return the problems a description is refused for."""
    with pytest.raises(RobotDescriptionError) as raised:
        parse_robot_description(description)
    for problem in raised.value.problems:
        assert problem in str(raised.value)
    return raised.value.problems


def predecessors(tree: PartsTree) -> Dict[str, Set[str]]:
    """Return, for each node, every node that must be up before it (both rules, direct)."""
    above: Dict[str, Set[str]] = {}
    for part in tree.parts.values():
        parent = tree.parts.get(part.parent) if part.parent else None
        above[part.name] = set(parent.nodes) | above[parent.name] if parent else set()
    return {fqn: set(node.depends_on) | above[node.part] for fqn, node in tree.nodes.items()}


def wave_index(waves: List[List[str]]) -> Dict[str, int]:
    """Return the wave of each node; each node must be in exactly one wave."""
    index = {fqn: number for number, wave in enumerate(waves) for fqn in wave}
    assert len(index) == sum(len(wave) for wave in waves)
    return index


def check_ordering(tree: PartsTree) -> None:
    """Check both rules and earliest waves, at startup and at shutdown, and the plan."""
    before = predecessors(tree)
    after = {fqn: {other for other in before if fqn in before[other]} for fqn in before}
    for waves, waits_for in ((tree.startup_waves(), before), (tree.shutdown_waves(), after)):
        index = wave_index(waves)
        assert set(index) == set(tree.nodes)
        assert all(waves)
        for fqn, others in waits_for.items():
            assert all(index[other] < index[fqn] for other in others), fqn
            if index[fqn] > 0:
                assert any(index[other] == index[fqn] - 1 for other in others), fqn
    check_plan(tree)


def check_plan(tree: PartsTree) -> None:
    """Check that each part is reported once, once its nodes and sub-parts are down."""
    plan = tree.shutdown_plan()
    assert [list(step.nodes) for step in plan if step.nodes] == tree.shutdown_waves()
    reported = [part for step in plan for part in step.parts_down]
    assert sorted(reported) == sorted(tree.parts)
    assert plan[-1].parts_down[-1] == tree.primary.name
    down: Set[str] = set()
    for step in plan:
        down.update(step.nodes)
        for name in step.parts_down:
            part = tree.parts[name]
            assert set(part.nodes) <= down
            assert all(reported.index(sub) < reported.index(name) for sub in part.parts)


# The example.

def test_example_loads_with_three_levels_of_parts():
    """The shipped example validates: base, arm under it, gripper under the arm."""
    tree = load_robot_description(EXAMPLE)
    assert tree.name == 'rover'
    assert tree.primary.name == 'base'
    assert list(tree.parts) == ['base', 'arm', 'gripper']
    assert tree.parts['gripper'].parent == 'arm'
    assert tree.parts['gripper'].host == 'rover-arm'          # inherited from the arm
    assert tree.parts['gripper'].namespace == '/arm/gripper'
    finger = tree.nodes['/arm/gripper/finger']
    assert finger.part == 'gripper'
    assert finger.depends_on == ('/arm/servo_board',)
    assert tree.nodes['/left_motor'].depends_on == ('/motor_board',)
    assert tree.nodes['/left_motor'].respawn.max_attempts == 3
    assert tree.nodes['/motor_board'].liveliness_lease_s == 1.0
    assert {node.driver for node in tree.nodes.values()} == set(DRIVER_TYPES)
    check_ordering(tree)


def test_example_orders_boards_before_motors_and_parts_before_sub_parts():
    """Startup: the base (board, then motors), the arm, the gripper; shutdown the reverse."""
    tree = load_robot_description(EXAMPLE)
    assert tree.startup_waves() == [
        ['/motor_board', '/left_wheel_encoder', '/bumper', '/headlights', '/lidar',
         '/pan_gate'],
        ['/left_motor', '/right_motor'],
        ['/arm/servo_board'],
        ['/arm/shoulder', '/arm/elbow'],
        ['/arm/gripper/finger', '/arm/gripper/grip_switch'],
    ]
    assert tree.shutdown_waves() == [
        ['/arm/gripper/finger', '/arm/gripper/grip_switch'],
        ['/arm/shoulder', '/arm/elbow'],
        ['/arm/servo_board'],
        ['/left_motor', '/right_motor', '/left_wheel_encoder', '/bumper', '/headlights',
         '/lidar', '/pan_gate'],
        ['/motor_board'],
    ]
    assert [step.parts_down for step in tree.shutdown_plan()] == [
        ('gripper',), (), ('arm',), (), ('base',)]


def test_dependents_follow_depends_on_only():
    """A dead board takes down its motors (transitively), not the nodes of sub-parts."""
    tree = load_robot_description(EXAMPLE)
    assert tree.dependents_of('/motor_board') == ['/left_motor', '/right_motor']
    assert tree.dependents_of('/arm/servo_board') == [
        '/arm/shoulder', '/arm/elbow', '/arm/gripper/finger']
    assert tree.dependents_of('/bumper') == []
    with pytest.raises(KeyError, match='/nobody'):
        tree.dependents_of('/nobody')


def test_dependents_are_transitive():
    """A dependent of a dependent is a dependent."""
    description = edited(('robot.primary.nodes[1].depends_on', ['board']))
    description['robot']['primary']['nodes'].append(
        {'name': 'odometry', 'driver': 'external', 'depends_on': ['left_motor']})
    tree = parse_robot_description(description)
    assert tree.dependents_of('/board') == ['/left_motor', '/odometry']


def test_null_values_count_as_absent():
    """`nodes:` with nothing after it, or `namespace: null`, take the defaults."""
    tree = parse_robot_description(edited(('robot.primary.parts[0].namespace', None),
                                          ('robot.primary.parts[0].nodes', None)))
    assert tree.parts['arm'].namespace == '/'
    assert tree.parts['arm'].nodes == ()
    assert tree.primary.host == 'localhost'


def test_a_robot_without_nodes_reports_its_parts_down_at_once():
    """A robot of empty parts has no waves, and one shutdown step reporting every part."""
    tree = parse_robot_description(edited(('robot.primary.nodes', []),
                                          ('robot.primary.parts[0].nodes', [])))
    assert tree.startup_waves() == []
    assert [step.parts_down for step in tree.shutdown_plan()] == [('arm', 'base')]


def test_a_part_without_nodes_passes_the_order_on():
    """A sub-part's nodes start after the nodes of the nearest part above it that has some."""
    description = edited(('robot.primary.parts[0].nodes', []))
    description['robot']['primary']['parts'][0]['parts'] = [{
        'name': 'gripper', 'namespace': '/gripper',
        'nodes': [{'name': 'finger', 'driver': 'servo', 'parameters': {'pwm_line': 18}}]}]
    tree = parse_robot_description(description)
    assert tree.startup_waves() == [['/board'], ['/left_motor'], ['/gripper/finger']]
    check_ordering(tree)


# Ordering properties over generated robots.

@st.composite
def robots(draw, max_parts: int = 6, max_nodes_per_part: int = 8) -> Dict[str, Any]:
    """
    Draw a valid robot: each part under an earlier one, each node depending on earlier nodes.

    Depending only on earlier nodes (parts in drawing order, then nodes in order) never makes a
    cycle with the part rule, since a part is drawn after every part above it.
    """
    part_count = draw(st.integers(min_value=1, max_value=max_parts))
    parts: List[Dict[str, Any]] = []
    earlier: List[str] = []
    for index in range(part_count):
        part = {'name': f'part{index}', 'namespace': f'/p{index}', 'nodes': [], 'parts': []}
        if index:
            draw(st.sampled_from(parts))['parts'].append(part)
        parts.append(part)
        for number in range(draw(st.integers(min_value=0, max_value=max_nodes_per_part))):
            depends_on = draw(st.lists(st.sampled_from(earlier), max_size=3)) if earlier else []
            part['nodes'].append({'name': f'n{number}', 'driver': 'external',
                                  'depends_on': depends_on})
            earlier.append(f'/p{index}/n{number}')
    return {'robot': {'name': 'generated', 'primary': parts[0]}}


@settings(max_examples=200, deadline=None)
@given(robots())
def test_generated_robots_are_ordered_by_both_rules_in_earliest_waves(description):
    """For every edge and every part, waves and plan keep the order, as early as allowed."""
    check_ordering(parse_robot_description(description))


@settings(max_examples=100, deadline=None)
@given(robots(), st.data())
def test_closing_a_dependency_loop_is_reported_as_a_cycle(description, data):
    """Making a node depend on one of its dependents is refused, naming both in the cycle."""
    tree = parse_robot_description(description)
    candidates = [fqn for fqn in tree.nodes if tree.dependents_of(fqn)]
    if not candidates:
        return
    node = data.draw(st.sampled_from(candidates))
    dependent = data.draw(st.sampled_from(tree.dependents_of(node)))
    part_index = int(node.split('/')[1][1:])
    node_index = int(node.split('/')[2][1:])
    part = find_part(description['robot']['primary'], f'part{part_index}')
    part['nodes'][node_index]['depends_on'].append(dependent)
    (problem,) = problems_of(description)
    if is_below(tree, tree.nodes[dependent].part, tree.nodes[node].part):
        assert problem.endswith(f'depends_on {dependent!r} is a node of part '
                                f"{tree.nodes[dependent].part!r}, under this node's part "
                                f'{tree.nodes[node].part!r}, whose nodes start before and '
                                'stop after it')
    else:
        cycle = problem.split(': dependency cycle ')[1].split(' (')[0].split(' -> ')
        assert node in cycle and dependent in cycle
        assert cycle[0] == cycle[-1]


def is_below(tree: PartsTree, part: str, ancestor: str) -> bool:
    """Return whether `part` is a sub-part, at any depth, of `ancestor`."""
    parent = tree.parts[part].parent
    while parent is not None and parent != ancestor:
        parent = tree.parts[parent].parent
    return parent == ancestor


def find_part(part: Dict[str, Any], name: str) -> Dict[str, Any]:
    """Return the part called `name` in a generated description."""
    pending = [part]
    while pending:
        part = pending.pop()
        if part['name'] == name:
            return part
        pending.extend(part['parts'])
    raise KeyError(name)


def test_a_big_tree_orders_correctly():
    """Ten parts three levels deep, 120 nodes in dependency chains, a wide fan and across parts."""
    primary = {'name': 'base', 'nodes': [], 'parts': []}
    parts = [primary]
    for index in range(1, 10):
        part = {'name': f'part{index}', 'namespace': f'/p{index}', 'nodes': [], 'parts': []}
        parts[(index - 1) // 3]['parts'].append(part)
        parts.append(part)
    for index, part in enumerate(parts):
        for number in range(12):
            depends_on = [f'n{number - 1}'] if number % 4 else []
            if number == 0 and index > 4:
                depends_on.append(f'/p{index - 1}/n11')         # a sibling's last node
            part['nodes'].append({'name': f'n{number}', 'driver': 'external',
                                  'depends_on': depends_on})
    tree = parse_robot_description({'robot': {'name': 'big', 'primary': primary}})
    assert len(tree.nodes) == 120
    check_ordering(tree)
    startup = wave_index(tree.startup_waves())
    assert startup['/n3'] == 3 and startup['/n4'] == 0        # chains of four
    assert startup['/p1/n0'] == 4                               # after all of the base
    assert startup['/p6/n0'] == startup['/p5/n11'] + 1          # across sibling parts
    assert tree.dependents_of('/p5/n8') == [
        '/p5/n9', '/p5/n10', '/p5/n11', '/p6/n0', '/p6/n1', '/p6/n2', '/p6/n3']


# Validation: every problem names its entry.

@pytest.mark.parametrize('edits, expected', [
    pytest.param(
        [('robot.primary.nodes[1].parameters.direction_line', DELETE)],
        "robot.primary.nodes[1] (left_motor): driver 'dc_motor' requires parameter "
        "'direction_line'", id='missing-required-parameter'),
    pytest.param(
        [('robot.primary.nodes[0].driver', 'stepper')],
        "robot.primary.nodes[0] (board): unknown driver type 'stepper' (known: board, "
        'dc_motor, digital_input, encoder, gpio_output, servo, session_gate, external)',
        id='unknown-driver'),
    pytest.param(
        [('robot.primary.nodes[0].driver', DELETE)],
        "robot.primary.nodes[0] (board): missing 'driver'", id='missing-driver'),
    pytest.param(
        [('robot.primary.nodes[1].dependson', ['board'])],
        "robot.primary.nodes[1] (left_motor): unknown key 'dependson' (expected: name, driver, "
        'parameters, depends_on, liveliness_lease_s, respawn)', id='unknown-node-key'),
    pytest.param(
        [('robot.primary.parts[0].node', [])],
        "robot.primary.parts[0] (arm): unknown key 'node' (expected: name, namespace, host, "
        'nodes, resources, parts)', id='unknown-part-key'),
    pytest.param(
        [('robot.primary', ['base'])],
        'robot.primary: must be a mapping, got a list', id='part-not-a-mapping'),
    pytest.param(
        [('robot.primary.parts[0].nodes', {'servo_board': 'board'})],
        'robot.primary.parts[0] (arm): nodes must be a list, got a dict', id='nodes-not-a-list'),
    pytest.param(
        [('robot.primary.nodes[1]', 'left_motor')],
        "robot.primary.nodes[1]: must be a mapping, got 'left_motor'", id='node-not-a-mapping'),
    pytest.param(
        [('robot.primary.nodes[1].parameters', [12, 16])],
        'robot.primary.nodes[1] (left_motor): parameters must be a mapping, got a list',
        id='parameters-not-a-mapping'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].depends_on', ['/board2'])],
        "robot.primary.parts[0].nodes[1] (shoulder): depends_on '/board2' is not a node of "
        'this robot', id='unknown-fully-qualified-reference'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].depends_on', ['board2'])],
        "robot.primary.parts[0].nodes[1] (shoulder): depends_on 'board2' is not a node of part "
        "'arm'", id='unknown-reference'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].depends_on', ['board'])],
        "robot.primary.parts[0].nodes[1] (shoulder): depends_on 'board' is not a node of part "
        "'arm'; a node of another part is named in full: /board", id='reference-to-other-part'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].depends_on', 'servo_board')],
        'robot.primary.parts[0].nodes[1] (shoulder): depends_on must be a list, got '
        "'servo_board'", id='depends-on-not-a-list'),
    pytest.param(
        [('robot.primary.nodes[1].depends_on', [{'name': 'board'}])],
        'robot.primary.nodes[1] (left_motor): depends_on entries must be node names, got a dict',
        id='reference-not-a-string'),
    pytest.param(
        [('robot.primary.nodes[1].depends_on', ['/arm/servo_board'])],
        "robot.primary.nodes[1] (left_motor): depends_on '/arm/servo_board' is a node of part "
        "'arm', under this node's part 'base', whose nodes start before and stop after it",
        id='dependency-in-a-sub-part'),
    pytest.param(
        [('robot.primary.nodes[0].depends_on', ['left_motor'])],
        'robot.primary.nodes[0] (board): dependency cycle /board -> /left_motor -> /board',
        id='cycle'),
    pytest.param(
        [('robot.primary.parts[0].nodes[0].depends_on', ['servo_board'])],
        'robot.primary.parts[0].nodes[0] (servo_board): dependency cycle /arm/servo_board -> '
        '/arm/servo_board', id='self-dependency'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].name', 'servo_board')],
        'robot.primary.parts[0].nodes[1] (servo_board): fully qualified name '
        "'/arm/servo_board' is already used by robot.primary.parts[0].nodes[0] (servo_board)",
        id='duplicate-node'),
    pytest.param(
        [('robot.primary.parts[0].namespace', DELETE),
         ('robot.primary.parts[0].nodes[0].name', 'board'),
         ('robot.primary.parts[0].nodes[1].depends_on', DELETE)],
        "robot.primary.parts[0].nodes[0] (board): fully qualified name '/board' is already used "
        'by robot.primary.nodes[0] (board)', id='duplicate-node-across-parts'),
    pytest.param(
        [('robot.primary.parts[0].name', 'base')],
        "robot.primary.parts[0] (base): part name 'base' is already used by robot.primary "
        '(base)', id='duplicate-part'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].parameters.pwm_line', 12)],
        "robot.primary.parts[0].nodes[1] (shoulder): pwm_line 12 of sim chip '0' on host "
        "'localhost' is already held by robot.primary.nodes[1] (left_motor) as pwm_line",
        id='duplicate-line'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.direction_line', 12)],
        "robot.primary.nodes[1] (left_motor): direction_line 12 of sim chip '0' on host "
        "'localhost' is already held by robot.primary.nodes[1] (left_motor) as pwm_line",
        id='duplicate-line-in-one-node'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.enable_line', 5)],
        "robot.primary.nodes[1] (left_motor): enable_line 5 of sim chip '0' on host "
        "'localhost' is already held by robot.primary.nodes[0] (board) as enable_line",
        id='duplicate-motor-enable-line'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.pwm_line', 1024)],
        'robot.primary.nodes[1] (left_motor): parameter pwm_line must be a line number in '
        '[0, 1023], got 1024', id='line-out-of-range'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.pwm_line', '12')],
        'robot.primary.nodes[1] (left_motor): parameter pwm_line must be a line number in '
        "[0, 1023], got '12'", id='line-not-a-number'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.chip', 0)],
        'robot.primary.nodes[1] (left_motor): parameter chip must be a string (quote it in '
        'YAML), got 0', id='chip-not-a-string'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.chip_backend', 'pigpio')],
        'robot.primary.nodes[1] (left_motor): parameter chip_backend must be one of sim, lgpio, '
        "got 'pigpio'", id='unknown-chip-backend'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.max_duty', None)],
        "robot.primary.nodes[1] (left_motor): parameter 'max_duty' has no value",
        id='parameter-without-value'),
    pytest.param(
        [('robot.primary.nodes[0].liveliness_lease_s', math.nan)],
        'robot.primary.nodes[0] (board): liveliness_lease_s must be a finite number of seconds '
        '> 0, got nan', id='lease-nan'),
    pytest.param(
        [('robot.primary.nodes[0].liveliness_lease_s', math.inf)],
        'robot.primary.nodes[0] (board): liveliness_lease_s must be a finite number of seconds '
        '> 0, got inf', id='lease-infinite'),
    pytest.param(
        [('robot.primary.nodes[0].liveliness_lease_s', 0)],
        'robot.primary.nodes[0] (board): liveliness_lease_s must be a finite number of seconds '
        '> 0, got 0', id='lease-zero'),
    pytest.param(
        [('robot.primary.nodes[0].liveliness_lease_s', True)],
        'robot.primary.nodes[0] (board): liveliness_lease_s must be a finite number of seconds '
        '> 0, got True', id='lease-bool'),
    pytest.param(
        [('robot.primary.nodes[0].respawn', {'max_attempts': 3, 'backoff_s': -0.5})],
        'robot.primary.nodes[0] (board): respawn backoff_s must be a finite number of seconds '
        '> 0, got -0.5', id='backoff-negative'),
    pytest.param(
        [('robot.primary.nodes[0].respawn', {'max_attempts': 3, 'backoff_s': math.inf})],
        'robot.primary.nodes[0] (board): respawn backoff_s must be a finite number of seconds '
        '> 0, got inf', id='backoff-infinite'),
    pytest.param(
        [('robot.primary.nodes[0].respawn', {'max_attempts': 3, 'within_s': 0})],
        'robot.primary.nodes[0] (board): respawn within_s must be a finite number of seconds '
        '> 0, got 0', id='within-zero'),
    pytest.param(
        [('robot.primary.nodes[0].respawn', {'max_attempts': -1})],
        'robot.primary.nodes[0] (board): respawn max_attempts must be an integer >= 0, got -1',
        id='attempts-negative'),
    pytest.param(
        [('robot.primary.nodes[0].respawn', {'backoff_s': 1.0})],
        "robot.primary.nodes[0] (board) respawn: missing 'max_attempts'",
        id='respawn-without-attempts'),
    pytest.param(
        [('robot.primary.nodes[1].name', 'left-motor')],
        'robot.primary.nodes[1] (left-motor): name must be a ROS name (letters, digits and '
        "'_', not starting with a digit), got 'left-motor'", id='node-name-with-dash'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].name', '2nd_servo')],
        'robot.primary.parts[0].nodes[1] (2nd_servo): name must be a ROS name (letters, digits '
        "and '_', not starting with a digit), got '2nd_servo'", id='node-name-with-digit'),
    pytest.param(
        [('robot.primary.nodes[1].name', 'm' * 256)],
        f"robot.primary.nodes[1] ({'m' * 256}): name is longer than 255 characters",
        id='node-name-too-long'),
    pytest.param(
        [('robot.primary.nodes[1].name', 5)],
        'robot.primary.nodes[1]: name must be a ROS name (letters, digits and '
        "'_', not starting with a digit), got 5", id='node-name-not-a-string'),
    pytest.param(
        [('robot.primary.parts[0].name', 'the arm')],
        "robot.primary.parts[0] (the arm): name must be a ROS name (letters, digits and '_', "
        "not starting with a digit), got 'the arm'", id='part-name'),
    pytest.param(
        [('robot.name', '')],
        "robot: name must be a ROS name (letters, digits and '_', not starting with a digit), "
        "got ''", id='robot-name-empty'),
    pytest.param(
        [('robot.name', 'my robot')],
        "robot (my robot): name must be a ROS name (letters, digits and '_', not starting with "
        "a digit), got 'my robot'", id='robot-name'),
    pytest.param(
        [('robot.primary.parts[0].host', ' ')],
        "robot.primary.parts[0] (arm): host must be a non-empty string, got ' '", id='host'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.pwm_frequency_hz', 'fast')],
        "robot.primary.nodes[1] (left_motor): parameter pwm_frequency_hz of driver 'dc_motor' "
        "must be a double, got 'fast' (a string)", id='double-given-a-string'),
    pytest.param(
        [('robot.primary.nodes[0].parameters.active_level', 1.0)],
        "robot.primary.nodes[0] (board): parameter active_level of driver 'board' must be an "
        'integer, got 1.0 (a double)', id='integer-given-a-double'),
    pytest.param(
        [('robot.primary.parts[0].nodes[1].parameters.max_angle_deg', 'yes')],
        "robot.primary.parts[0].nodes[1] (shoulder): parameter max_angle_deg of driver 'servo' "
        "must be a double, got 'yes' (a string)", id='servo-double-given-a-string'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.max_duty', 2.0)],
        "robot.primary.nodes[1] (left_motor): parameter max_duty of driver 'dc_motor' must be "
        'in [0.01, 1.0], got 2.0', id='double-out-of-range'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.command_timeout_s', math.nan)],
        "robot.primary.nodes[1] (left_motor): parameter command_timeout_s of driver 'dc_motor' "
        'must be finite, got nan', id='double-nan'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.mode', 'three_pwm')],
        "robot.primary.nodes[1] (left_motor): parameter mode of driver 'dc_motor' must be one "
        "of pwm_direction, two_pwm, got 'three_pwm'", id='string-not-a-choice'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.use_sim_time', 1)],
        "robot.primary.nodes[1] (left_motor): parameter use_sim_time of driver 'dc_motor' must "
        'be a bool, got 1 (an integer)', id='bool-given-an-integer'),
    pytest.param(
        [('robot.primary.nodes[1].parameters.joint_name', ['a'])],
        "robot.primary.nodes[1] (left_motor): parameter joint_name of driver 'dc_motor' must be "
        'a string, got a list', id='string-given-a-list'),
    pytest.param(
        [('robot.primary.nodes[0].parameters.enable_lines', 5)],
        "robot.primary.nodes[0] (board): driver 'board' has no parameter 'enable_lines' (it "
        'declares: use_sim_time, start_type_description_service, chip_backend, chip, '
        'joint_name, liveliness_lease_s, ordered_exit_timeout_s, enable_line, active_level)',
        id='undeclared-parameter'),
])
def test_each_problem_names_the_offending_entry(edits, expected):
    """One problem, one line, beginning with where it is in the description."""
    assert problems_of(edited(*edits)) == (expected,)


@pytest.mark.parametrize('namespace', ['arm', '/arm/', '//arm', '/9arm', '/arm-1', '',
                                       '/' + 'a' * 245])
def test_bad_namespaces_are_refused(namespace):
    """Namespaces are absolute ROS namespaces."""
    (problem,) = problems_of(edited(('robot.primary.parts[0].namespace', namespace)))
    assert problem.startswith(
        f'robot.primary.parts[0] (arm): namespace {namespace!r} is not an absolute ROS namespace')


def test_a_cycle_through_the_part_rule_names_the_rule():
    """A node above waiting for a node beside that waits for a node below is a cycle."""
    description = edited(
        ('robot.primary.parts[0].nodes[1].depends_on', ['servo_board', '/tools/probe']))
    description['robot']['primary']['parts'].append({
        'name': 'tools', 'namespace': '/tools',
        'nodes': [{'name': 'probe', 'driver': 'external', 'depends_on': ['/board']}]})
    description['robot']['primary']['parts'][0]['parts'] = [{
        'name': 'hand', 'namespace': '/hand',
        'nodes': [{'name': 'camera', 'driver': 'external'}]}]
    tree = parse_robot_description(copy.deepcopy(description))
    check_ordering(tree)
    # /board waits for /hand/camera, which starts after every node of the arm and of the base.
    description['robot']['primary']['parts'][1]['nodes'][0]['depends_on'] = ['/hand/camera']
    assert problems_of(description) == (
        'robot.primary.parts[0].nodes[1] (shoulder): dependency cycle /arm/shoulder -> '
        '/tools/probe -> /hand/camera -> /arm/shoulder (/hand/camera starts after '
        "/arm/shoulder: part 'hand' is under part 'arm')",)


def test_lines_may_repeat_on_other_hosts_chips_and_backends():
    """Line 12 is used four times: on another host, another chip, another backend."""
    description = edited(('robot.primary.parts[0].host', 'arm-pi'),
                         ('robot.primary.parts[0].nodes[1].parameters.pwm_line', 12))
    nodes = description['robot']['primary']['nodes']
    nodes.append({'name': 'fan', 'driver': 'gpio_output',
                  'parameters': {'chip': '/tmp/other_chip', 'line': 12}})
    nodes.append({'name': 'lamp', 'driver': 'gpio_output',
                  'parameters': {'chip_backend': 'lgpio', 'line': 12}})
    parse_robot_description(description)


def test_every_problem_is_listed_in_one_error():
    """Three independent mistakes give one error with three problems."""
    problems = problems_of(edited(
        ('robot.primary.nodes[0].driver', 'stepper'),
        ('robot.primary.parts[0].nodes[1].depends_on', ['/nobody']),
        ('robot.primary.parts[0].name', 'base')))
    assert [problem.split(':')[0] for problem in problems] == [
        'robot.primary.nodes[0] (board)', 'robot.primary.parts[0] (base)',
        'robot.primary.parts[0].nodes[1] (shoulder)']


@pytest.mark.parametrize('description, expected', [
    pytest.param(['robot'], ('description: must be a mapping, got a list',), id='a-list'),
    pytest.param(None, ('description: must be a mapping, got None',), id='nothing'),
    pytest.param({'robots': {}}, (
        "description: unknown key 'robots' (expected: robot)",
        "description: missing 'robot'"), id='misspelt'),
    pytest.param({'robot': {'name': 'rover'}}, ("robot (rover): missing 'primary'",),
                 id='no-primary'),
])
def test_the_top_level_is_checked(description, expected):
    """The description is a mapping holding `robot`, which has a name and a primary part."""
    assert problems_of(description) == expected


def test_a_tree_with_a_cycle_cannot_be_built_directly():
    """Refuse, in PartsTree itself, a cycle that validation would have reported."""
    tree = parse_robot_description(small_robot())
    nodes = list(tree.nodes.values())
    nodes[0] = dataclasses.replace(nodes[0], depends_on=('/left_motor',))
    with pytest.raises(ValueError, match='cycle among /board, /left_motor'):
        PartsTree(name='rover', parts=list(tree.parts.values()), nodes=nodes)


# Files.

def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    """Broken YAML is a RobotDescriptionError with the file and the line."""
    path = tmp_path / 'robot.yaml'
    path.write_text('robot:\n  name: rover\n  primary: {name: base\n')
    with pytest.raises(RobotDescriptionError) as raised:
        load_robot_description(path)
    assert raised.value.source == str(path)
    assert str(path) in str(raised.value)
    assert re.fullmatch(r'line 4, column 1: .* \(YAML\)', raised.value.problems[0])


def test_a_key_given_twice_names_its_line(tmp_path):
    """YAML would keep the last of two `pwm_line`s silently; the loader refuses them."""
    text = EXAMPLE.read_text().replace('          pwm_line: 12\n',
                                       '          pwm_line: 12\n          pwm_line: 14\n', 1)
    path = tmp_path / 'robot.yaml'
    path.write_text(text)
    line = text.splitlines().index('          pwm_line: 14') + 1
    with pytest.raises(RobotDescriptionError) as raised:
        load_robot_description(path)
    assert raised.value.problems == (
        f"line {line}, column 11: duplicate key 'pwm_line' (YAML)",)


def test_yaml_merge_keys_still_work(tmp_path):
    """A key overriding a merged one is not a duplicate."""
    path = tmp_path / 'robot.yaml'
    path.write_text(
        'robot:\n'
        '  name: rover\n'
        '  primary:\n'
        '    name: base\n'
        '    nodes:\n'
        '      - {name: left, driver: dc_motor, parameters: &pins {pwm_line: 12, '
        'direction_line: 16}}\n'
        '      - {name: right, driver: dc_motor, parameters: {<<: *pins, pwm_line: 13, '
        'direction_line: 26}}\n')
    tree = load_robot_description(path)
    assert tree.nodes['/right'].parameters == {'pwm_line': 13, 'direction_line': 26}


def test_an_unreadable_or_empty_file_is_a_description_error(tmp_path):
    """A missing file and an empty one are refused as descriptions, naming the file."""
    with pytest.raises(RobotDescriptionError, match='cannot read the file'):
        load_robot_description(tmp_path / 'missing.yaml')
    empty = tmp_path / 'empty.yaml'
    empty.write_text('')
    with pytest.raises(RobotDescriptionError, match='must be a mapping, got None'):
        load_robot_description(empty)


def test_an_enable_line_of_minus_one_means_none():
    """Drivers take -1 for an optional line that is not wired; two motors may both say so."""
    description = small_robot()
    description['robot']['primary']['nodes'][1]['parameters']['enable_line'] = -1
    description['robot']['primary']['nodes'].append(
        {'name': 'right_motor', 'driver': 'dc_motor', 'depends_on': ['board'],
         'parameters': {'pwm_line': 22, 'direction_line': 23, 'enable_line': -1}})
    assert '/right_motor' in parse_robot_description(description).nodes


def test_an_integer_given_for_a_double_parameter_becomes_a_double():
    """The node gets the double it declares (rclpy refuses an integer for a double)."""
    tree = parse_robot_description(edited(
        ('robot.primary.nodes[1].parameters.pwm_frequency_hz', 2000),
        ('robot.primary.parts[0].nodes[1].parameters.max_angle_deg', 170)))
    frequency = tree.nodes['/left_motor'].parameters['pwm_frequency_hz']
    angle = tree.nodes['/arm/shoulder'].parameters['max_angle_deg']
    assert (frequency, type(frequency), angle, type(angle)) == (2000.0, float, 170.0, float)


def test_parameters_of_external_nodes_are_not_checked():
    """Someone else's node declares what it likes: any name, any type."""
    description = edited()
    description['robot']['primary']['nodes'].append(
        {'name': 'camera', 'driver': 'external', 'parameters': {'fps': 'thirty', 'x': [1]}})
    tree = parse_robot_description(description)
    assert dict(tree.nodes['/camera'].parameters) == {'fps': 'thirty', 'x': [1]}


def test_a_robot_namespace_takes_every_name_of_the_description_under_it():
    """Parts, nodes, depends_on, resource targets and controller managers move under /r1."""
    description = edited(('robot.primary.parts[0].nodes[1].depends_on',
                          ['servo_board', '/left_motor']))
    description['robot']['primary']['resources'] = [
        {'name': 'base_stop', 'kind': 'trigger', 'target': '/base/emergency_stop'},
        {'name': 'drive', 'kind': 'controller', 'target': 'diff_drive_controller'}]
    tree = parse_robot_description(description, namespace='/r1')
    assert list(tree.nodes) == ['/r1/board', '/r1/left_motor', '/r1/arm/servo_board',
                                '/r1/arm/shoulder']
    assert tree.nodes['/r1/arm/shoulder'].namespace == '/r1/arm'
    assert tree.nodes['/r1/arm/shoulder'].depends_on == (
        '/r1/arm/servo_board', '/r1/left_motor')
    assert tree.nodes['/r1/left_motor'].depends_on == ('/r1/board',)
    assert [(part.name, part.namespace) for part in tree.parts.values()] == [
        ('base', '/r1'), ('arm', '/r1/arm')]
    stop, drive = tree.resources.values()
    assert (stop.fully_qualified_name, stop.target) == ('/r1/base_stop',
                                                        '/r1/base/emergency_stop')
    assert (drive.target, drive.controller_manager) == ('diff_drive_controller',
                                                        '/r1/controller_manager')
    assert tree.startup_waves() == [['/r1/board'], ['/r1/left_motor'],
                                    ['/r1/arm/servo_board'], ['/r1/arm/shoulder']]


def test_a_robot_namespace_changes_nothing_but_names():
    """The same robot at the root and under /r1/left: the same tree, names aside."""
    root = parse_robot_description(small_robot())
    moved = parse_robot_description(small_robot(), namespace='/r1/left')
    assert [fqn.replace('/r1/left', '', 1) for fqn in moved.nodes] == list(root.nodes)
    assert [[fqn.replace('/r1/left', '', 1) for fqn in wave]
            for wave in moved.shutdown_waves()] == root.shutdown_waves()


@pytest.mark.parametrize('namespace', ['r1', '/r1/', '', '/1r'])
def test_a_bad_robot_namespace_is_refused(namespace):
    """The robot's namespace is absolute, as a node's get_namespace() returns it."""
    with pytest.raises(RobotDescriptionError) as raised:
        parse_robot_description(small_robot(), namespace=namespace)
    assert raised.value.problems == (
        f'robot namespace {namespace!r} is not an absolute ROS namespace such as /r1',)
