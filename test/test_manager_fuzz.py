"""
A hypothesis fuzz of start, end, stop_session_resources and commands against a real manager.

Each example sends a few requests with generated fields (any text, huge text, ids of the
fuzz's own sessions live or over, topics valid or not, of other types, with writers whose QoS
cannot match, the probe's; any Duration; any float) to one manager process, while a healthy
probe session drives `/motor` beside them (input_rig). After every example the manager must be
alive, must have answered every request, refusals must say why in one short line, requests that
break a rule every robot keeps (the probe's topic, a window out of bounds, a bad topic name, a
client name too long) must be refused, and the probe's session and motor must be untouched.

VIAM_SESSION_FUZZ_EXAMPLES=N runs N examples with a random seed (the suite: 300, seeded).
"""

from collections import Counter
from dataclasses import dataclass
import os
import re
from typing import Iterator, List, Optional

from builtin_interfaces.msg import Duration
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import pytest
from rclpy.duration import Duration as RclDuration
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.sessions.names import check_topic_name
from viam_session.time_convert import duration_to_seconds
from viam_session_interfaces.msg import Heartbeat

from input_rig import (  # noqa: I100 - the tests' own helpers
    assert_probe_untouched, input_rig, InputRig, MANAGER, SPARE)

LONG_RUN = os.environ.get('VIAM_SESSION_FUZZ_EXAMPLES')
EXAMPLES = int(LONG_RUN) if LONG_RUN else 300
LONGEST_REASON = 400
MIN_WINDOW_S, MAX_WINDOW_S, MAX_CLIENT = 0.03, 60.0, 256
SESSION_ID = re.compile('[0-9a-f]{32}')

# No lone surrogates: a str that cannot be UTF-8 cannot be sent by rclpy at all.
TEXT = st.text(st.characters(blacklist_categories=('Cs',)), max_size=40)
HUGE_TEXT = st.builds(lambda character, count: character * count,
                      st.characters(blacklist_categories=('Cs',)), st.integers(200, 20_000))
ANY_TEXT = st.one_of(TEXT, TEXT, HUGE_TEXT)
IDENTIFIER = st.from_regex(r'[a-z_][a-z0-9_]{0,12}', fullmatch=True)
VALID_TOPIC = st.lists(IDENTIFIER, min_size=1, max_size=3).map(
    lambda parts: '/fuzz/' + '/'.join(parts))
# Topics the manager's graph knows with another type, and this process's odd writers (below).
TAKEN_TOPICS = ['/rosout', '/parameter_events', '/diagnostics', f'{MANAGER}/command',
                f'{MANAGER}/events', f'{MANAGER}/rejections', f'{SPARE}/command']
ODD_WRITERS = {
    '/fuzz_writers/string': (String, QoSProfile(depth=1)),
    '/fuzz_writers/best_effort': (Heartbeat, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
        liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
        liveliness_lease_duration=RclDuration(seconds=0.1))),
    '/fuzz_writers/automatic': (Heartbeat, QoSProfile(
        depth=1, liveliness=LivelinessPolicy.AUTOMATIC,
        liveliness_lease_duration=RclDuration(seconds=0.1))),
    '/fuzz_writers/long_lease': (Heartbeat, heartbeat_qos(3600.0)),
    '/fuzz_writers/fitting': (Heartbeat, heartbeat_qos(0.05)),
}
DURATION = st.one_of(
    st.builds(Duration, sec=st.integers(-2 ** 31, 2 ** 31 - 1),
              nanosec=st.integers(0, 2 ** 32 - 1)),
    st.builds(Duration, sec=st.integers(-2, 70), nanosec=st.integers(0, 999_999_999)),
    st.sampled_from([Duration(), Duration(nanosec=100_000_000), Duration(sec=1)]))
VALUE = st.one_of(st.floats(), st.sampled_from([0.0, 0.3, -1.0, 1.0, 1e308, -5.0]))
# An index into the ids the fuzz has seen (its own sessions, live or over), or none.
KNOWN = st.integers(0, 2 ** 16)


@dataclass
class Start:
    client: str
    topic: object  # a str, or a sampled kind resolved against the rig (see `_topic`)
    window: Duration
    resume: object
    client_node: str
    local: bool


@dataclass
class End:
    session: object


@dataclass
class Stop:
    session: object


@dataclass
class Command:
    session: object
    resource: str
    value: float


