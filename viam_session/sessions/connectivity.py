"""
The robot-side connectivity watch (every remote session ends at once when it fails), no ROS.

When the robot itself loses its network (a configured interface loses carrier or goes down, or
a configured TCP reachability probe fails), the session manager ends every remote session at
once instead of waiting for their windows. This module decides *when* connectivity is lost and
when it is back; the node that wraps it ends the sessions.

Two kinds of check:

- `InterfaceCheck` reads `/sys/class/net/<interface>/{operstate,carrier}`. It is cheap and
  exact, so it is *immediate*: one failed reading means connectivity is lost.
- `ReachabilityCheck` opens a TCP connection to host:port under a timeout. A single lost SYN or
  a busy peer can fail one probe, so probe failures only count after `failures_before_lost`
  consecutive failed rounds.

`ConnectivityWatch` runs the checks in a thread of its own (a probe may block for its whole
timeout, which must never hold up a ROS executor): a full round every `period_s` (interface
checks first; the probes only if every interface is up); the interface checks alone also every
`interface_period_s` (two sysfs reads, cheap enough for tens of times a second) and, on Linux,
whenever the kernel announces a link change (rtnetlink, group RTMGRP_LINK). If the netlink
socket cannot be opened, the watch polls. Connectivity is restored by the first round in which
every check passes. The callbacks run in the watch's thread, never under its lock, once per
transition.

What netlink gives, measured on Linux 6.18 with veth pairs: an interface taken down here
(admin down) is announced at once (about 2 ms from `ip link set down` to `on_lost`), but a lost
carrier (the peer or the cable gone) is announced by the kernel's link watch, which batches
such events at most once a second for the whole machine: 0.15 to 0.97 s measured. The `carrier`
file changes at once, so a short `interface_period_s` bounds that case (6 to 20 ms at 0.02 s).
"""

import errno
import logging
import math
from pathlib import Path
import select
import socket
import threading
import time
from typing import Callable, List, Optional, Protocol, Sequence

__all__ = ['ConnectivityCheck', 'ConnectivityWatch', 'InterfaceCheck', 'ReachabilityCheck']

_logger = logging.getLogger(__name__)

# From <linux/netlink.h> and <linux/rtnetlink.h>.
NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1

# Longest interface name the kernel accepts (IFNAMSIZ - 1).
MAX_INTERFACE_NAME = 15


class ConnectivityCheck(Protocol):
    """
    One thing that must hold for the robot to count as connected.

    `check()` returns None when it holds, else a reason for people to read. A check whose
    `immediate` attribute is true (an interface check) ends connectivity on its first failure
    and is also run on every link notification; other checks (probes; `immediate` may be left
    out) must fail `failures_before_lost` rounds in a row.
    """

    immediate: bool

    def check(self) -> Optional[str]:
        """Return None when connected, else why not."""
        ...


class InterfaceCheck:
    """A network interface that must exist, be up and have carrier."""

    immediate = True

    def __init__(self, *, interface: str, sys_class_net: Path = Path('/sys/class/net')) -> None:
        if (not isinstance(interface, str) or not interface
                or len(interface) > MAX_INTERFACE_NAME or interface in ('.', '..')
                or any(c in interface for c in '/:') or any(c.isspace() for c in interface)):
            raise ValueError(
                f'interface must be a network interface name (1 to {MAX_INTERFACE_NAME} '
                f'characters, no "/", ":" or white space), got {interface!r}')
        self._interface = interface
        self._directory = Path(sys_class_net) / interface

    @property
    def interface(self) -> str:
        return self._interface

    def check(self) -> Optional[str]:
        """
        Return None if the interface is up with carrier, else why not.

        Up means operstate `up`, or `unknown` (loopback, tun) with carrier 1.
        """
        if not self._directory.exists():
            return f'interface {self._interface} does not exist'
        operstate = _read(self._directory / 'operstate')
        carrier = _read(self._directory / 'carrier')  # unreadable (EINVAL) while admin down
        if operstate is None and not self._directory.exists():  # removed meanwhile
            return f'interface {self._interface} does not exist'
        if operstate in ('up', 'unknown') and carrier == '1':
            return None
        carrier_text = 'carrier' if carrier == '1' else 'no carrier'
        if operstate in ('up', 'unknown'):  # carrier just dropped; operstate follows shortly
            return f'interface {self._interface} has no carrier (operstate {operstate})'
        return (f'interface {self._interface} is down '
                f'(operstate {operstate or "unreadable"}, {carrier_text})')

    def __repr__(self) -> str:
        return f'InterfaceCheck(interface={self._interface!r})'


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class ReachabilityCheck:
    """A TCP connection to host:port that must succeed within a timeout."""

    immediate = False

    def __init__(self, *, host: str, port: int, timeout_s: float) -> None:
        if not isinstance(host, str) or not host.strip():
            raise ValueError(f'host must be a non-empty host name or address, got {host!r}')
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f'port must be an integer from 1 to 65535, got {port!r}')
        if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                or not math.isfinite(timeout_s) or timeout_s <= 0):
            raise ValueError(f'timeout_s must be a finite number above 0, got {timeout_s!r}')
        self._host = host.strip()
        self._port = port
        self._timeout_s = float(timeout_s)
        self._label = f'[{self._host}]:{port}' if ':' in self._host else f'{self._host}:{port}'

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def check(self) -> Optional[str]:
        """
        Return None if a TCP connection opens within the timeout, else why not.

        The timeout bounds the connection attempts (all addresses of the host together); name
        resolution is not bounded by it, so configure an address where that matters.
        """
        try:
            addresses = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            return f'{self._label} unreachable: cannot resolve {self._host}: {error.strerror}'
        deadline = time.monotonic() + self._timeout_s
        problem = 'no address'
        for family, kind, proto, _, address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = f'timed out after {self._timeout_s:g} s'
                break
            try:
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(remaining)
                    sock.connect(address)
                return None
            except socket.timeout:
                problem = f'timed out after {self._timeout_s:g} s'
            except OSError as error:
                problem = _describe_os_error(error)
        return f'{self._label} unreachable: {problem}'

    def __repr__(self) -> str:
        return (f'ReachabilityCheck(host={self._host!r}, port={self._port}, '
                f'timeout_s={self._timeout_s:g})')


