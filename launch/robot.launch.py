"""
Bring a robot up from its description: session manager, lifecycle supervisor and every driver.

    ros2 launch viam_session robot.launch.py [robot_description:=<robot.yaml>] [host:=<host>]
        [namespace:=<ns>] [params_file:=<params.yaml>] [window:=<s>] [policy:=stop|shutdown]
        [automatic_stop:=true|false] [use_sim_time:=true|false] [log_level:=info]
        [chip_backend:=sim|lgpio] [chip:=<sim chip directory or gpiochip number>]
        [aggregator:=true|false]

The robot description (default: `config/rover.yaml`) is read and validated with
`viam_session.supervisor.tree.load_robot_description`, so a bad file (a malformed tree, or a
parameter of the wrong type for its driver) stops the launch with every problem named, before
any process starts. On the primary part's host (the default of `host`) this starts:

- the session manager (`<namespace>/session_manager`; parameters `config/robot_nodes.yaml`,
  then `params_file`, then `default_window_s:=window` and `automatic_stop` when given, and
  `robot_description`, from which it takes its actuators and external resources);
- the lifecycle supervisor (`<namespace>/lifecycle_supervisor`, `spawn_nodes` false,
  `autostart` true, `session_manager`, `connectivity_loss_policy:=policy` when given), which
  configures and activates the drivers parents first and takes them down children first;
- every driver of the parts whose host is `host`, as a `launch_ros` LifecycleNode named and
  namespaced as in the description, with the description's parameters. Nodes whose
  description has `respawn` are restarted by launch at most `max_attempts` times; a launch
  that cannot bound restarts does not respawn them (the log says so); the supervisor then
  brings them back to active;
- `diagnostic_aggregator`'s aggregator_node (`config/diagnostic_analyzers.yaml`) when it is
  installed and `aggregator` is true: rqt_robot_monitor shows `/diagnostics_agg`, not
  `/diagnostics`.

Namespace. The robot's namespace is the one launch pushes (`PushRosNamespace` around an
include of this file) with `namespace` under it (an absolute `namespace` stands alone). Every
name in the description is the robot's and goes under it: node and part namespaces,
`depends_on`, resource targets; `/arm` in the description is `/r1/arm` for a robot in `/r1`.
The manager and the supervisor read the description the same way, under their own namespace.

`use_sim_time` and `log_level` apply to every node started here. `params_file` is a ROS
parameter file for the session manager and the supervisor, on top of
`config/robot_nodes.yaml` (sections `/**/session_manager`, `/**/lifecycle_supervisor`, or
full names); arguments that are not given leave its values alone.

On another host (`host:=rover-arm`) only that host's drivers start: the primary's supervisor
manages them over DDS. Nodes of driver type `external` are never started here (someone else
starts them; the supervisor manages them all the same).

`chip_backend` and `chip`, when given, replace those parameters of every GPIO driver started
here.
The supervisor then reads the description as changed (written next to the launch logs), so
that it parks a dead driver's lines on the chip the driver really used.
"""

import os
from typing import Any, Dict, List, Mapping, Optional

from ament_index_python.packages import (
    get_package_prefix, get_package_share_directory, PackageNotFoundError)
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.logging import launch_config
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from viam_session.driver_parameters import with_command_source
from viam_session.launch_plan import (
    flag, given_overrides, log_level, respawn_options, robot_namespace)
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


def _parameter(value: Any) -> Any:
    """Keep a description's value as it is typed (launch would read '0' as an integer)."""
    return ParameterValue(value, value_type=str) if isinstance(value, str) else value


def _overridden(path: str, tree: PartsTree, host: str, overrides: Mapping[str, str],
                namespace: str) -> str:
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
    parse_robot_description(data, source=f'{path} with {given}',   # lines may now collide
                            namespace=namespace)
    written = os.path.join(launch_config.log_dir, f'robot_description_{tree.name}.yaml')
    with open(written, 'w', encoding='utf-8') as stream:
        yaml.safe_dump(data, stream, sort_keys=False)
    return written


