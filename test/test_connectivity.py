"""Unit tests of the connectivity watch: interface and reachability checks, lost and restored."""

import math
import socket
import threading
import time

import pytest

from viam_session.sessions.connectivity import ConnectivityWatch, InterfaceCheck
from viam_session.sessions.connectivity import ReachabilityCheck

DEADLINE_S = 10.0  # generous: waits end on events, long before this, even on a loaded box


def fake_interface(sys_class_net, name, operstate, carrier):
    """Create /sys/class/net/<name> with operstate and carrier (None: carrier unreadable)."""
    directory = sys_class_net / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / 'operstate').write_text(operstate + '\n')
    carrier_file = directory / 'carrier'
    if carrier is None:
        carrier_file.unlink(missing_ok=True)
        carrier_file.mkdir()  # reading it fails, as the kernel's does while admin down
    else:
        if carrier_file.is_dir():
            carrier_file.rmdir()
        carrier_file.write_text(f'{carrier}\n')


class ScriptedCheck:
    """A check that returns scripted outcomes, then repeats the last; counts its calls."""

    def __init__(self, outcomes, *, immediate=False):
        self.immediate = immediate
        self._outcomes = list(outcomes)
        self._calls = 0
        self._changed = threading.Condition()

    def check(self):
        """Return the next outcome; raise it if it is an exception."""
        with self._changed:
            outcome = self._outcomes[min(self._calls, len(self._outcomes) - 1)]
            self._calls += 1
            self._changed.notify_all()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @property
    def calls(self):
        """Return how many times check() has been called."""
        with self._changed:
            return self._calls

    def wait_calls(self, count):
        """Wait until check() has been called `count` times; fail at the deadline."""
        with self._changed:
            assert self._changed.wait_for(lambda: self._calls >= count, DEADLINE_S), \
                f'check called {self._calls} times, expected {count}'


class Recorder:
    """Callbacks that record what they were called with, and in which thread."""

    def __init__(self):
        self.events = []
        self.threads = set()
        self.lost_event = threading.Event()
        self.restored_event = threading.Event()

    def on_lost(self, reason):
        """Record a loss."""
        self.events.append(('lost', reason))
        self.threads.add(threading.current_thread().name)
        self.lost_event.set()

    def on_restored(self):
        """Record a return."""
        self.events.append(('restored',))
        self.threads.add(threading.current_thread().name)
        self.restored_event.set()


def watch_of(checks, recorder, **kwargs):
    """Return a fast-polling watch with the recorder's callbacks and no link notifications."""
    kwargs.setdefault('period_s', 0.005)
    kwargs.setdefault('link_events', False)
    return ConnectivityWatch(checks=checks, on_lost=recorder.on_lost,
                             on_restored=recorder.on_restored, **kwargs)


# InterfaceCheck


@pytest.mark.parametrize('operstate', ['up', 'unknown'])
def test_interface_up_with_carrier_is_connected(tmp_path, operstate):
    """An interface up (or unknown, as loopback and tun report) with carrier 1 passes."""
    fake_interface(tmp_path, 'wlan0', operstate, 1)
    assert InterfaceCheck(interface='wlan0', sys_class_net=tmp_path).check() is None


@pytest.mark.parametrize('operstate, carrier, reason', [
    ('down', None, 'interface wlan0 is down (operstate down, no carrier)'),
    ('down', 0, 'interface wlan0 is down (operstate down, no carrier)'),
    ('lowerlayerdown', 0, 'interface wlan0 is down (operstate lowerlayerdown, no carrier)'),
    ('dormant', 1, 'interface wlan0 is down (operstate dormant, carrier)'),
    ('up', 0, 'interface wlan0 has no carrier (operstate up)'),
    ('unknown', 0, 'interface wlan0 has no carrier (operstate unknown)'),
])
def test_interface_down_or_without_carrier_fails_with_reason(tmp_path, operstate, carrier,
                                                             reason):
    """An interface that is not up, or has no carrier, fails with its operstate and carrier."""
    fake_interface(tmp_path, 'wlan0', operstate, carrier)
    assert InterfaceCheck(interface='wlan0', sys_class_net=tmp_path).check() == reason


def test_missing_interface_fails_with_reason(tmp_path):
    """An interface that does not exist fails, and the reason says so."""
    fake_interface(tmp_path, 'eth0', 'up', 1)
    check = InterfaceCheck(interface='wlan0', sys_class_net=tmp_path)
    assert check.check() == 'interface wlan0 does not exist'


def test_interface_check_follows_changes(tmp_path):
    """Each check reads the current state: down, then up again."""
    check = InterfaceCheck(interface='wlan0', sys_class_net=tmp_path)
    fake_interface(tmp_path, 'wlan0', 'up', 1)
    assert check.check() is None
    fake_interface(tmp_path, 'wlan0', 'down', None)
    assert check.check() is not None
    fake_interface(tmp_path, 'wlan0', 'up', 1)
    assert check.check() is None


