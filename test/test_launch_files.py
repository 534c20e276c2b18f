"""
Launch files and configuration, checked without `launch` (not installed here).

Every launch file is parsed (AST, never imported): each executable it names for this package
is a console script of setup.py, each YAML or perspective file it names is in `config/`, and
setup.py installs every launch and config file. Every YAML in `config/` loads: robot
descriptions validate with `load_robot_description`, parameter files are ROS parameter files
whose parameters the named nodes declare; the rqt perspectives are in rqt's format.
"""

import ast
from glob import glob
import json
from pathlib import Path
import re
from typing import Any, Dict, Iterator, List, Mapping, Set

import pytest
from viam_session.drivers.diagnostics import driver_status
from viam_session.supervisor.diagnostics import tree_diagnostics
from viam_session.supervisor.status import TreeStatus
from viam_session.supervisor.tree import DRIVER_TYPES, load_robot_description
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))
CONFIG_YAML = sorted((ROOT / 'config').glob('*.yaml'))
PERSPECTIVES = sorted((ROOT / 'config').glob('*.perspective'))
PACKAGE = 'viam_session'
# Parameter files for nodes of other packages: {file: package}; not checked against our source.
FOREIGN_PARAMETER_FILES = {'diagnostic_analyzers.yaml': 'diagnostic_aggregator'}
# The source files that declare each of our nodes' parameters.
NODE_SOURCES = {
    'session_manager': ['sessions/manager_node.py', 'sessions/connectivity_config.py'],
    'lifecycle_supervisor': ['supervisor/supervisor_node.py'],
    'motor': ['drivers/base.py', 'drivers/dc_motor.py'],
}


def setup_tree() -> ast.Module:
    return ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))


def console_scripts() -> Dict[str, str]:
    """Return setup.py's console scripts: {name: module}."""
    for node in ast.walk(setup_tree()):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = [item.value.split('=') for item in value.elts]
                    return {name.strip(): target.strip().split(':')[0]
                            for name, target in entries}
    raise AssertionError('setup.py has no console_scripts')


def driver_sources(kind: str) -> List[str]:
    """Return the source files declaring the parameters of a driver type's nodes."""
    tree = ast.parse((ROOT / 'launch' / 'robot.launch.py').read_text(encoding='utf-8'))
    module = console_scripts()[module_constants(tree)['DRIVER_EXECUTABLES'][kind]]
    return ['drivers/base.py', module.removeprefix(f'{PACKAGE}.').replace('.', '/') + '.py']