def _describe_os_error(error: OSError) -> str:
    if error.errno == errno.ECONNREFUSED:
        return 'connection refused'
    if error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


class ConnectivityWatch:
    """
    Run connectivity checks in a thread of its own and report loss and return once each.

    Connectivity starts as ok. It is lost when an immediate check (an interface) fails once,
    or when the other checks (probes) fail in `failures_before_lost` consecutive full rounds;
    `on_lost(reason)` is then called once. It is restored by the first round in which every
    check passes; `on_restored()` is then called once. A check that raises counts as failed,
    with the exception as the reason. Callbacks run in the watch's thread, outside its lock; an
    exception in a callback is logged and the watch goes on.

    Full rounds run `period_s` after the end of the previous one; between them the immediate
    checks alone run every `interface_period_s` (default: `period_s`). With `link_events` (the
    default) and at least one immediate check, the watch also listens to the kernel's link
    notifications (Linux rtnetlink) and runs the immediate checks at once on each; if the
    socket cannot be opened it only polls (see `link_events_active`). When the interfaces come
    back after a loss, the probes run at once rather than at the next full round.
    """

    def __init__(self, *, checks: Sequence[ConnectivityCheck], period_s: float,
                 on_lost: Callable[[str], None],
                 on_restored: Optional[Callable[[], None]] = None,
                 failures_before_lost: int = 1,
                 interface_period_s: Optional[float] = None,
                 link_events: bool = True) -> None:
        checks = list(checks)
        if not checks:
            raise ValueError('checks must name at least one check')
        for check in checks:
            if not callable(getattr(check, 'check', None)):
                raise TypeError(f'a check must have a check() method, got {check!r}')
        if (isinstance(period_s, bool) or not isinstance(period_s, (int, float))
                or not math.isfinite(period_s) or period_s <= 0):
            raise ValueError(f'period_s must be a finite number above 0, got {period_s!r}')
        if interface_period_s is None:
            interface_period_s = period_s
        if (isinstance(interface_period_s, bool)
                or not isinstance(interface_period_s, (int, float))
                or not math.isfinite(interface_period_s) or interface_period_s <= 0):
            raise ValueError(f'interface_period_s must be a finite number above 0 or None, '
                             f'got {interface_period_s!r}')
        if (isinstance(failures_before_lost, bool) or not isinstance(failures_before_lost, int)
                or failures_before_lost < 1):
            raise ValueError(
                f'failures_before_lost must be an integer of at least 1, '
                f'got {failures_before_lost!r}')
        if not callable(on_lost):
            raise TypeError(f'on_lost must be callable, got {on_lost!r}')
        if on_restored is not None and not callable(on_restored):
            raise TypeError(f'on_restored must be callable or None, got {on_restored!r}')
        self._immediate = [c for c in checks if getattr(c, 'immediate', False)]
        self._probes = [c for c in checks if not getattr(c, 'immediate', False)]
        self._period_s = float(period_s)
        self._interface_period_s = (
            min(float(interface_period_s), self._period_s) if self._immediate else self._period_s)
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._failures_before_lost = failures_before_lost
        self._want_link_events = bool(link_events) and bool(self._immediate)
        self._lock = threading.Lock()
        self._lost_reason: Optional[str] = None
        self._failed_rounds = 0
        self._interfaces_down = False  # only the watch thread uses it
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._netlink: Optional[socket.socket] = None
        self._wake_reader: Optional[socket.socket] = None
        self._wake_writer: Optional[socket.socket] = None

    @property
    def lost(self) -> bool:
        """Whether connectivity is lost now."""
        with self._lock:
            return self._lost_reason is not None

    @property
    def lost_reason(self) -> Optional[str]:
        """Why connectivity was lost, or None while it is ok."""
        with self._lock:
            return self._lost_reason

    @property
    def link_events_active(self) -> bool:
        """Whether the watch is listening to kernel link notifications (else it only polls)."""
        return self._netlink is not None

    def start(self) -> None:
        """Start the watch thread; its first round runs at once. A watch starts only once."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError(
                'a ConnectivityWatch can only be started once, and not after stop()')
        if self._want_link_events:
            self._netlink = _open_link_notifications()
            if self._netlink is not None:
                self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(
            target=self._run, name='connectivity-watch', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """
        Stop the watch and wait for its thread; safe to call twice.

        The wait is over once the check in progress returns (a probe: at most its timeout).
        Called from a callback (the watch's own thread), it does not wait. Called before
        `start()`, it only ensures that the watch never starts.
        """
        self._stopping.set()
        writer = self._wake_writer
        if writer is not None:
            try:
                writer.send(b'\0')
            except OSError:
                pass  # already closed by the thread: it has stopped
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> 'ConnectivityWatch':
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            next_full_round = next_interface_round = time.monotonic()
            while not self._stopping.is_set():
                now = time.monotonic()
                self._round(full=now >= next_full_round)
                if now >= next_full_round:
                    next_full_round = time.monotonic() + self._period_s
                if now >= next_interface_round:
                    next_interface_round = time.monotonic() + self._interface_period_s
                self._wait(min(next_full_round, next_interface_round) - time.monotonic())
        finally:
            for sock in (self._netlink, self._wake_reader, self._wake_writer):
                if sock is not None:
                    sock.close()

    def _wait(self, timeout: float) -> None:
        """Return after `timeout`, on stop, or on a link notification."""
        timeout = max(0.0, timeout)
        if self._netlink is None or self._wake_reader is None:
            self._stopping.wait(timeout)
            return
        ready, _, _ = select.select([self._netlink, self._wake_reader], [], [], timeout)
        if self._netlink in ready and not _drain(self._netlink):
            _logger.warning('link notifications failed; polling only')
            self._netlink.close()
            self._netlink = None

    def _round(self, *, full: bool) -> None:
        """Run the immediate checks, then (full round, or interfaces back) the probes."""
        reasons = _run_checks(self._immediate)
        if reasons:
            self._interfaces_down = True
            self._transition('; '.join(reasons))
            return
        interfaces_back, self._interfaces_down = self._interfaces_down, False
        if not full and not interfaces_back:
            return
        reasons = _run_checks(self._probes)
        if not reasons:
            self._transition(None)
            return
        if not full:
            return  # the interfaces are back but a probe is not: the full rounds will tell
        with self._lock:
            self._failed_rounds += 1
            failed_rounds = self._failed_rounds
        if failed_rounds >= self._failures_before_lost:
            reason = '; '.join(reasons)
            if self._failures_before_lost > 1:
                reason += f' ({failed_rounds} rounds in a row)'
            self._transition(reason)

    def _transition(self, reason: Optional[str]) -> None:
        """Record lost (a reason) or ok (None); call the callback if the state changed."""
        with self._lock:
            was_lost = self._lost_reason is not None
            if reason is None:
                self._failed_rounds = 0
                self._lost_reason = None
            elif not was_lost:
                self._lost_reason = reason
        if reason is not None and not was_lost:
            _logger.warning('connectivity lost: %s', reason)
            _call(self._on_lost, reason)
        elif reason is None and was_lost:
            _logger.info('connectivity restored')
            if self._on_restored is not None:
                _call(self._on_restored)


def _run_checks(checks: List[ConnectivityCheck]) -> List[str]:
    reasons = []
    for check in checks:
        try:
            reason = check.check()
        except Exception as error:  # a broken check is a failed check, never a dead thread
            reason = f'{check!r} raised {type(error).__name__}: {error}'
        if reason is not None:
            reasons.append(str(reason))
    return reasons


def _call(callback: Callable[..., None], *args: str) -> None:
    try:
        callback(*args)
    except Exception:
        _logger.exception('connectivity watch callback %r raised', callback)


def _open_link_notifications() -> Optional[socket.socket]:
    """Return a non-blocking rtnetlink socket subscribed to link changes, or None."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_ROUTE)
    except (AttributeError, OSError) as error:  # not Linux, or not allowed
        _logger.info('no link notifications (%s); polling only', error)
        return None
    try:
        sock.bind((0, RTMGRP_LINK))
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        _logger.info('no link notifications (%s); polling only', error)
        return None
    return sock


def _drain(sock: socket.socket) -> bool:
    """Read every pending notification (the checks read the state themselves); False: broken."""
    while True:
        try:
            if not sock.recv(65536):
                return False
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as error:
            if error.errno != errno.ENOBUFS:  # ENOBUFS: some were dropped; the round rechecks
                return False
