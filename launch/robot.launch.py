"""
Bring a robot up from its description: session manager, lifecycle supervisor and every driver.

    ros2 launch viam_session robot.launch.py [robot_description:=<robot.yaml>] [host:=<host>]
        [window:=2.0] [policy:=stop|shutdown] [automatic_stop:=true|false]
        [chip_backend:=sim|lgpio] [chip:=<sim chip directory or gpiochip number>]
        [aggregator:=true|false]

The robot description (default: `config/rover.yaml`) is read and validated with
`viam_session.supervisor.tree.load_robot_description`, so a bad file stops the launch with
every problem named. On the primary part's host (the default of `host`) this starts:

- the session manager (`/session_manager`; parameters `config/robot_nodes.yaml`, then
  `default_window_s:=window`, `automatic_stop` and `robot_description`, from which it takes
  its actuators and external resources);
- the lifecycle supervisor (`/lifecycle_supervisor`, `spawn_nodes` false, `autostart` true,
  `session_manager:=/session_manager`, `connectivity_loss_policy:=policy`), which configures
  and activates the drivers parents first and takes them down children first;
- every driver of the parts whose host is `host`, as a `launch_ros` LifecycleNode named and
  namespaced as in the description, with the description's parameters. Nodes whose
  description has `respawn` are restarted by launch (`respawn_max_retries` where launch has
  it); the supervisor then brings them back to active;
- `diagnostic_aggregator`'s aggregator_node (`config/diagnostic_analyzers.yaml`) when it is
  installed and `aggregator` is true: rqt_robot_monitor shows `/diagnostics_agg`, not
  `/diagnostics`.

On another host (`host:=rover-arm`) only that host's drivers start: the primary's supervisor
manages them over DDS. Nodes of driver type `external` are never started here (someone else
starts them; the supervisor manages them all the same).

`chip_backend` and `chip`, when given, replace those parameters of every GPIO driver started
here.
The supervisor then reads the description as changed (written next to the launch logs), so
that it parks a dead driver's lines on the chip the driver really used.
"""

import inspect
import os
from typing import Any, Dict, List, Mapping, Optional

from ament_index_python.packages import (
    get_package_prefix, get_package_share_directory, PackageNotFoundError)
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.logging import launch_config
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from viam_session.supervisor.tree import (
    DRIVER_TYPES, load_robot_description, parse_robot_description, PartsTree)
import yaml

PACKAGE = 'viam_session'
# The executable of each driver type (console scripts of setup.py); 'external' has none.
DRIVER_EXECUTABLES = {
    'board': 'board_driver',
    'dc_motor': 'dc_motor_driver',
    'digital_input': 'digital_input_driver',
    'encoder': 'encoder_driver',
    'gpio_output': 'gpio_output_driver',
    'servo': 'servo_driver',
    'session_gate': 'session_gate',
}
POLICIES = ('stop', 'shutdown')
CHIP_BACKENDS = ('sim', 'lgpio')


def _config(name: str) -> str:
    return os.path.join(get_package_share_directory(PACKAGE), 'config', name)


def _flag(name: str, text: str) -> bool:
    if text.lower() not in ('true', 'false'):
        raise ValueError(f'launch argument {name} must be true or false, got {text!r}')
    return text.lower() == 'true'


def _parameter(value: Any) -> Any:
    """Keep a description's value as it is typed (launch would read '0' as an integer)."""
    return ParameterValue(value, value_type=str) if isinstance(value, str) else value


def _overridden(path: str, tree: PartsTree, host: str, overrides: Mapping[str, str]) -> str:
    """Write the description with `overrides` on this host's drivers; return its path."""
    with open(path, encoding='utf-8') as stream:
        data = yaml.safe_load(stream)
    pending = [data['robot']['primary']]
    while pending:
        part = pending.pop()
        pending.extend(part.get('parts') or [])
        if tree.parts[part['name']].host != host:
            continue
        for node in part.get('nodes') or []:
            if node['driver'] in DRIVER_EXECUTABLES and DRIVER_TYPES[node['driver']].gpio_lines:
                node['parameters'] = {**(node.get('parameters') or {}), **overrides}
    given = ' '.join(f'{key}:={value}' for key, value in overrides.items())
    parse_robot_description(data, source=f'{path} with {given}')    # lines may now collide
    written = os.path.join(launch_config.log_dir, f'robot_description_{tree.name}.yaml')
    with open(written, 'w', encoding='utf-8') as stream:
        yaml.safe_dump(data, stream, sort_keys=False)
    return written


def _respawn(node: Any) -> Dict[str, Any]:
    """Return the launch respawn options of a described node (none without `respawn`)."""
    if node.respawn.max_attempts <= 0:
        return {}
    options: Dict[str, Any] = {'respawn': True, 'respawn_delay': node.respawn.backoff_s}
    if 'respawn_max_retries' in inspect.signature(ExecuteProcess.__init__).parameters:
        options['respawn_max_retries'] = node.respawn.max_attempts
    return options