def installed_files() -> Set[str]:
    """Return the repository files setup.py's data_files install (globs expanded here)."""
    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [evaluate(item) for item in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return evaluate(node.left) + evaluate(node.right)
        if isinstance(node, ast.Name) and node.id == 'package_name':
            return PACKAGE
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'glob':
            return sorted(str(Path(path).relative_to(ROOT))
                          for path in glob(str(ROOT / evaluate(node.args[0]))))
        raise AssertionError(f'setup.py data_files: cannot evaluate {ast.dump(node)}')

    for node in ast.walk(setup_tree()):
        if isinstance(node, ast.keyword) and node.arg == 'data_files':
            return {path for _, files in evaluate(node.value) for path in files}
    raise AssertionError('setup.py has no data_files')


def module_constants(tree: ast.Module) -> Dict[str, Any]:
    """Return the module-level names bound to literals (strings, dicts, tuples)."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return constants


def executables(path: Path) -> Iterator[tuple]:
    """Yield (package, executable names) of every call with `executable=` in a launch file."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    constants = module_constants(tree)

    def resolve(node: ast.AST) -> List[str]:
        if isinstance(node, ast.Constant):
            return [node.value]
        if isinstance(node, ast.Name) and isinstance(constants.get(node.id), str):
            return [constants[node.id]]
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and isinstance(constants.get(node.value.id), dict):
            return list(constants[node.value.id].values())
        raise AssertionError(f'{path.name}:{node.lineno}: cannot tell which executable '
                             f'{ast.unparse(node)} is')

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            arguments = {keyword.arg: keyword.value for keyword in node.keywords}
            if 'executable' in arguments:
                package = resolve(arguments['package'])[0]
                yield package, resolve(arguments['executable']), node.lineno


def referenced_files(path: Path) -> List[str]:
    """Return the config file names (string constants ending .yaml/.perspective) of a file."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    return sorted({node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                   and isinstance(node.value, str)
                   and re.fullmatch(r'[\w.-]+\.(yaml|perspective)', node.value)})


def declared_in(sources: List[str], name: str) -> bool:
    """Whether a parameter `name` appears, quoted, in one of the package's source files."""
    return any(f"'{name}'" in (ROOT / PACKAGE / source).read_text(encoding='utf-8')
               for source in sources)


def check_parameter_file(path: Path, data: Any) -> None:
    """Check a ROS 2 parameter file: `/**` or node sections, each with ros__parameters."""
    assert isinstance(data, Mapping) and data, f'{path.name}: not a mapping of nodes'
    for node, section in data.items():
        assert isinstance(section, Mapping) and set(section) == {'ros__parameters'}, \
            f'{path.name}: section {node!r} must hold exactly ros__parameters'
        parameters = section['ros__parameters']
        assert isinstance(parameters, Mapping), f'{path.name}: {node}: ros__parameters'
        for name, value in flatten(parameters):
            if isinstance(value, list):
                assert value and len({type(item) for item in value}) == 1, \
                    f'{path.name}: {node}.{name}: a list must be non-empty and of one type'
            else:
                assert isinstance(value, (bool, int, float, str)), f'{path.name}: {name}'
        if path.name in FOREIGN_PARAMETER_FILES:
            continue
        sources = NODE_SOURCES.get(node.rsplit('/', 1)[-1])
        assert sources, f'{path.name}: section {node!r} names no node of this package'
        for name, _ in flatten(parameters):
            assert declared_in(sources, name), \
                f'{path.name}: {node} does not declare a parameter {name!r}'


def flatten(parameters: Mapping[str, Any], prefix: str = '') -> Iterator[tuple]:
    for name, value in parameters.items():
        if isinstance(value, Mapping):
            yield from flatten(value, f'{prefix}{name}.')
        else:
            yield f'{prefix}{name}', value


def test_there_are_launch_files():
    """The robot, two-part robot and demo launch files are there."""
    assert {path.name for path in LAUNCH_FILES} >= {
        'robot.launch.py', 'two_part_robot.launch.py', 'session_demo.launch.py'}


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda path: path.name)
def test_launch_file_executables_are_console_scripts(path):
    """Every executable of this package that a launch file starts is a console script."""
    scripts = console_scripts()
    found = list(executables(path))
    for package, names, line in found:
        if package == PACKAGE:
            missing = [name for name in names if name not in scripts]
            assert not missing, f'{path.name}:{line}: not console scripts of setup.py: {missing}'


def test_every_driver_type_but_external_has_an_executable():
    """robot.launch.py maps every driver type of the descriptions to an executable."""
    tree = ast.parse((ROOT / 'launch' / 'robot.launch.py').read_text(encoding='utf-8'))
    mapping = module_constants(tree)['DRIVER_EXECUTABLES']
    assert set(mapping) == set(DRIVER_TYPES) - {'external'}
    assert set(mapping.values()) <= set(console_scripts())


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda path: path.name)
def test_launch_file_configs_exist_and_are_installed(path):
    """Every config file a launch file names is in config/ and installed by setup.py."""
    installed = installed_files()
    for name in referenced_files(path):
        assert (ROOT / 'config' / name).is_file(), f'{path.name} names missing config/{name}'
        assert f'config/{name}' in installed, f'setup.py does not install config/{name}'


def test_setup_installs_every_launch_and_config_file():
    """Launch files, YAML files and the rqt perspective are all in data_files."""
    installed = installed_files()
    wanted = {str(path.relative_to(ROOT)) for path in [
        *LAUNCH_FILES, *CONFIG_YAML, *PERSPECTIVES]}
    assert wanted - installed == set()
    assert 'config/viam_session.perspective' in wanted
    assert 'config/viam_session_robot_monitor.perspective' in wanted


