"""
The connectivity watch against real link faults, in network namespaces joined by a veth pair.

A watch process runs in namespace `a`; the test takes the veth end in namespace `b` down, which
drops the carrier of `a`'s end, and reads the watch's JSON lines. Skipped where namespaces
cannot be used (not root, no `ip`).
"""

import json
import queue
import subprocess
import sys
import threading
import time

import pytest

from viam_session_harness.netfault.netns import netns_unavailable_reason, NetnsPair

pytestmark = pytest.mark.netns
DEADLINE_S = 15.0

# Runs a ConnectivityWatch with the checks described by argv[1]; one JSON line per event, with
# CLOCK_MONOTONIC (shared by every namespace) so the test can time detection. Stops on EOF.
WATCH_SCRIPT = """
import json
import sys
import time

from viam_session.sessions.connectivity import ConnectivityWatch, InterfaceCheck
from viam_session.sessions.connectivity import ReachabilityCheck

spec = json.loads(sys.argv[1])


def emit(event, **fields):
    print(json.dumps(dict(event=event, t=time.monotonic(), **fields)), flush=True)


checks = []
if 'interface' in spec:
    checks.append(InterfaceCheck(interface=spec['interface']))
if 'host' in spec:
    checks.append(ReachabilityCheck(host=spec['host'], port=spec['port'], timeout_s=0.5))
initial = [check.check() for check in checks]
watch = ConnectivityWatch(
    checks=checks, period_s=spec['period_s'], link_events=spec['link_events'],
    interface_period_s=spec.get('interface_period_s'),
    failures_before_lost=spec.get('failures_before_lost', 1),
    on_lost=lambda reason: emit('lost', reason=reason), on_restored=lambda: emit('restored'))
with watch:
    emit('ready', initial=initial, link_events=watch.link_events_active)
    sys.stdin.read()
emit('stopped')
"""

# A TCP listener that accepts and closes every connection; prints its port.
LISTENER_SCRIPT = """
import socket
import sys

with socket.create_server((sys.argv[1], 0)) as server:
    print(server.getsockname()[1], flush=True)
    while True:
        connection, _ = server.accept()
        connection.close()
"""


class JsonLines:
    """The JSON lines of a process's stdout, read by a thread, awaited with deadlines."""

    def __init__(self, process):
        self.process = process
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, event):
        """Return the next line, which must be `event`; fail at the deadline or on exit."""
        try:
            line = self._lines.get(timeout=DEADLINE_S)
        except queue.Empty:
            pytest.fail(f'no {event!r} line within {DEADLINE_S} s')
        assert line is not None, f'watch process ended (rc {self.process.wait()}) before {event!r}'
        record = json.loads(line)
        assert record['event'] == event, f'expected {event!r}, got {record}'
        return record


@pytest.fixture
def pair():
    """Provide two namespaces joined by a veth pair, deleted after the test."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with NetnsPair() as netns_pair:
        yield netns_pair


def start_watch(pair, spec):
    """Start the watch process in namespace `a` and wait until it is watching."""
    process = pair.run(pair.a.ns, [sys.executable, '-c', WATCH_SCRIPT, json.dumps(spec)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = JsonLines(process)
    ready = lines.expect('ready')
    assert ready['initial'] == [None] * len(ready['initial']), ready
    return process, lines, ready


def stop_watch(process, lines):
    """Close the watch's stdin, wait for its last line and its exit."""
    process.stdin.close()
    lines.expect('stopped')
    assert process.wait(timeout=DEADLINE_S) == 0


# How the watch is told: a link notification alone (the period is longer than the deadline, so
# only a notification can be in time), polling alone, or both with a short interface period.
MODES = {
    'netlink': {'period_s': 60.0, 'link_events': True},
    'polling': {'period_s': 0.2, 'link_events': False},
    'netlink+interface-poll': {
        'period_s': 60.0, 'interface_period_s': 0.02, 'link_events': True},
}