def _robot(context: LaunchContext) -> List[Any]:
    """Read and check the description and the arguments; return the actions to run."""
    argument = context.perform_substitution
    path = argument(LaunchConfiguration('robot_description'))
    tree = load_robot_description(path)      # RobotDescriptionError names every problem
    host = argument(LaunchConfiguration('host')) or tree.primary.host
    window = argument(LaunchConfiguration('window'))
    try:
        window_s = float(window)
    except ValueError:
        raise ValueError(f'launch argument window must be seconds, got {window!r}') from None
    policy = argument(LaunchConfiguration('policy'))
    if policy not in POLICIES:
        raise ValueError(f'launch argument policy must be one of {POLICIES}, got {policy!r}')
    automatic_stop = _flag('automatic_stop', argument(LaunchConfiguration('automatic_stop')))
    overrides = {key: argument(LaunchConfiguration(key)) for key in ('chip_backend', 'chip')}
    overrides = {key: value for key, value in overrides.items() if value}
    if overrides.get('chip_backend', 'sim') not in CHIP_BACKENDS:
        raise ValueError(f'launch argument chip_backend must be one of {CHIP_BACKENDS}, got '
                         f"{overrides['chip_backend']!r}")
    description = _overridden(path, tree, host, overrides) if overrides else path
    if overrides:
        tree = load_robot_description(description)
    local = [node for node in tree.nodes.values() if tree.parts[node.part].host == host]
    if not local and host != tree.primary.host:
        raise ValueError(f'robot {tree.name!r} has no part on host {host!r} (hosts: '
                         f'{", ".join(sorted({p.host for p in tree.parts.values()}))})')
    actions: List[Any] = [LogInfo(msg=_summary(tree, host, local))]
    if host == tree.primary.host:
        actions += _primary_nodes(tree, description, host, window_s, policy, automatic_stop)
        if _flag('aggregator', argument(LaunchConfiguration('aggregator'))):
            actions.append(_aggregator())
    for node in local:
        if node.driver not in DRIVER_EXECUTABLES:
            continue
        parameters = {key: _parameter(value) for key, value in node.parameters.items()}
        if node.liveliness_lease_s is not None:
            parameters['liveliness_lease_s'] = node.liveliness_lease_s
        actions.append(LifecycleNode(
            package=PACKAGE, executable=DRIVER_EXECUTABLES[node.driver], name=node.name,
            namespace=node.namespace, output='screen', parameters=[parameters],
            **_respawn(node)))
    return actions


def _primary_nodes(tree: PartsTree, description: str, host: str, window_s: float,
                   policy: str, automatic_stop: bool) -> List[Node]:
    """Return the session manager and the lifecycle supervisor."""
    settings = _config('robot_nodes.yaml')
    # The manager reads its actuators and external resources from the description.
    manager: Dict[str, Any] = {'default_window_s': window_s, 'automatic_stop': automatic_stop,
                               'robot_description': _parameter(description)}
    return [
        Node(package=PACKAGE, executable='session_manager', name='session_manager',
             namespace='/', output='screen', parameters=[settings, manager]),
        Node(package=PACKAGE, executable='lifecycle_supervisor', name='lifecycle_supervisor',
             namespace='/', output='screen', parameters=[settings, {
                 'robot_description': _parameter(description),
                 'spawn_nodes': False,
                 'autostart': True,
                 'session_manager': '/session_manager',
                 'connectivity_loss_policy': policy,
                 'host': _parameter(host)}]),
    ]


def _aggregator() -> Any:
    """Return the diagnostic aggregator, or a warning when it is not installed."""
    try:
        get_package_prefix('diagnostic_aggregator')
    except PackageNotFoundError:
        return LogInfo(msg='diagnostic_aggregator is not installed: /diagnostics_agg, which '
                       'rqt_robot_monitor shows, stays empty (install '
                       'ros-$ROS_DISTRO-diagnostic-aggregator, or read /diagnostics)')
    return Node(package='diagnostic_aggregator', executable='aggregator_node',
                name='analyzers', output='screen',
                parameters=[_config('diagnostic_analyzers.yaml')])


def _summary(tree: PartsTree, host: str, local: List[Any]) -> str:
    started = [node.fully_qualified_name for node in local if node.driver in DRIVER_EXECUTABLES]
    external = [node.fully_qualified_name for node in local if node.driver == 'external']
    elsewhere = [f'{part.name} ({part.host})' for part in tree.parts.values()
                 if part.host != host]
    lines: List[Optional[str]] = [
        f'robot {tree.name!r} on host {host!r}: starting {", ".join(started) or "no driver"}',
        f'  not started here, driver type external: {", ".join(external)}' if external else None,
        f'  parts on other hosts: {", ".join(elsewhere)}' if elsewhere else None,
    ]
    return '\n'.join(line for line in lines if line)


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the nodes come from the description (see the module docstring)."""
    return LaunchDescription([
        DeclareLaunchArgument('robot_description', default_value=_config('rover.yaml'),
                              description='robot description YAML (parts tree)'),
        DeclareLaunchArgument('host', default_value='',
                              description='start the parts of this host; default: the '
                              "primary part's host"),
        DeclareLaunchArgument('window', default_value='2.0',
                              description='default heartbeat window of a session, seconds'),
        DeclareLaunchArgument('policy', default_value='stop', choices=list(POLICIES),
                              description="robot-side connectivity loss: 'stop' the remote "
                              "sessions' actuators, or 'shutdown' the whole tree in order"),
        DeclareLaunchArgument('automatic_stop', default_value='true',
                              description='false opts out: sessions stop nothing by themselves'),
        DeclareLaunchArgument('chip_backend', default_value='',
                              description="'sim' or 'lgpio' for every driver started here; "
                              'default: as in the description'),
        DeclareLaunchArgument('chip', default_value='',
                              description='sim: chip directory; lgpio: gpiochip number; '
                              'default: as in the description'),
        DeclareLaunchArgument('aggregator', default_value='true',
                              description='start diagnostic_aggregator (if installed) for '
                              'rqt_robot_monitor'),
        OpaqueFunction(function=_robot),
    ])