def _robot(context: LaunchContext) -> List[Any]:
    """Read and check the description and the arguments; return the actions to run."""
    def argument(name: str) -> str:
        return context.perform_substitution(LaunchConfiguration(name))

    namespace = robot_namespace(context.launch_configurations.get('ros_namespace'),
                                argument('namespace'))
    path = argument('robot_description')
    # RobotDescriptionError names every problem, wrong parameter types included.
    tree = load_robot_description(path, namespace=namespace)
    host = argument('host') or tree.primary.host
    manager, supervisor = given_overrides(
        window=argument('window'), automatic_stop=argument('automatic_stop'),
        policy=argument('policy'), policies=POLICIES)
    common = {'use_sim_time': flag('use_sim_time', argument('use_sim_time'))}
    ros_arguments = ['--log-level', log_level(argument('log_level'))]
    overrides = {key: argument(key) for key in ('chip_backend', 'chip')}
    overrides = {key: value for key, value in overrides.items() if value}
    if overrides.get('chip_backend', 'sim') not in CHIP_BACKENDS:
        raise ValueError(f'launch argument chip_backend must be one of {CHIP_BACKENDS}, got '
                         f"{overrides['chip_backend']!r}")
    description = _overridden(path, tree, host, overrides, namespace) if overrides else path
    if overrides:
        tree = load_robot_description(description, namespace=namespace)
    local = [node for node in tree.nodes.values() if tree.parts[node.part].host == host]
    if not local and host != tree.primary.host:
        raise ValueError(f'robot {tree.name!r} has no part on host {host!r} (hosts: '
                         f'{", ".join(sorted({p.host for p in tree.parts.values()}))})')
    actions: List[Any] = [LogInfo(msg=_summary(tree, host, local, namespace))]
    if host == tree.primary.host:
        settings = [_config('robot_nodes.yaml'), *filter(None, [argument('params_file')])]
        actions += _primary_nodes(description, host, namespace, settings, ros_arguments,
                                  manager={**common, **manager},
                                  supervisor={**common, **supervisor})
        if flag('aggregator', argument('aggregator')):
            actions.append(_aggregator(namespace, common, ros_arguments))
    for node in local:
        if node.driver not in DRIVER_EXECUTABLES:
            continue
        # Actuators obey the robot's session manager only (docs/security.md).
        parameters = {key: _parameter(value) for key, value in with_command_source(
            node.driver, node.parameters, f'{namespace.rstrip("/")}/session_manager').items()}
        if node.liveliness_lease_s is not None:
            parameters['liveliness_lease_s'] = node.liveliness_lease_s
        respawn, note = respawn_options(node.respawn, LifecycleNode)
        if note:
            actions.append(LogInfo(msg=f'{node.fully_qualified_name}: {note}'))
        actions.append(LifecycleNode(
            package=PACKAGE, executable=DRIVER_EXECUTABLES[node.driver], name=node.name,
            namespace=node.namespace, output='screen', parameters=[{**parameters, **common}],
            ros_arguments=ros_arguments, **respawn))
    return actions


def _primary_nodes(description: str, host: str, namespace: str, settings: List[str],
                   ros_arguments: List[str], *, manager: Dict[str, Any],
                   supervisor: Dict[str, Any]) -> List[Node]:
    """Return the session manager and the lifecycle supervisor, in the robot's namespace."""
    # The manager reads its actuators and external resources from the description.
    manager_parameters: Dict[str, Any] = {'robot_description': _parameter(description),
                                          **manager}
    return [
        Node(package=PACKAGE, executable='session_manager', name='session_manager',
             namespace=namespace, output='screen', ros_arguments=ros_arguments,
             parameters=[*settings, manager_parameters]),
        Node(package=PACKAGE, executable='lifecycle_supervisor', name='lifecycle_supervisor',
             namespace=namespace, output='screen', ros_arguments=ros_arguments,
             parameters=[*settings, {
                 'robot_description': _parameter(description),
                 'spawn_nodes': False,
                 'autostart': True,
                 'session_manager': 'session_manager',    # beside it, in its namespace
                 'host': _parameter(host),
                 **supervisor}]),
    ]


def _aggregator(namespace: str, common: Dict[str, Any], ros_arguments: List[str]) -> Any:
    """Return the diagnostic aggregator, or a warning when it is not installed."""
    try:
        get_package_prefix('diagnostic_aggregator')
    except PackageNotFoundError:
        return LogInfo(msg='diagnostic_aggregator is not installed: /diagnostics_agg, which '
                       'rqt_robot_monitor shows, stays empty (install '
                       'ros-$ROS_DISTRO-diagnostic-aggregator, or read /diagnostics)')
    return Node(package='diagnostic_aggregator', executable='aggregator_node',
                name='analyzers', namespace=namespace, output='screen',
                ros_arguments=ros_arguments,
                parameters=[_config('diagnostic_analyzers.yaml'), common])


def _summary(tree: PartsTree, host: str, local: List[Any], namespace: str) -> str:
    started = [node.fully_qualified_name for node in local if node.driver in DRIVER_EXECUTABLES]
    external = [node.fully_qualified_name for node in local if node.driver == 'external']
    elsewhere = [f'{part.name} ({part.host})' for part in tree.parts.values()
                 if part.host != host]
    lines: List[Optional[str]] = [
        f'robot {tree.name!r} in namespace {namespace!r} on host {host!r}: starting '
        f'{", ".join(started) or "no driver"}',
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
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the whole robot, under the one launch '
                              'pushes if relative; every name of the description goes under '
                              'it'),
        DeclareLaunchArgument('params_file', default_value='',
                              description='ROS parameter file for the session manager and the '
                              'supervisor, on top of config/robot_nodes.yaml'),
        DeclareLaunchArgument('window', default_value='',
                              description='default heartbeat window of a session, seconds; '
                              'default: the parameter files, else 2.0'),
        DeclareLaunchArgument('policy', default_value='',
                              description="robot-side connectivity loss: 'stop' the remote "
                              "sessions' actuators, or 'shutdown' the whole tree in order; "
                              "default: the parameter files, else 'stop'"),
        DeclareLaunchArgument('automatic_stop', default_value='',
                              description='false opts out: sessions stop nothing by '
                              'themselves; default: the parameter files, else true'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='every node started here uses /clock'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='log level of every node started here (debug, '
                              'info, warn, error, fatal)'),
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