@pytest.mark.parametrize('mode', MODES)
def test_peer_link_down_loses_and_up_restores_interface(pair, mode, record_property):
    """Taking the peer's end down drops our carrier: lost with the reason; up again: restored."""
    process, lines, ready = start_watch(pair, dict(interface=pair.a.dev, **MODES[mode]))
    assert ready['link_events'] is MODES[mode]['link_events']

    before = time.monotonic()
    pair.set_link(pair.b.ns, pair.b.dev, up=False)
    after = time.monotonic()
    lost = lines.expect('lost')
    assert lost['reason'].startswith(f'interface {pair.a.dev} '), lost
    assert 'no carrier' in lost['reason'], lost

    back = time.monotonic()
    pair.set_link(pair.b.ns, pair.b.dev, up=True)
    restored = lines.expect('restored')
    stop_watch(process, lines)

    detection_ms = (lost['t'] - before) * 1000
    record_property('down_to_lost_ms', round(detection_ms, 1))
    record_property('up_to_restored_ms', round((restored['t'] - back) * 1000, 1))
    print(f'{mode}: ip link set down took '
          f'{(after - before) * 1000:.1f} ms, down to lost {detection_ms:.1f} ms, '
          f'up to restored {(restored["t"] - back) * 1000:.1f} ms')


def test_peer_link_down_fails_the_reachability_probe(pair, record_property):
    """A probe to a listener across the link fails once the link is down, and passes again."""
    listener = pair.run(pair.b.ns, [sys.executable, '-c', LISTENER_SCRIPT, pair.b.address],
                        stdout=subprocess.PIPE, text=True)
    port = int(listener.stdout.readline())
    process, lines, ready = start_watch(pair, {
        'host': pair.b.address, 'port': port, 'period_s': 0.2, 'failures_before_lost': 2,
        'link_events': True})
    assert ready['link_events'] is False  # probes only: nothing for link events to wake

    before = time.monotonic()
    pair.set_link(pair.b.ns, pair.b.dev, up=False)
    lost = lines.expect('lost')
    assert lost['reason'].startswith(f'{pair.b.address}:{port} unreachable: '), lost
    assert lost['reason'].endswith(' (2 rounds in a row)'), lost

    back = time.monotonic()
    pair.set_link(pair.b.ns, pair.b.dev, up=True)
    restored = lines.expect('restored')
    stop_watch(process, lines)

    record_property('down_to_lost_ms', round((lost['t'] - before) * 1000, 1))
    print(f'probe (period 0.2 s, timeout 0.5 s, 2 rounds): reason {lost["reason"]!r}, '
          f'down to lost {(lost["t"] - before) * 1000:.1f} ms, '
          f'up to restored {(restored["t"] - back) * 1000:.1f} ms')


def test_own_link_down_is_announced_at_once(pair, record_property):
    """Taking our own end down (admin down) is seen through netlink, with no polling at all."""
    process, lines, _ = start_watch(pair, dict(interface=pair.a.dev, **MODES['netlink']))
    before = time.monotonic()
    pair.set_link(pair.a.ns, pair.a.dev, up=False)
    lost = lines.expect('lost')
    assert lost['reason'] == f'interface {pair.a.dev} is down (operstate down, no carrier)'
    pair.set_link(pair.a.ns, pair.a.dev, up=True)
    lines.expect('restored')
    stop_watch(process, lines)
    record_property('down_to_lost_ms', round((lost['t'] - before) * 1000, 1))
    print(f'own end down, netlink: down to lost {(lost["t"] - before) * 1000:.1f} ms')


def test_interface_check_beside_a_probe_sees_the_link_at_once(pair):
    """With an interface check and a probe, link down is lost at once, not after probe rounds."""
    listener = pair.run(pair.b.ns, [sys.executable, '-c', LISTENER_SCRIPT, pair.b.address],
                        stdout=subprocess.PIPE, text=True)
    port = int(listener.stdout.readline())
    process, lines, ready = start_watch(pair, {
        'interface': pair.a.dev, 'host': pair.b.address, 'port': port, 'period_s': 60.0,
        'failures_before_lost': 3, 'link_events': True})
    assert ready['link_events'] is True

    pair.set_link(pair.b.ns, pair.b.dev, up=False)
    lost = lines.expect('lost')
    assert lost['reason'].startswith(f'interface {pair.a.dev} '), lost
    pair.set_link(pair.b.ns, pair.b.dev, up=True)
    lines.expect('restored')  # the link event runs the probe too, which passes again
    stop_watch(process, lines)