def test_loopback_of_this_machine_is_up():
    """The real /sys/class/net/lo reports unknown with carrier 1, which passes."""
    assert InterfaceCheck(interface='lo').check() is None


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', 'eth0:1', 'has space', 'x' * 16, None])
def test_interface_check_refuses_bad_names(name):
    """A name that cannot be an interface (or would leave /sys/class/net) is refused."""
    with pytest.raises(ValueError, match='interface must be'):
        InterfaceCheck(interface=name)


# ReachabilityCheck


def test_reachable_listener_passes():
    """A TCP listener on 127.0.0.1 is reachable."""
    with socket.create_server(('127.0.0.1', 0)) as server:
        port = server.getsockname()[1]
        assert ReachabilityCheck(host='127.0.0.1', port=port, timeout_s=5.0).check() is None


def test_closed_port_fails_as_refused():
    """A port with no listener (bound, not listening: the kernel resets) is refused."""
    with socket.socket() as bound:
        bound.bind(('127.0.0.1', 0))
        port = bound.getsockname()[1]
        check = ReachabilityCheck(host='127.0.0.1', port=port, timeout_s=5.0)
        assert check.check() == f'127.0.0.1:{port} unreachable: connection refused'


def test_full_listener_fails_as_timed_out():
    """A listener whose accept queue is full drops SYNs: the probe times out after its timeout."""
    with socket.socket() as server:
        server.bind(('127.0.0.1', 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the queue; later connections are left hanging
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(('127.0.0.1', port))
                fillers.append(filler)
            check = ReachabilityCheck(host='127.0.0.1', port=port, timeout_s=0.2)
            started = time.monotonic()
            reason = check.check()
            elapsed = time.monotonic() - started
        finally:
            for filler in fillers:
                filler.close()
    assert reason == f'127.0.0.1:{port} unreachable: timed out after 0.2 s'
    assert elapsed >= 0.2


def test_unresolvable_host_fails_with_reason():
    """A name that does not resolve fails, and the reason says so."""
    reason = ReachabilityCheck(host='no-such-host.invalid', port=80, timeout_s=1.0).check()
    assert reason.startswith('no-such-host.invalid:80 unreachable: cannot resolve')


@pytest.mark.parametrize('kwargs, message', [
    ({'host': '', 'port': 80, 'timeout_s': 1.0}, 'host must be'),
    ({'host': '  ', 'port': 80, 'timeout_s': 1.0}, 'host must be'),
    ({'host': None, 'port': 80, 'timeout_s': 1.0}, 'host must be'),
    ({'host': 'h', 'port': 0, 'timeout_s': 1.0}, 'port must be an integer from 1 to'),
    ({'host': 'h', 'port': 65536, 'timeout_s': 1.0}, 'port must be an integer from 1 to'),
    ({'host': 'h', 'port': '80', 'timeout_s': 1.0}, 'port must be an integer from 1 to'),
    ({'host': 'h', 'port': True, 'timeout_s': 1.0}, 'port must be an integer from 1 to'),
    ({'host': 'h', 'port': 80, 'timeout_s': 0}, 'timeout_s must be a finite number above 0'),
    ({'host': 'h', 'port': 80, 'timeout_s': -1.0}, 'timeout_s must be a finite number above 0'),
    ({'host': 'h', 'port': 80, 'timeout_s': math.nan}, 'timeout_s must be a finite number'),
    ({'host': 'h', 'port': 80, 'timeout_s': math.inf}, 'timeout_s must be a finite number'),
])
def test_reachability_check_refuses_bad_arguments(kwargs, message):
    """Bad host, port or timeout is refused with a message that names the argument."""
    with pytest.raises(ValueError, match=message):
        ReachabilityCheck(**kwargs)


def test_ipv6_reason_brackets_the_address():
    """An IPv6 address is written [address]:port in reasons."""
    check = ReachabilityCheck(host='::1', port=9, timeout_s=1.0)
    assert repr(check) == "ReachabilityCheck(host='::1', port=9, timeout_s=1)"
    reason = check.check()
    assert reason is None or reason.startswith('[::1]:9 unreachable: ')


# ConnectivityWatch


def test_lost_and_restored_are_reported_once_each():
    """Several failed rounds call on_lost once; several good rounds after, on_restored once."""
    recorder = Recorder()
    check = ScriptedCheck([None, 'link gone', 'link gone', 'link gone', None, None, None])
    with watch_of([check], recorder) as watch:
        assert recorder.lost_event.wait(DEADLINE_S)
        assert recorder.restored_event.wait(DEADLINE_S)
        check.wait_calls(9)  # rounds 1 to 8 are over, callbacks included
        assert not watch.lost
    assert recorder.events == [('lost', 'link gone'), ('restored',)]
    assert recorder.threads == {'connectivity-watch'}


def test_probe_failures_count_only_when_consecutive():
    """With failures_before_lost 3, two failed probe rounds then a good one lose nothing."""
    recorder = Recorder()
    check = ScriptedCheck([None, 'refused', 'refused', None, 'refused', 'refused', 'refused',
                           'refused', None])
    rounds_at_loss = []
    watch = ConnectivityWatch(
        checks=[check], period_s=0.005, failures_before_lost=3, link_events=False,
        on_lost=lambda reason: (rounds_at_loss.append(check.calls), recorder.on_lost(reason)),
        on_restored=recorder.on_restored)
    with watch:
        assert recorder.lost_event.wait(DEADLINE_S)
        assert recorder.restored_event.wait(DEADLINE_S)
        assert not watch.lost
    assert rounds_at_loss == [7]  # the 3rd failure in a row, not the 4th failure in all
    assert recorder.events == [('lost', 'refused (3 rounds in a row)'), ('restored',)]


def test_interface_failure_counts_at_once():
    """An interface check ends connectivity at its first failure, whatever failures_before_lost."""
    recorder = Recorder()
    interface = ScriptedCheck([None, 'interface wlan0 does not exist', None], immediate=True)
    probe = ScriptedCheck([None])
    with watch_of([probe, interface], recorder, failures_before_lost=5):
        assert recorder.lost_event.wait(DEADLINE_S)
        assert recorder.restored_event.wait(DEADLINE_S)
    assert recorder.events == [('lost', 'interface wlan0 does not exist'), ('restored',)]


def test_probes_are_skipped_while_an_interface_is_down():
    """Interface checks run first; while one fails, the (slow) probes are not run."""
    recorder = Recorder()
    interface = ScriptedCheck(['interface eth0 is down'], immediate=True)
    probe = ScriptedCheck([None])
    with watch_of([probe, interface], recorder):
        interface.wait_calls(5)
    assert probe.calls == 0
    assert recorder.events == [('lost', 'interface eth0 is down')]


def test_interfaces_are_polled_between_probe_rounds():
    """With a short interface_period_s, interfaces are checked between rare probe rounds."""
    recorder = Recorder()
    interface = ScriptedCheck([None, None, 'interface eth0 is down', None], immediate=True)
    probe = ScriptedCheck([None])
    with watch_of([probe, interface], recorder, period_s=3600.0, interface_period_s=0.005):
        assert recorder.lost_event.wait(DEADLINE_S)
        assert recorder.restored_event.wait(DEADLINE_S)
        interface.wait_calls(10)
    # one full round at the start; the probe runs again only to confirm the return
    assert probe.calls == 2
    assert recorder.events == [('lost', 'interface eth0 is down'), ('restored',)]


def test_probe_failing_after_interfaces_return_waits_for_full_rounds():
    """If the interfaces come back but the probe still fails, the watch stays lost."""
    recorder = Recorder()
    interface = ScriptedCheck([None, 'interface eth0 is down', None], immediate=True)
    probe = ScriptedCheck([None, 'refused'])
    with watch_of([probe, interface], recorder, period_s=3600.0,
                  interface_period_s=0.005) as watch:
        interface.wait_calls(10)
        assert watch.lost
    assert probe.calls == 2
    assert recorder.events == [('lost', 'interface eth0 is down')]


def test_all_failing_checks_are_named():
    """When several probes fail in one round, the reason names each."""
    recorder = Recorder()
    checks = [ScriptedCheck(['a:1 unreachable']), ScriptedCheck(['b:2 unreachable'])]
    with watch_of(checks, recorder) as watch:
        assert recorder.lost_event.wait(DEADLINE_S)
        assert watch.lost_reason == 'a:1 unreachable; b:2 unreachable'
    assert recorder.events == [('lost', 'a:1 unreachable; b:2 unreachable')]


def test_exception_in_check_is_a_failure_and_the_watch_goes_on():
    """A check that raises counts as failed with the exception as reason; the thread lives on."""
    recorder = Recorder()
    check = ScriptedCheck([OSError('sysfs gone'), None])
    with watch_of([check], recorder):
        assert recorder.lost_event.wait(DEADLINE_S)
        assert recorder.restored_event.wait(DEADLINE_S)
    (kind, reason), restored = recorder.events
    assert kind == 'lost' and 'raised OSError: sysfs gone' in reason
    assert restored == ('restored',)


def test_exception_in_callback_does_not_stop_the_watch():
    """An on_lost that raises is logged; the watch still reports the return."""
    restored = threading.Event()

    def on_lost(reason):
        raise RuntimeError('callback broken')

    check = ScriptedCheck(['down', None])
    watch = ConnectivityWatch(checks=[check], period_s=0.005, on_lost=on_lost,
                              on_restored=restored.set, link_events=False)
    with watch:
        assert restored.wait(DEADLINE_S)


def test_callbacks_run_outside_the_lock_and_may_stop_the_watch():
    """A callback may read the watch's state and call stop() without deadlock."""
    seen = []
    done = threading.Event()
    watch = None

    def on_lost(reason):
        seen.append((watch.lost, watch.lost_reason))
        watch.stop()
        done.set()

    watch = ConnectivityWatch(checks=[ScriptedCheck(['down'])], period_s=0.005,
                              on_lost=on_lost, link_events=False)
    watch.start()
    assert done.wait(DEADLINE_S)
    watch._thread.join(DEADLINE_S)
    assert not watch._thread.is_alive()
    watch.stop()
    assert seen == [(True, 'down')]


@pytest.mark.parametrize('link_events', [False, True])
def test_stop_is_prompt_and_idempotent(link_events):
    """stop() ends a watch with a long period at once (an event wait), and may be repeated."""
    recorder = Recorder()
    check = ScriptedCheck([None], immediate=True)
    watch = watch_of([check], recorder, period_s=3600.0, link_events=link_events)
    watch.start()
    check.wait_calls(1)
    started = time.monotonic()
    watch.stop()
    elapsed = time.monotonic() - started
    watch.stop()
    assert elapsed < DEADLINE_S / 2  # a sleeping watch would take the whole hour
    assert not watch._thread.is_alive()
    assert recorder.events == []


def test_start_twice_or_after_stop_is_refused():
    """A watch starts once; stop() before start() is allowed and means it never runs."""
    with watch_of([ScriptedCheck([None])], Recorder()) as watch:
        with pytest.raises(RuntimeError, match='only be started once'):
            watch.start()
    watch = watch_of([ScriptedCheck([None])], Recorder())
    watch.stop()
    watch.stop()
    with pytest.raises(RuntimeError, match='not after stop'):
        watch.start()


def test_link_notifications_are_used_on_linux_with_an_interface_check():
    """With an interface check, the watch listens to rtnetlink link changes; without, it polls."""
    with watch_of([ScriptedCheck([None], immediate=True)], Recorder(),
                  link_events=True) as watch:
        assert watch.link_events_active
    with watch_of([ScriptedCheck([None])], Recorder(), link_events=True) as watch:
        assert not watch.link_events_active


def test_without_netlink_the_watch_polls(monkeypatch):
    """If the netlink socket cannot be opened, the watch falls back to polling and still works."""
    real_socket = socket.socket

    def no_netlink(family=-1, *args, **kwargs):
        if family == socket.AF_NETLINK:
            raise PermissionError('netlink not allowed here')
        return real_socket(family, *args, **kwargs)

    monkeypatch.setattr(socket, 'socket', no_netlink)
    recorder = Recorder()
    check = ScriptedCheck([None, 'down', None], immediate=True)
    with watch_of([check], recorder, link_events=True) as watch:
        assert not watch.link_events_active
        assert recorder.restored_event.wait(DEADLINE_S)
    assert recorder.events == [('lost', 'down'), ('restored',)]


@pytest.mark.parametrize('kwargs, error, message', [
    ({'checks': []}, ValueError, 'at least one check'),
    ({'checks': [object()]}, TypeError, 'check\\(\\) method'),
    ({'period_s': 0}, ValueError, 'period_s must be a finite number above 0'),
    ({'period_s': math.nan}, ValueError, 'period_s must be a finite number above 0'),
    ({'period_s': math.inf}, ValueError, 'period_s must be a finite number above 0'),
    ({'interface_period_s': 0}, ValueError, 'interface_period_s must be a finite number'),
    ({'interface_period_s': math.nan}, ValueError, 'interface_period_s must be a finite'),
    ({'failures_before_lost': 0}, ValueError, 'failures_before_lost must be an integer'),
    ({'failures_before_lost': 1.5}, ValueError, 'failures_before_lost must be an integer'),
    ({'on_lost': None}, TypeError, 'on_lost must be callable'),
    ({'on_restored': 'x'}, TypeError, 'on_restored must be callable or None'),
])
def test_watch_refuses_bad_arguments(kwargs, error, message):
    """Bad checks, period, failure count or callbacks are refused with a clear message."""
    arguments = {'checks': [ScriptedCheck([None])], 'period_s': 1.0, 'on_lost': print}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        ConnectivityWatch(**arguments)
