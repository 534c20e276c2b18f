"""
Network namespaces joined by a veth pair, for tests and benchmarks with real link faults.

Needs root and `ip` (iproute2).

`NetnsPair` creates two namespaces, `a` and `b`, joined by a veth pair whose ends are created
directly inside them (the machine's own namespace never holds either end), addresses both ends
in a private /30 (10.213.0.1 and 10.213.0.2 by default), and brings `lo` and the veths up.
`run()` starts a process inside a namespace; `set_link()` takes an interface down or up; taking
one end down drops the carrier of the other. `close()` (or leaving the `with` block) kills every
process still in the namespaces and deletes them, which deletes the veth pair, even after a
failed set-up.

DDS inside namespaces: `run()` sets `FASTDDS_BUILTIN_TRANSPORTS=UDPv4`, because Fast DDS's
shared-memory transport ignores namespaces (a link taken down would change nothing). It also
sets `ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET` by default, overriding the LOCALHOST that the tests
use in the machine's own namespace: inside our namespaces the only links are our veths, so the
default range reaches nothing else and lets processes in both namespaces find each other.
LOCALHOST also works when every process of a test runs in one namespace
(`discovery_range='LOCALHOST'`; None keeps the caller's value).

`netns_unavailable_reason()` says why namespaces cannot be used here (not root, no `ip`), so a
test can `pytest.skip()` with that reason.
"""

from dataclasses import dataclass
import ipaddress
import json
import os
from pathlib import Path
import secrets
import shutil
import signal
import subprocess
import time
from typing import Dict, List, Mapping, Optional, Sequence

__all__ = [
    'Endpoint', 'NetnsError', 'NetnsPair', 'interface_state', 'ip', 'netns_available',
    'netns_unavailable_reason', 'run', 'set_link', 'stop_process', 'wait_operstate']

IP_TIMEOUT_S = 10.0
MAX_INTERFACE_NAME = 15


class NetnsError(RuntimeError):
    """An `ip` command failed, or a namespace could not be set up or removed."""


def netns_unavailable_reason() -> Optional[str]:
    """Return why network namespaces cannot be used here, or None if they can."""
    if not hasattr(os, 'geteuid') or os.geteuid() != 0:
        return 'network namespaces need root'
    if shutil.which('ip') is None:
        return 'network namespaces need the ip command (iproute2)'
    if not Path('/proc/self/ns/net').exists():
        return 'this kernel has no network namespaces'
    return None


def netns_available() -> bool:
    """Return whether network namespaces can be used here."""
    return netns_unavailable_reason() is None


def ip(*args: str, ns: Optional[str] = None, timeout_s: float = IP_TIMEOUT_S) -> str:
    """Run `ip [-n ns] args...` and return its output; raise NetnsError if it fails."""
    argv = ['ip'] + (['-n', ns] if ns is not None else []) + list(args)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise NetnsError(f'{" ".join(argv)} did not finish within {timeout_s:g} s') from error
    if done.returncode != 0:
        raise NetnsError(f'{" ".join(argv)} failed ({done.returncode}): {done.stderr.strip()}')
    return done.stdout


def run(ns: str, argv: Sequence[str], env: Optional[Mapping[str, str]] = None, *,
        discovery_range: Optional[str] = 'SUBNET', **popen_kwargs) -> subprocess.Popen:
    """
    Start `argv` inside namespace `ns` (via `ip netns exec`) and return its Popen.

    The environment is `env` (default: this process's) with `FASTDDS_BUILTIN_TRANSPORTS=UDPv4`,
    `PYTHONUNBUFFERED=1` and, unless `discovery_range` is None, `ROS_AUTOMATIC_DISCOVERY_RANGE`.
    `ip netns exec` also mounts a /sys of the namespace, so /sys/class/net lists its
    interfaces. Further keyword arguments go to Popen.
    """
    full_env: Dict[str, str] = dict(os.environ if env is None else env)
    full_env['FASTDDS_BUILTIN_TRANSPORTS'] = 'UDPv4'
    full_env['PYTHONUNBUFFERED'] = '1'
    if discovery_range is not None:
        full_env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = discovery_range
    return subprocess.Popen(['ip', 'netns', 'exec', ns, *argv], env=full_env, **popen_kwargs)


def set_link(ns: str, dev: str, up: bool) -> None:
    """Take interface `dev` of namespace `ns` up or down."""
    ip('link', 'set', 'dev', dev, 'up' if up else 'down', ns=ns)


def interface_state(ns: str, dev: str) -> str:
    """Return the operstate of `dev` in `ns` as `ip` reports it, lower case (up, down, ...)."""
    links = json.loads(ip('-j', 'link', 'show', 'dev', dev, ns=ns))
    return str(links[0].get('operstate', 'unknown')).lower()


