"""The session manager's connectivity parameters, turned into a ConnectivityWatch (or none)."""

from typing import Callable, List, Optional

from rclpy.node import Node

from viam_session.parameters import (
    declare_float, declare_int, declare_string, declare_string_array)
from viam_session.sessions.connectivity import (
    ConnectivityCheck, ConnectivityWatch, InterfaceCheck, ReachabilityCheck)

__all__ = ['declare_connectivity_watch', 'parse_probe']


def parse_probe(text: str, timeout_s: float) -> ReachabilityCheck:
    """Turn 'host:port' (IPv6 as '[::1]:port') into a probe; raise ValueError with the reason."""
    host, separator, port = text.rpartition(':')
    if not separator or not port.isdigit():
        raise ValueError(f"connectivity_probe must be 'host:port', got {text!r}")
    return ReachabilityCheck(host=host.strip('[]'), port=int(port), timeout_s=timeout_s)


def declare_connectivity_watch(node: Node, *, on_lost: Callable[[str], None],
                               on_restored: Callable[[], None]) -> Optional[ConnectivityWatch]:
    """Declare the connectivity parameters; return a watch (not started), or None if unused."""
    interfaces = declare_string_array(
        node, 'connectivity_interfaces',
        'Network interfaces (e.g. wlan0) whose loss of carrier ends every remote session at '
        'once. Empty: no interface is watched.')
    probe = declare_string(
        node, 'connectivity_probe', '',
        "A 'host:port' the robot must reach over TCP; when it cannot, every remote session "
        'ends. Empty: no probe.')
    period_s = declare_float(node, 'connectivity_period_s', 0.5,
                             'How often the reachability probe runs.', low=0.01, high=60.0)
    interface_period_s = declare_float(
        node, 'connectivity_interface_period_s', 0.05,
        'How often the interfaces are read (two sysfs reads each; the kernel batches its link '
        'notifications up to a second, so they alone are too slow).', low=0.005, high=60.0)
    timeout_s = declare_float(node, 'connectivity_probe_timeout_s', 0.5,
                              'How long one reachability probe may take.', low=0.01, high=60.0)
    failures = declare_int(
        node, 'connectivity_probe_failures', 2,
        'Consecutive failed probes that count as lost connectivity (an interface that goes '
        'down counts at once).', low=1, high=100)
    checks: List[ConnectivityCheck] = [
        InterfaceCheck(interface=name) for name in interfaces if name]
    if probe:
        checks.append(parse_probe(probe, timeout_s))
    if not checks:
        return None
    node.get_logger().info(
        f'connectivity watch: interfaces {[n for n in interfaces if n]}, probe {probe or "none"}')
    return ConnectivityWatch(checks=checks, period_s=period_s, on_lost=on_lost,
                             on_restored=on_restored, failures_before_lost=failures,
                             interface_period_s=interface_period_s)
