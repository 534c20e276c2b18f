"""
A robot on two hosts joined by an impairment link: the primary in `a`, a sub-part host in `b`.

`MultiPartRobot` runs a robot description whose parts are on two hosts in the two namespaces
of a `NetnsPair` (an `ImpairedPair` to take the link down or degrade it), for fault tests and
benchmarks:

- namespace `a`, host `primary_host`: the session manager (actuators from the description),
  the lifecycle supervisor (`host:=primary_host`, spawning the drivers of that host's parts),
  a `part_observer` (the supervisor's part events and services) and
  the session clients started with `start_client()`;
- namespace `b`, host `sub_host`: the drivers of that host's parts (`SubPartHost`).

`start()` brings everything up and runs the supervisor's startup; the test then reads the
simulated chips (files, shared by every namespace) and the observer's lines. `close()` stops the
supervisor first (its ordered shutdown reaches every node while they run), then the rest.
"""

import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from viam_session.supervisor.tree import load_robot_description
from viam_session_harness.netfault.netns import NetnsPair, stop_process
from viam_session_harness.netfault.sub_part_host import SubPartHost

__all__ = ['JsonLines', 'MultiPartRobot']

STOP_GRACE_S = 20.0
STDIN_GRACE_S = 5.0


class JsonLines:
    """The JSON lines a process prints, kept as they come; wait for one with a deadline."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self._lines: List[dict] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for text in self.process.stdout:
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def snapshot(self) -> List[dict]:
        with self._changed:
            return list(self._lines)

    def wait_for(self, predicate: Callable[[dict], bool], timeout_s: float, what: str) -> dict:
        """Return the first line meeting `predicate`; TimeoutError past `timeout_s`."""
        with self._changed:
            if not self._changed.wait_for(
                    lambda: any(predicate(line) for line in self._lines)
                    or not self._reader.is_alive(), timeout_s):
                raise TimeoutError(f'no {what} within {timeout_s} s')
            for line in self._lines:
                if predicate(line):
                    return line
        raise TimeoutError(f'no {what}: the process ended (rc {self.process.poll()})')


class MultiPartRobot:
    """A primary part in namespace `a` of `pair`, the parts of `sub_host` in `b` (module doc)."""

    def __init__(self, *, pair: NetnsPair, description: Path, workdir: Path, domain_id: int,
                 primary_host: str, sub_host: str, supervisor_parameters: Sequence[str] = (),
                 deadline_s: float = 60.0) -> None:
        self.pair = pair
        self.description = description
        self.workdir = workdir
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), RCUTILS_COLORIZED_OUTPUT='0')
        self.nodes = list(load_robot_description(description).nodes)
        self.deadline_s = deadline_s
        self._primary_host = primary_host
        self._supervisor_parameters = list(supervisor_parameters)
        self.sub_part_host = SubPartHost(pair=pair, ns=pair.b.ns, description=description,
                                         host=sub_host, env=self.env, log_dir=workdir)
        self._processes: Dict[str, subprocess.Popen] = {}
        self.observer: Optional[JsonLines] = None
        self.clients: List[JsonLines] = []

    def start(self) -> None:
        """Start both hosts, wait until the observer sees every node, then run the startup."""
        self.sub_part_host.start()
        self._run_node('session_manager', 'viam_session.sessions.manager_node',
                       [f'robot_description:={self.description}'])
        self._run_node('supervisor', 'viam_session.supervisor.supervisor_node', [
            f'robot_description:={self.description}', f'host:={self._primary_host}',
            'spawn_nodes:=true', 'session_manager:=/session_manager',
            *self._supervisor_parameters])
        self.observer = JsonLines(self._run(
            'observer', ['-m', 'viam_session_harness.netfault.part_observer', *self.nodes],
            stdin=subprocess.PIPE))
        self.observer.wait_for(lambda line: line['event'] == 'ready', self.deadline_s,
                               'ready from the observer')
        started = self.ask('startup')
        if not started['success']:
            raise RuntimeError(f'startup failed: {started["message"]}')

    def ask(self, command: str) -> dict:
        """Send `startup` or `state` to the observer; return its answer line."""
        sent_ns = time.monotonic_ns()
        self.observer.process.stdin.write(command + '\n')
        self.observer.process.stdin.flush()
        return self.observer.wait_for(
            lambda line: line['event'] == command and line['t_ns'] > sent_ns,
            2 * self.deadline_s, f'{command} answer from the observer')

    def state(self) -> dict:
        """Return the supervisor's `~/get_state` (every node's state, liveliness, error)."""
        return self.ask('state')['state']

    def part_event(self, event: str, node: str, *, after_ns: int = 0) -> dict:
        """Wait for the supervisor's part event `event` about `node` after `after_ns`."""
        return self.observer.wait_for(
            lambda line: line['event'] == 'part_event' and line['t_ns'] > after_ns
            and line['data']['event'] == event and line['data'].get('node') == node,
            self.deadline_s, f'{event} of {node}')

    def start_client(self, *, resource: str, value: float, window_s: float) -> JsonLines:
        """Start a session client in namespace `a` that drives `resource` at `value`."""
        client = JsonLines(self._run(
            f'client_{len(self.clients)}',
            ['-m', 'viam_session.client.cli', '--name', f'client_{len(self.clients)}',
             '--resource', resource, '--value', str(value), '--window', str(window_s)]))
        self.clients.append(client)
        return client

    def _run_node(self, name: str, module: str, parameters: Sequence[str]) -> None:
        with open(self.workdir / f'{name}.log', 'w', encoding='utf-8') as log:
            self._processes[name] = self.pair.run(
                self.pair.a.ns, [sys.executable, '-m', module, '--ros-args',
                                 *(arg for parameter in parameters for arg in ('-p', parameter))],
                self.env, stdout=log, stderr=subprocess.STDOUT)

    def _run(self, name: str, arguments: Sequence[str],
             stdin: Optional[int] = None) -> subprocess.Popen:
        """Start `python ARGUMENTS` in namespace `a`: stdout piped, stderr to `<name>.log`."""
        with open(self.workdir / f'{name}.log', 'w', encoding='utf-8') as log:
            process = self.pair.run(self.pair.a.ns, [sys.executable, *arguments], self.env,
                                    stdin=stdin, stdout=subprocess.PIPE, stderr=log, text=True)
        self._processes[name] = process
        return process

    def close(self) -> None:
        """Stop the supervisor (ordered shutdown), then the clients, the rest, the sub-part."""
        for name in sorted(self._processes, key=lambda name: name != 'supervisor'):
            process = self._processes[name]
            if process.stdin is not None:  # the observer: it ends with its stdin
                process.stdin.close()
                try:
                    process.wait(timeout=STDIN_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
            stop_process(process, STOP_GRACE_S)
        self.sub_part_host.close()
