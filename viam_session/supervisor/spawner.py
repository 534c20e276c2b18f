"""
Start managed nodes as driver processes with their name, namespace and parameters (no ROS).

Each process gets a parameter file of its own (the node's parameters from the robot
description plus `liveliness_lease_s`), and asks the kernel to send it SIGTERM if the
supervisor dies, so a driver never outlives its supervisor unsupervised (it then stops its
outputs on the way out, as on any SIGTERM).
"""

import ctypes
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
from typing import Dict, List, Mapping, Optional

from viam_session.driver_parameters import with_command_source
from viam_session.drivers import DRIVER_MODULES
from viam_session.supervisor.tree import ManagedNode
import yaml

__all__ = ['driver_command', 'DriverSpawner']

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM when the parent (the supervisor) dies."""
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def driver_command(node: ManagedNode, *, liveliness_lease_s: float,
                   parameter_dir: Path, command_source: str = '') -> List[str]:
    """
    Return the command line of `node`'s driver process, with its name and namespace.

    Its parameters (the description's plus `liveliness_lease_s`, and `command_source` for
    actuators the description leaves it unset for) go to a parameter file of its own in
    `parameter_dir`. ValueError if the driver type has no executable.
    """
    if node.driver not in DRIVER_MODULES:
        raise ValueError(f'{node.fully_qualified_name}: driver {node.driver!r} has no '
                         'executable; start it yourself')
    parameters = dict(with_command_source(node.driver, node.parameters, command_source),
                      liveliness_lease_s=float(liveliness_lease_s))
    path = parameter_dir / (node.fully_qualified_name.strip('/').replace('/', '__') + '.yaml')
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': parameters}}), encoding='utf-8')
    # -P: the supervisor's working directory is not put on sys.path, so a source checkout
    # there (ros2 launch run from a workspace's src/) cannot shadow the installed package.
    return [sys.executable, '-P', '-m', DRIVER_MODULES[node.driver], '--ros-args',
            '-r', f'__node:={node.name}', '-r', f'__ns:={node.namespace}',
            '--params-file', str(path)]


class DriverSpawner:
    """Driver processes started for managed nodes, by fully qualified name."""

    def __init__(self, *, env: Optional[Mapping[str, str]] = None,
                 command_source: str = '') -> None:
        """`command_source`: the session manager, the only node whose commands actuators obey."""
        self._command_source = command_source
        self._env = dict(os.environ if env is None else env)
        self._env['PYTHONUNBUFFERED'] = '1'
        self._dir = Path(tempfile.mkdtemp(prefix='viam_session_supervisor_'))
        self.processes: Dict[str, subprocess.Popen] = {}

    @staticmethod
    def can_spawn(node: ManagedNode) -> bool:
        return node.driver in DRIVER_MODULES

    def spawn(self, node: ManagedNode, *, liveliness_lease_s: float) -> subprocess.Popen:
        """Start `node`'s driver (ValueError if its driver has no executable); return it."""
        command = driver_command(node, liveliness_lease_s=liveliness_lease_s,
                                 parameter_dir=self._dir, command_source=self._command_source)
        process = subprocess.Popen(command, env=self._env, preexec_fn=_die_with_parent)
        self.processes[node.fully_qualified_name] = process
        return process

    def alive(self, fqn: str) -> bool:
        process = self.processes.get(fqn)
        return process is not None and process.poll() is None

    def reap(self, fqn: str) -> None:
        """Collect a dead process's exit status (no zombie left)."""
        process = self.processes.get(fqn)
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait(timeout=5)

    def close(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every process, then SIGKILL those still running after `timeout_s`."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for path in self._dir.glob('*.yaml'):
            path.unlink()
        self._dir.rmdir()