def wait_operstate(ns: str, dev: str, state: str, timeout_s: float = 10.0) -> None:
    """Wait until `dev` in `ns` reports operstate `state`; raise NetnsError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = interface_state(ns, dev)
        if current == state:
            return
        if time.monotonic() > deadline:
            raise NetnsError(
                f'{dev} in {ns} still {current}, not {state}, after {timeout_s:g} s')
        time.sleep(0.01)


@dataclass(frozen=True)
class Endpoint:
    """One end of the pair: its namespace, its veth interface and that interface's address."""

    ns: str
    dev: str
    address: str
    prefix_len: int


class NetnsPair:
    """
    Two fresh network namespaces `a` and `b` joined by a veth pair; a context manager.

    Names get a random suffix, so concurrent runs do not collide: namespaces
    `<prefix>-<suffix>-a`/`-b`, interfaces `<prefix><suffix>a`/`b` (at most 15 characters).
    """

    def __init__(self, *, prefix: str = 'vs', network: str = '10.213.0.0/30') -> None:
        suffix = secrets.token_hex(3)
        if not prefix.isalnum() or len(prefix) + len(suffix) + 1 > MAX_INTERFACE_NAME:
            raise ValueError(f'prefix must be 1 to 8 letters or digits, got {prefix!r}')
        net = ipaddress.ip_network(network)
        hosts = list(net.hosts()) if net.num_addresses <= 256 else []
        if len(hosts) < 2 or not net.is_private:
            raise ValueError(f'network must be a private network of 2 to 254 hosts, got {network}')
        self.a = Endpoint(f'{prefix}-{suffix}-a', f'{prefix}{suffix}a', str(hosts[0]),
                          net.prefixlen)
        self.b = Endpoint(f'{prefix}-{suffix}-b', f'{prefix}{suffix}b', str(hosts[1]),
                          net.prefixlen)
        self._processes: List[subprocess.Popen] = []
        self._created: List[str] = []
        self._closed = False

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        return (self.a, self.b)

    def create(self) -> None:
        """Create the namespaces and the veth pair, address the ends and bring all links up."""
        if self._created or self._closed:
            raise NetnsError('a NetnsPair is created once')
        for end in self.endpoints:
            ip('netns', 'add', end.ns)
            self._created.append(end.ns)
        self._create_link()
        for end in self.endpoints:
            ip('address', 'add', f'{end.address}/{end.prefix_len}', 'dev', end.dev, ns=end.ns)
            ip('link', 'set', 'dev', 'lo', 'up', ns=end.ns)
            ip('link', 'set', 'dev', end.dev, 'up', ns=end.ns)
        for end in self.endpoints:
            wait_operstate(end.ns, end.dev, 'up')

    def _create_link(self) -> None:
        """Create the two ends (`a.dev` in `a.ns`, `b.dev` in `b.ns`): here a veth pair."""
        ip('link', 'add', 'name', self.a.dev, 'netns', self.a.ns, 'type', 'veth',
           'peer', 'name', self.b.dev, 'netns', self.b.ns)

    def run(self, ns: str, argv: Sequence[str], env: Optional[Mapping[str, str]] = None,
            **kwargs) -> subprocess.Popen:
        """Start a process in one of the pair's namespaces (see `run`); closing kills it."""
        if ns not in self._created:
            raise NetnsError(f'{ns} is not a namespace of this pair')
        process = run(ns, argv, env, **kwargs)
        self._processes.append(process)
        return process

    def set_link(self, ns: str, dev: str, up: bool) -> None:
        """Take an interface of one of the pair's namespaces up or down."""
        if ns not in self._created:
            raise NetnsError(f'{ns} is not a namespace of this pair')
        set_link(ns, dev, up)

    def close(self) -> None:
        """Kill the processes left in the namespaces and delete them; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        problems: List[str] = []
        for process in self._processes:
            stop_process(process)
        for ns in self._created:
            _kill_namespace_processes(ns)
            try:
                ip('netns', 'delete', ns)
            except NetnsError as error:
                problems.append(str(error))
        if problems:
            raise NetnsError('teardown incomplete: ' + '; '.join(problems))

    def __enter__(self) -> 'NetnsPair':
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stop_process(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Terminate a process we started, then kill it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _kill_namespace_processes(ns: str, grace_s: float = 5.0) -> None:
    """SIGKILL what still runs in our namespace (grandchildren of our processes); wait for it."""
    try:
        pids = [int(pid) for pid in ip('netns', 'pids', ns).split()]
    except (NetnsError, ValueError):
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _running(pid)]
        if pids:
            time.sleep(0.01)


def _running(pid: int) -> bool:
    """Return whether `pid` exists and is not a zombie (a zombie has left its namespace)."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False
    return stat.rsplit(')', 1)[-1].split()[0] != 'Z'
