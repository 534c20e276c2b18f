"""
ament_python package definition of viam_session.

The message and service definitions are a nested ament_cmake package,
`viam_session_interfaces/`. colcon's crawl stops at a directory that is a package, so in a
workspace that holds this repository it finds only `viam_session`; `setup.py install` and
`setup.py develop` (what `colcon build` and `colcon build --symlink-install` run) therefore
build the nested package with CMake into the same install prefix first, unless it is already
installed in another prefix on AMENT_PREFIX_PATH (built as a package of its own, e.g. with
`colcon build --base-paths src src/viam_session/viam_session_interfaces`), or when
VIAM_SESSION_BUILD_INTERFACES is 0 (scripts/setup.sh builds them in a step of its own).
"""

from glob import glob
import os
from pathlib import Path
import subprocess
import sys
from typing import List, Optional

from setuptools import Command, find_packages, setup
from setuptools.command.develop import develop
from setuptools.command.install import install

package_name = 'viam_session'
interfaces_name = 'viam_session_interfaces'
interfaces_source = Path(__file__).resolve().parent / interfaces_name


def _installed_elsewhere(prefix: Path) -> Optional[str]:
    """Return a prefix on AMENT_PREFIX_PATH, other than `prefix`, that has the interfaces."""
    for other in filter(None, os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)):
        marker = Path(other, 'share/ament_index/resource_index/packages', interfaces_name)
        if Path(other).resolve() != prefix.resolve() and marker.is_file():
            return other
    return None


class BuildInterfaces(Command):
    """Build and install the nested interface package with CMake (about 30 s)."""

    description = f'build {interfaces_name} with CMake and install it into a prefix'
    user_options = [
        ('prefix=', None, 'install prefix (default: the prefix of the running Python)'),
        ('build-dir=', None, 'CMake build directory (default: build/<package> here)'),
        ('force', 'f', 'build even when another prefix on AMENT_PREFIX_PATH has it'),
    ]
    boolean_options = ['force']

    def initialize_options(self) -> None:  # noqa: D102
        self.prefix: Optional[str] = None
        self.build_dir: Optional[str] = None
        self.force = False

    def finalize_options(self) -> None:  # noqa: D102
        self.prefix = self.prefix or sys.prefix
        self.build_dir = self.build_dir or str(
            Path(self.get_finalized_command('build').build_base) / interfaces_name)

    def run(self) -> None:  # noqa: D102
        if os.environ.get('VIAM_SESSION_BUILD_INTERFACES') == '0' and not self.force:
            return
        prefix = Path(self.prefix)
        elsewhere = _installed_elsewhere(prefix)
        if elsewhere and not self.force:
            self.announce(f'{interfaces_name}: using the one installed in {elsewhere}', level=2)
            return
        # As colcon does for ament_cmake packages: AMENT_PREFIX_PATH extends CMAKE_PREFIX_PATH.
        prefixes = [p for name in ('CMAKE_PREFIX_PATH', 'AMENT_PREFIX_PATH')
                    for p in os.environ.get(name, '').split(os.pathsep) if p]
        env = dict(os.environ, CMAKE_PREFIX_PATH=os.pathsep.join(dict.fromkeys(prefixes)))
        steps: List[List[str]] = [
            ['cmake', '-S', str(interfaces_source), '-B', self.build_dir,
             f'-DCMAKE_INSTALL_PREFIX={prefix}', '-DCMAKE_BUILD_TYPE=Release',
             f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF'],
            ['cmake', '--build', self.build_dir, '-j', str(os.cpu_count() or 1)],
            ['cmake', '--install', self.build_dir],
        ]
        for number, step in enumerate(steps, 1):
            print(f'[{interfaces_name} {number}/{len(steps)}] {" ".join(step)}', flush=True)
            subprocess.run(step, check=True, env=env)


class InstallWithInterfaces(install):
    """`setup.py install` (colcon build): the interfaces first, into the same prefix."""

    def run(self) -> None:  # noqa: D102
        # A wheel build (pip install .) installs into a staging root: nothing to add there.
        if self.root is None:
            interfaces = self.reinitialize_command('build_interfaces')
            interfaces.prefix = self.prefix
            self.run_command('build_interfaces')
        super().run()


class DevelopWithInterfaces(develop):
    """`setup.py develop` (colcon build --symlink-install): the interfaces first."""

    def run(self) -> None:  # noqa: D102
        if not self.uninstall:
            self.run_command('build_interfaces')
        super().run()


setup(
    name=package_name,
    version='0.1.0',
    # Runtime code only: the harness of the tests, benchmarks and demo is not installed.
    packages=find_packages(exclude=['test', 'test.*', 'viam_session_harness',
                                    'viam_session_harness.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config',
         glob('config/*.yaml') + glob('config/*.perspective')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='viam_session maintainers',
    maintainer_email='maintainers@viam-session.dev',
    description='Session safety for ROS 2 robots: expired client sessions power off actuators.',
    license='Apache-2.0',
    tests_require=['pytest'],
    cmdclass={
        'build_interfaces': BuildInterfaces,
        'install': InstallWithInterfaces,
        'develop': DevelopWithInterfaces,
    },
    entry_points={
        'console_scripts': [
            'session_manager = viam_session.sessions.manager_node:main',
            'board_driver = viam_session.drivers.board:main',
            'dc_motor_driver = viam_session.drivers.dc_motor:main',
            'digital_input_driver = viam_session.drivers.digital_input:main',
            'encoder_driver = viam_session.drivers.encoder:main',
            'gpio_output_driver = viam_session.drivers.gpio_output:main',
            'servo_driver = viam_session.drivers.servo:main',
            'session_gate = viam_session.gate.gate_node:main',
            'lifecycle_supervisor = viam_session.supervisor.supervisor_node:main',
            'session_client = viam_session.client.cli:main',
            'viam-session = viam_session.client.operator_cli:main',
        ],
    },
)
