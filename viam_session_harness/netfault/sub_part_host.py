"""
The driver processes of a second host: the nodes of its parts, run in a network namespace.

A robot description can place a sub-part on another host (`host:` of a part). The primary's
lifecycle supervisor manages such nodes (configure, activate, watch, bring back) but neither
starts nor parks them: their host does. `SubPartHost` plays that host in one namespace of a
`NetnsPair`: `start()` runs one driver process per node of the parts on `host`, with the node's
name, namespace and parameters from the description and its liveliness lease (the node's
`liveliness_lease_s`, else `default_lease_s`), as the supervisor's spawner would on its own
host. Started through the pair, every process uses UDPv4 only, so its DDS traffic crosses the
pair's link, and closing the pair ends it at the latest. Each logs to `<log_dir>/<node>.log`.
"""

from pathlib import Path
import subprocess
from typing import Dict, Mapping

from viam_session.drivers import DRIVER_MODULES
from viam_session.supervisor.spawner import driver_command
from viam_session.supervisor.tree import load_robot_description, ManagedNode
from viam_session_harness.netfault.netns import NetnsPair

__all__ = ['SubPartHost']

STOP_GRACE_S = 10.0


class SubPartHost:
    """The driver processes of the nodes on `host`, run in namespace `ns` of `pair`."""

    def __init__(self, *, pair: NetnsPair, ns: str, description: Path, host: str,
                 env: Mapping[str, str], log_dir: Path, default_lease_s: float = 1.0) -> None:
        """Read the description; raise ValueError if no node of it runs on `host`."""
        tree = load_robot_description(description)
        self.nodes: Dict[str, ManagedNode] = {
            fqn: node for fqn, node in tree.nodes.items()
            if tree.parts[node.part].host == host and node.driver in DRIVER_MODULES}
        if not self.nodes:
            raise ValueError(f'{description}: no node with a driver process on host {host!r}')
        self._pair = pair
        self._ns = ns
        self._env = dict(env)
        self._log_dir = log_dir
        self._default_lease_s = default_lease_s
        self.processes: Dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        """Start a driver process for each node of the host that does not run now."""
        for fqn, node in self.nodes.items():
            process = self.processes.get(fqn)
            if process is None or process.poll() is not None:
                self.processes[fqn] = self._run(fqn, node)

    def _run(self, fqn: str, node: ManagedNode) -> subprocess.Popen:
        stem = fqn.strip('/').replace('/', '__')
        argv = driver_command(
            node, liveliness_lease_s=node.liveliness_lease_s or self._default_lease_s,
            parameter_dir=self._log_dir)
        with open(self._log_dir / f'{stem}.log', 'a', encoding='utf-8') as log:
            return self._pair.run(self._ns, argv, self._env, stdout=log,
                                  stderr=subprocess.STDOUT)

    def close(self) -> None:
        """SIGTERM every driver (its outputs go safe), then SIGKILL those still running."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
