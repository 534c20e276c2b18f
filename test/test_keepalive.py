"""Keep-alive rounds (ROS-free) and their thread: what is re-sent, and a lapse that ends them."""

import threading

from viam_session.sessions.keepalive import KeepAliveRounds, KeepAlives, LapsedActuators

LAPSE_S = 0.3


class _SteppingClock:
    """A clock that advances 1 ms per reading, and jumps when told (from any thread)."""

    def __init__(self):
        self._now = 0.0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self._now += 0.001
            return self._now

    def jump(self, seconds):
        with self._lock:
            self._now += seconds


def _recorder(sent, name):
    return lambda value: sent.append((name, value))


def test_rounds_resend_the_last_value_of_each_driven_actuator():
    sent = []
    rounds = KeepAliveRounds()
    rounds.drive('/left', _recorder(sent, '/left'), 0.5, now=0.0, lapse_s=LAPSE_S)
    rounds.drive('/right', _recorder(sent, '/right'), 0.2, now=0.05, lapse_s=LAPSE_S)
    rounds.drive('/left', _recorder(sent, '/left'), 0.7, now=0.08, lapse_s=LAPSE_S)
    sends, lapsed = rounds.take_round(now=0.1)
    for send, value in sends:
        send(value)
    assert sorted(sent) == [('/left', 0.7), ('/right', 0.2)] and lapsed == {}


def test_a_released_actuator_is_not_resent():
    sent = []
    rounds = KeepAliveRounds()
    rounds.drive('/left', _recorder(sent, '/left'), 0.5, now=0.0, lapse_s=LAPSE_S)
    assert rounds.release('/left') is True
    assert rounds.release('/left') is False
    assert rounds.take_round(now=0.1) == ([], {})
    assert rounds.driven == []


def test_a_late_round_sends_nothing_and_releases_everything():
    rounds = KeepAliveRounds()
    rounds.drive('/left', lambda value: None, 0.5, now=0.0, lapse_s=LAPSE_S)
    rounds.drive('/right', lambda value: None, 0.5, now=0.0, lapse_s=LAPSE_S)
    assert len(rounds.take_round(now=0.1)[0]) == 2
    assert len(rounds.take_round(now=0.09 + LAPSE_S)[0]) == 2  # late, but not by more than lapse_s
    sends, lapsed = rounds.take_round(now=0.1 + 2 * LAPSE_S)
    assert sends == [] and lapsed == {'/left': 0.5, '/right': 0.5} and rounds.driven == []
    # The owner's next command drives again, and the rounds start from it.
    rounds.drive('/left', lambda value: None, 0.5, now=5.0, lapse_s=LAPSE_S)
    assert len(rounds.take_round(now=5.1)[0]) == 1


def test_time_without_anything_driven_is_no_lapse():
    rounds = KeepAliveRounds()
    rounds.drive('/left', lambda value: None, 0.5, now=0.0, lapse_s=LAPSE_S)
    rounds.release('/left')
    rounds.take_round(now=0.1)
    rounds.drive('/left', lambda value: None, 0.5, now=10.0, lapse_s=LAPSE_S)
    sends, lapsed = rounds.take_round(now=10.1)
    assert len(sends) == 1 and lapsed == {}


def test_the_thread_resends_and_stops_at_release():
    sent = threading.Semaphore(0)
    values = []

    def send(value):
        values.append(value)
        sent.release()

    keepalives = KeepAlives(period_s=0.01, on_lapse=lambda names, late: None)
    try:
        keepalives.drive('/motor', send, 0.4, lapse_s=60.0)
        for _ in range(3):
            assert sent.acquire(timeout=30)
        keepalives.release('/motor')
        count = len(values)
        # Once release() returned nothing more is sent: the next round (a drive of another
        # actuator marks it) finds only that one.
        other = threading.Event()
        keepalives.drive('/other', lambda value: other.set(), 0.1, lapse_s=60.0)
        assert other.wait(timeout=30)
        assert len(values) == count and set(values) == {0.4}
    finally:
        keepalives.close()


def test_the_thread_reports_a_lapse_and_sends_nothing_after_it():
    """A clock that jumps past the lapse (a frozen process resumed) ends the keep-alives."""
    clock = _SteppingClock()
    lapses = []
    lapsed = threading.Event()
    sent = []
    keepalives = KeepAlives(period_s=0.01, clock=clock,
                            on_lapse=lambda names, late: (lapses.append(names), lapsed.set()))
    try:
        keepalives.drive('/motor', sent.append, 0.4, lapse_s=0.3)
        clock.jump(5.0)   # the whole process stood still for five seconds
        assert lapsed.wait(timeout=30)
        assert lapses == [{'/motor': 0.4}]
        count = len(sent)
        keepalives.drive('/other', lambda value: None, 0.1, lapse_s=0.3)  # the thread goes on
        keepalives.release('/other')
        assert len(sent) == count
    finally:
        keepalives.close()


def test_a_lapse_reports_the_gap_between_rounds_including_a_slow_send():
    """A send that stalls (the interpreter or DDS busy) counts: the gap is round to round."""
    clock = _SteppingClock()

    def slow_send(value):
        clock.jump(2.0)   # the send itself took two seconds

    gaps = []
    lapsed = threading.Event()
    keepalives = KeepAlives(period_s=0.01, clock=clock,
                            on_lapse=lambda names, gap_s: (gaps.append(gap_s), lapsed.set()))
    try:
        keepalives.drive('/motor', slow_send, 0.4, lapse_s=0.3)
        assert lapsed.wait(timeout=30)
        assert gaps[0] > 2.0, gaps  # the sleep before it was only one period
    finally:
        keepalives.close()


def test_only_the_actuators_whose_watchdog_may_have_tripped_lapse():
    rounds = KeepAliveRounds()
    rounds.drive('/short', lambda value: None, 0.5, now=0.0, lapse_s=0.3)
    rounds.drive('/long', lambda value: None, 0.2, now=0.0, lapse_s=2.0)
    sends, lapsed = rounds.take_round(now=1.0)
    assert sends == [(sends[0][0], 0.2)] and lapsed == {'/short': 0.5}
    assert rounds.driven == ['/long']


def test_a_lapsed_actuator_resumes_a_window_later_if_its_owner_still_owns_it():
    lapsed = LapsedActuators()
    owners = {'/left': 'a', '/right': 'b'}
    lapsed.add('/left', 'a', 0.5, window_s=2.0, now=10.0)
    lapsed.add('/right', 'b', 0.3, window_s=1.0, now=10.0)
    assert lapsed.next_resume() == 11.0
    assert lapsed.take_due(10.9, owners.get) == []
    del owners['/right']            # b is over: nothing to resume
    assert lapsed.take_due(11.0, owners.get) == []
    assert lapsed.take_due(12.0, owners.get) == [('/left', 0.5)]
    assert lapsed.next_resume() is None


def test_a_later_lapse_restarts_the_wait_and_a_command_cancels_it():
    lapsed = LapsedActuators()
    owners = {'/left': 'a', '/right': 'b'}
    lapsed.add('/left', 'a', 0.5, window_s=2.0, now=10.0)
    lapsed.add('/right', 'b', 0.3, window_s=2.0, now=11.5)
    assert lapsed.take_due(12.0, owners.get) == []     # /left waits from 11.5 now
    lapsed.discard('/right')
    assert lapsed.take_due(13.5, owners.get) == [('/left', 0.5)]
    owners['/left'] = 'c'           # taken over by another session meanwhile: not resumed
    lapsed.add('/left', 'a', 0.5, window_s=2.0, now=20.0)
    assert lapsed.take_due(22.0, owners.get) == []