def _mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Draw from `usual` three times in four: each odd field alone makes a start fail."""
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda is_usual: usual if is_usual else odd)


SESSION = st.one_of(ANY_TEXT, KNOWN, KNOWN, st.just(''), st.just('0' * 32))
TOPIC = st.one_of(ANY_TEXT, VALID_TOPIC, VALID_TOPIC, st.sampled_from(TAKEN_TOPICS),
                  st.sampled_from(sorted(ODD_WRITERS)), st.sampled_from(['probe', 'reused']))
START = st.builds(
    Start, client=_mostly(st.sampled_from(['fuzz', 'probe']), ANY_TEXT), topic=TOPIC,
    window=DURATION, resume=_mostly(st.just(''), SESSION),
    client_node=_mostly(st.sampled_from(['', '', '/input_rig']),
                        st.sampled_from(['/nobody']) | ANY_TEXT),
    local=st.booleans())
REQUEST = st.one_of(
    START, START, START, st.builds(End, SESSION), st.builds(Stop, SESSION),
    st.builds(Command, SESSION, st.sampled_from([SPARE, SPARE, '/motor', '/nope']) | ANY_TEXT,
              VALUE))


class Fuzzer:
    """Sends generated requests; remembers the ids and topics of the sessions it opened."""

    def __init__(self, rig: InputRig) -> None:
        self.rig = rig
        self.ids: List[str] = []
        self.topics: List[str] = []
        self.requests = 0
        # How the replies went, by their first words: what the fuzz reached, for its report.
        self.outcomes: Counter = Counter()
        for topic, (message_type, qos) in ODD_WRITERS.items():
            writer = rig.node.create_publisher(message_type, topic, qos)
            if qos.liveliness == LivelinessPolicy.MANUAL_BY_TOPIC:
                writer.assert_liveliness()

    def send(self, request: object) -> None:
        self.requests += 1
        if isinstance(request, Start):
            self._start(request)
        elif isinstance(request, End):
            self._check_reply(self.rig.end(self._session(request.session)))
        elif isinstance(request, Stop):
            self._check_reply(self.rig.stop(self._session(request.session)))
        else:
            session_id = self._session(request.session)
            # /motor is the probe's: a session of the fuzz would take it over (the latest
            # commander owns), so only ids that are no session's go to it.
            resource = SPARE if request.resource == '/motor' and session_id in self.ids \
                else request.resource
            self.rig.command(session_id, resource, request.value)

    def _start(self, request: Start) -> None:
        topic = self._topic(request.topic)
        response = self.rig.start(
            request.client, topic, window=request.window,
            resume_session_id=self._session(request.resume), client_node=request.client_node,
            local=request.local)
        self._check_reply(response)
        must_refuse = self._must_refuse(request, topic)
        if response.success:
            assert must_refuse is None, f'accepted, though {must_refuse}: {request}'
            assert SESSION_ID.fullmatch(response.session_id), response.session_id
            assert MIN_WINDOW_S <= duration_to_seconds(response.window) <= MAX_WINDOW_S
            if response.session_id not in self.ids:
                self.ids.append(response.session_id)
            self.topics.append(topic)

    def _must_refuse(self, request: Start, topic: str) -> Optional[str]:
        """Return why every robot refuses this start, or None if it might accept it."""
        window_s = duration_to_seconds(request.window)
        # What the manager receives: a C string ends at its first NUL.
        topic, client = (text.split('\0', 1)[0] for text in (topic, request.client))
        if topic == self.rig.probe_topic:
            return "the topic is the probe's"
        if window_s != 0.0 and not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
            return f'the window {window_s} s is out of bounds'
        if len(client) > MAX_CLIENT:
            return 'the client name is too long'
        if topic in TAKEN_TOPICS:
            return 'the topic has another type'
        try:
            check_topic_name(topic, 'topic')
        except ValueError as error:
            return str(error)
        return None

    def _topic(self, topic: object) -> str:
        if topic == 'probe':
            return self.rig.probe_topic
        if topic == 'reused':
            return self.topics[-1] if self.topics else '/fuzz/none_yet'
        return topic

    def _session(self, session: object) -> str:
        if isinstance(session, int):
            return self.ids[session % len(self.ids)] if self.ids else ''
        return session

    def _check_reply(self, response: object) -> None:
        shape = re.sub(r"[0-9a-f]{32}|'[^']*'.*|/\S*|\d\S*|\(.*", '_', response.message)
        self.outcomes[shape[:50]] += 1
        if not response.success:
            assert response.message, f'refused without a reason: {response}'
        assert '\n' not in response.message and len(response.message) < LONGEST_REASON, \
            response.message


@pytest.fixture(scope='module')
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    # A client_node nobody has costs one discovery timeout: the shortest the manager takes.
    for rig in input_rig(tmp_path_factory.mktemp('fuzz'), ['discovery_timeout_s:=0.1']):
        yield Fuzzer(rig)


def test_no_request_stops_the_manager_or_touches_another_session(fuzzer):
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG_RUN,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(REQUEST, min_size=1, max_size=4))
    def run(requests: List[object]) -> None:
        for request in requests:
            fuzzer.send(request)
        assert_probe_untouched(fuzzer.rig)

    run()
    fuzzer.rig.drain()
    assert_probe_untouched(fuzzer.rig)
    rejections = [s.message for s in fuzzer.rig.robot.rejections.snapshot()]
    unclear = [r for r in rejections if not r.reason or '\n' in r.reason
               or len(r.reason) >= LONGEST_REASON]
    assert not unclear, f'rejections without a one-line reason: {unclear[:3]}'
    print(f'fuzz: {EXAMPLES} examples, {fuzzer.requests} requests, '
          f'{len(fuzzer.ids)} sessions opened, {len(rejections)} rejections; '
          f'replies: {dict(fuzzer.outcomes.most_common())}')
