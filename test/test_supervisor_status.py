"""ROS-free parts of the supervisor: status, respawn budget, parking on a simulated chip."""

import importlib.util
from pathlib import Path

from viam_session.chips.sim_chip import read_line_values, SimChip
from viam_session.drivers import DRIVER_MODULES
from viam_session.supervisor.parking import park_lines
from viam_session.supervisor.spawner import DriverSpawner
from viam_session.supervisor.status import ERROR, OK, RespawnBudget, TreeStatus, WARN
from viam_session.supervisor.tree import (
    DRIVER_TYPES, ManagedNode, parse_robot_description, Respawn)


def _tree(chip: Path):
    return parse_robot_description({'robot': {'name': 'cart', 'primary': {
        'name': 'base', 'nodes': [
            {'name': 'board', 'driver': 'gpio_output',
             'parameters': {'chip': str(chip), 'line': 1}},
            {'name': 'motor', 'driver': 'dc_motor', 'depends_on': ['board'],
             'parameters': {'chip': str(chip), 'pwm_line': 2, 'direction_line': 3}}],
        'parts': [{'name': 'arm', 'namespace': '/arm', 'nodes': [
            {'name': 'lidar', 'driver': 'external'}]}]}}})


def test_the_budget_doubles_the_back_off_and_runs_out() -> None:
    budget = RespawnBudget(Respawn(max_attempts=3, backoff_s=0.5))
    assert [budget.next_delay() for _ in range(4)] == [0.5, 1.0, 2.0, None]
    assert budget.attempts == 3
    budget.reset()
    assert budget.next_delay() == 0.5
    assert RespawnBudget(Respawn()).next_delay() is None


def test_attempts_older_than_within_s_no_longer_count() -> None:
    """A node lost now and then (a sub-part's link) is brought back each time; a loop is not."""
    now = [0.0]
    budget = RespawnBudget(Respawn(max_attempts=2, backoff_s=1.0, within_s=60.0),
                           clock=lambda: now[0])
    assert [budget.next_delay(), budget.next_delay(), budget.next_delay()] == [1.0, 2.0, None]
    now[0] = 30.0
    assert budget.next_delay() is None and budget.attempts == 2
    now[0] = 60.5     # both attempts (made at 0 s) are now more than 60 s old
    assert budget.attempts == 0
    assert budget.next_delay() == 1.0


def test_levels_of_nodes_and_parts(tmp_path: Path) -> None:
    status = TreeStatus(_tree(tmp_path))
    assert status.part_level('base')[0] == WARN          # nothing seen yet
    status.set_state('/board', 'active')
    assert status.set_state('/motor', 'active')
    assert not status.set_state('/motor', 'active')
    assert status.part_level('base') == (OK, '2 node(s) active')
    assert status.set_alive('/board', False)
    level, message = status.part_level('base')
    assert level == ERROR and message.startswith('/board: dead')
    assert status.part_level('arm')[0] == WARN
    listing = status.listing()
    assert listing['nodes']['/board']['alive'] is False
    assert listing['parts']['arm']['nodes'] == ['/arm/lidar']
    assert status.not_active() == ['/board', '/arm/lidar']


def test_parking_holds_a_freed_motor_at_pwm_0_until_released(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    driver = SimChip(tmp_path, holder='/motor')
    driver.claim_output(2, 0)
    driver.set_pwm(2, 1000.0, 0.8)
    driver.close()                                  # as the kernel frees a dead process's lines
    assert read_line_values(tmp_path)[2].value == 0.8   # left running
    parked = park_lines(tree.nodes['/motor'], holder='supervisor parking /motor')
    values = read_line_values(tmp_path)
    assert values[2].kind == 'pwm' and values[2].value == 0.0
    assert values[2].holder == 'supervisor parking /motor'
    assert values[3].value == 0.0
    parked.release()
    parked.release()
    again = SimChip(tmp_path, holder='/motor')       # the driver can claim them again
    again.claim_output(2, 0)
    again.close()
    assert park_lines(tree.nodes['/arm/lidar'], holder='x') is None


def test_the_spawner_refuses_drivers_without_an_executable(tmp_path: Path) -> None:
    spawner = DriverSpawner()
    try:
        assert not spawner.can_spawn(_tree(tmp_path).nodes['/arm/lidar'])
        try:
            spawner.spawn(_tree(tmp_path).nodes['/arm/lidar'], liveliness_lease_s=1.0)
        except ValueError as error:
            assert 'start it yourself' in str(error)
        else:
            raise AssertionError('spawned an external node')
    finally:
        spawner.close()


def test_the_spawner_runs_every_gpio_driver_type() -> None:
    """Every driver type with GPIO lines has a module the supervisor can spawn."""
    gpio_types = {name for name, driver in DRIVER_TYPES.items() if driver.gpio_lines}
    assert gpio_types <= set(DRIVER_MODULES)
    for module in DRIVER_MODULES.values():
        assert importlib.util.find_spec(module) is not None, module


def test_an_actuator_at_rest_between_sessions_is_idle_and_ok(tmp_path: Path) -> None:
    """Inactive is OK for an actuator allowed to rest, WARN otherwise; faults stay faults."""
    status = TreeStatus(_tree(tmp_path))
    status.set_state('/board', 'active')
    status.set_state('/motor', 'inactive')
    assert status.part_level('base') == (WARN, '/motor: inactive')   # not up: startup failed
    assert status.allow_rest(['/motor'])
    assert not status.allow_rest(['/motor'])
    motor = status.nodes['/motor']
    assert (motor.level, motor.message()) == (OK, 'inactive (idle: no session)')
    assert status.part_level('base') == (OK, '1 node(s) active, 1 idle (no session)')
    assert status.listing()['nodes']['/motor']['idle'] is True
    status.set_state('/motor', 'unconfigured')
    assert motor.level == WARN                                       # not its resting state
    status.set_state('/motor', 'inactive', 'activate failed')
    assert motor.level == ERROR
    status.set_state('/motor', 'inactive')
    status.set_alive('/motor', False)
    assert motor.level == ERROR
    status.allow_rest([])
    status.set_alive('/motor', True)
    status.set_state('/motor', 'inactive')
    assert (motor.level, motor.message()) == (WARN, 'inactive')      # held down, or stopping


def test_a_package_in_the_working_directory_does_not_shadow_the_installed_drivers(
        tmp_path: Path, monkeypatch) -> None:
    """Started from a directory holding a `viam_session` package, a driver runs the real one."""
    shadow = tmp_path / 'viam_session'
    shadow.mkdir()
    (shadow / '__init__.py').write_text('raise SystemExit(3)\n', encoding='utf-8')
    monkeypatch.chdir(tmp_path)
    # A parameter of the wrong type: the real driver refuses it and exits 2, at once.
    node = ManagedNode(name='motor', namespace='/', part='base', driver='dc_motor',
                       parameters={'pwm_frequency_hz': 'fast'})
    spawner = DriverSpawner()
    try:
        assert spawner.spawn(node, liveliness_lease_s=1.0).wait(timeout=60) == 2
    finally:
        spawner.close()