@pytest.mark.parametrize('path', CONFIG_YAML, ids=lambda path: path.name)
def test_config_yaml_loads_and_validates(path):
    """Robot descriptions validate; parameter files are ROS parameter files of real params."""
    data = yaml.safe_load(path.read_text(encoding='utf-8'))
    if isinstance(data, Mapping) and 'robot' in data:
        tree = load_robot_description(path)
        for node in tree.nodes.values():
            if node.driver == 'external':
                continue
            undeclared = [name for name in node.parameters
                          if not declared_in(driver_sources(node.driver), name)]
            assert not undeclared, \
                f'{path.name}: {node.fully_qualified_name} ({node.driver}) has no {undeclared}'
    else:
        check_parameter_file(path, data)


def test_robot_launch_sets_supervisor_and_manager_parameters_they_declare():
    """The parameters robot.launch.py sets on the supervisor and manager exist in them."""
    tree = ast.parse((ROOT / 'launch' / 'robot.launch.py').read_text(encoding='utf-8'))
    checked = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [key.value for key in node.keys if isinstance(key, ast.Constant)]
            if 'robot_description' in keys and 'spawn_nodes' in keys:
                sources = NODE_SOURCES['lifecycle_supervisor']
            elif 'robot_description' in keys:
                sources = NODE_SOURCES['session_manager']
            else:
                continue
            checked += 1
            for key in keys:
                assert declared_in(sources, key), f'{sources[0]} declares no {key!r}'
    assert checked == 2


def test_launch_arguments_set_parameters_the_nodes_declare():
    """given_overrides (launch_plan.py) sets manager and supervisor parameters they declare."""
    from viam_session.launch_plan import given_overrides
    manager, supervisor = given_overrides(window='1.0', automatic_stop='true', policy='stop',
                                          policies=('stop',))
    assert set(manager) == {'default_window_s', 'automatic_stop'}
    assert set(supervisor) == {'connectivity_loss_policy'}
    for parameters, node in ((manager, 'session_manager'),
                             (supervisor, 'lifecycle_supervisor')):
        for key in [*parameters, 'use_sim_time']:
            assert key == 'use_sim_time' or declared_in(NODE_SOURCES[node], key), \
                f'{node} declares no {key!r}'


def test_robot_launch_arguments_are_declared_with_descriptions():
    """Every LaunchConfiguration robot.launch.py reads is a DeclareLaunchArgument."""
    tree = ast.parse((ROOT / 'launch' / 'robot.launch.py').read_text(encoding='utf-8'))
    declared = set()
    read = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            first = node.args[0] if node.args and isinstance(node.args[0], ast.Constant) \
                else None
            if node.func.id == 'DeclareLaunchArgument' and first is not None:
                declared.add(first.value)
                assert any(keyword.arg == 'description' for keyword in node.keywords)
            elif node.func.id == 'argument' and first is not None:
                read.add(first.value)
    assert read <= declared and len(read) >= 10
    assert {'namespace', 'params_file', 'use_sim_time', 'log_level', 'window'} <= declared


def test_diagnostic_analyzers_group_every_status_the_package_publishes():
    """
    Each kind of status lands in exactly one analyzer of diagnostic_analyzers.yaml.

    GenericAnalyzer's rule: a status belongs to an analyzer when its name contains one of
    `contains` or starts with one of `startswith`. Driver and supervisor names come from the
    functions that make them; the manager's and the gate's are built where they publish.
    """
    analyzers = yaml.safe_load((ROOT / 'config' / 'diagnostic_analyzers.yaml').read_text(
        encoding='utf-8'))['analyzers']['ros__parameters']
    groups = {key: value for key, value in analyzers.items() if isinstance(value, dict)}
    tree = load_robot_description(ROOT / 'config' / 'two_part_robot.yaml')
    supervisor = [status.name for status in tree_diagnostics(
        TreeStatus(tree), robot=tree.name, host='localhost').status]
    driver = driver_status(node='/arm/shoulder', kind='servo', state='active', backend='sim',
                           chip='/tmp/chip', lines={}, roles={}, input_levels={},
                           watchdog=None).name
    names = [driver, *supervisor, '/session_manager: sessions',
             '/session_manager: actuators', '/session_manager: external resources',
             '/base_gate: session gate']
    assert any('/parts/' in name for name in supervisor)
    for name in names:
        matched = [key for key, group in groups.items()
                   if any(text in name for text in group.get('contains', []))
                   or any(name.startswith(text) for text in group.get('startswith', []))]
        assert len(matched) == 1, f'{name!r} lands in {matched or "Other"}'


