"""DiscoveryWaits: one check concludes every start waiting for its client's command writer."""

from viam_session.sessions.discovery_waits import DiscoveryWaits


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_wait_ends_when_its_node_is_seen_or_its_time_is_up():
    clock = FakeClock()
    waits = DiscoveryWaits(clock)
    outcomes = []
    for node in ('/a', '/b', '/c'):
        waits.add(node, 5.0, lambda found, node=node: outcomes.append((node, found)))
    waits.check(set())
    assert outcomes == [] and len(waits) == 3
    waits.check({'/b', '/other'})
    assert outcomes == [('/b', True)] and len(waits) == 2
    clock.now += 5.0
    waits.check({'/c'})
    assert outcomes == [('/b', True), ('/a', False), ('/c', True)]
    assert len(waits) == 0


def test_two_waits_for_one_node_both_end():
    waits = DiscoveryWaits(FakeClock())
    outcomes = []
    waits.add('/a', 1.0, outcomes.append)
    waits.add('/a', 1.0, outcomes.append)
    waits.check({'/a'})
    assert outcomes == [True, True]