def perspective_plugins(path: Path) -> Dict[str, List[int]]:
    """Return a perspective's running plugins: {'package/Class': [instance serials]}."""
    data = json.loads(path.read_text(encoding='utf-8'))
    running = data['groups']['pluginmanager']['keys']['running-plugins']
    assert running['type'] == 'repr'
    return ast.literal_eval(running['repr'])


def stored_bytes(value: Mapping[str, str]) -> bytes:
    """Return the bytes of a perspective value as rqt reads them (a repr or a QByteArray)."""
    if value['type'] == 'repr':
        return repr(ast.literal_eval(value['repr'])).encode()
    assert value['type'] == 'repr(QByteArray.hex)'
    text = value['repr(QByteArray.hex)']
    match = re.fullmatch(r"QtCore\.QByteArray\((b'[0-9a-f]*')\)", text)
    assert match, f'not a QByteArray in hex: {text[:60]}'
    return bytes.fromhex(ast.literal_eval(match.group(1)).decode('ascii'))


@pytest.mark.parametrize('path', PERSPECTIVES, ids=lambda path: path.name)
def test_rqt_perspective_is_in_rqt_export_format(path):
    """
    Each perspective is rqt's export JSON, as rqt's perspective manager reads it back.

    pluginmanager/running-plugins is a repr'd dict, every plugin instance has its settings
    group, every value is a repr or a QByteArray in hex, and a saved window layout
    (mainwindow/state) places exactly the dock widgets of the plugins that run.
    """
    data = json.loads(path.read_text(encoding='utf-8'))
    manager = data['groups']['pluginmanager']
    plugins = perspective_plugins(path)
    assert plugins, f'{path.name} runs no plugin'
    docks = []
    for plugin_id, serials in plugins.items():
        assert re.fullmatch(r'\w+/\w+', plugin_id), plugin_id
        for serial in serials:     # instance settings, as rqt names them
            instance = f'{plugin_id.replace("/", "__")}__{serial}'
            assert set(manager['groups'][f'plugin__{instance}']) == {'keys', 'groups'}
            docks.append(instance)

    def values(node: Mapping[str, Any]) -> Iterator[Mapping[str, str]]:
        yield from node['keys'].values()
        for group in node['groups'].values():
            yield from values(group)

    for value in values(data):
        stored_bytes(value)
    window = data['groups'].get('mainwindow')
    if window is not None:
        state = stored_bytes(window['keys']['state'])     # names are QStrings, UTF-16BE
        placed = {name for offset in (0, 1) for name in re.findall(
            r'(rqt_\w+?__\w+?__\d+)__', state[offset:].decode('utf-16-be', errors='replace'))}
        assert placed == set(docks), f'{path.name}: the layout places {sorted(placed)}'


def test_rqt_perspectives_show_the_diagnostics_with_and_without_the_aggregator():
    """
    One perspective reads /diagnostics itself, one shows the aggregator's /diagnostics_agg.

    Runtime Monitor, Console and Topic Monitor work on any install; Robot Monitor needs
    diagnostic_aggregator and has a perspective of its own, because it spins rqt's shared
    node from the Qt thread once a second, which slowed Topic Monitor beside it to 1 Hz.
    """
    config = ROOT / 'config'
    assert perspective_plugins(config / 'viam_session.perspective') == {
        'rqt_runtime_monitor/RuntimeMonitor': [1], 'rqt_console/Console': [1],
        'rqt_topic/TopicPlugin': [1]}
    assert perspective_plugins(config / 'viam_session_robot_monitor.perspective') == {
        'rqt_robot_monitor/RobotMonitor': [1]}
    for path in PERSPECTIVES:
        plugins = perspective_plugins(path)
        if 'rqt_robot_monitor/RobotMonitor' in plugins:
            assert len(plugins) == 1, f'{path.name}: Robot Monitor would slow {plugins}'
