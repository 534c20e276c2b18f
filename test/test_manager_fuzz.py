"""
A hypothesis fuzz of start, end, stop_session_resources and commands against a real manager.

Each example sends a few requests with generated fields (any text, huge text, the secret ids
and public handles of the fuzz's own sessions live or over, each where the other is due, the
probe's handle; topics valid or not, of other types, with writers whose QoS cannot match, the
probe's; any Duration; any float; command tags good, missing, zero, random or keyed by the
handle; sequences next, repeated, zero or any) to one manager process, while a healthy probe
session drives `/motor` beside them (input_rig). After every example the manager must be
alive, must have answered every request, refusals must say why in one short line and carry no
id, requests that break a rule every robot keeps (the probe's topic, a window out of bounds, a
bad topic name, a client name too long, a resume with anything but a secret of the same
client's session) must be refused, an end or resume with anything but a secret gets the one
unknown-id answer, no reply shows a secret the request did not carry, and the probe's session
and motor must be untouched. At the end, every rejection that names a session names one of the
fuzz's own, and none that refuses a command as not its session's (unknown handle, wrong tag,
replayed sequence) names any. A stop never names the probe's handle: that stops its motor, as
it should.

VIAM_SESSION_FUZZ_EXAMPLES=N runs N examples with a random seed (the suite: 300, seeded).
"""

from collections import Counter
from dataclasses import dataclass
import os
import re
from typing import Dict, Iterator, List, Optional

from builtin_interfaces.msg import Duration
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import pytest
from rclpy.duration import Duration as RclDuration
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from viam_session.sessions.command_auth import command_tag
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
HANDLE = re.compile('[0-9a-f]{16}')
UNKNOWN_ID = '{action} refused: unknown session id'
MAX_SEQUENCE = 2 ** 64 - 1
# Topics given a heartbeat writer the rig asserts (as a client would), at most this many at
# once: the oldest is silenced (its session expires) when a new one is made.
LIVE_TOPICS = 8
LIVE_LEASE_S = 0.5
# A start's client named so takes the name of the client whose session it resumes (if any).
OWNER = 'owner of the resumed session'

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
# An index into the sessions the fuzz has opened (live or over), or none.
KNOWN = st.integers(0, 2 ** 16)
SECRET_OF = st.builds(lambda index: ('secret', index), KNOWN)
HANDLE_OF = st.builds(lambda index: ('handle', index), KNOWN)
# The secret of a session whose heartbeat writer the fuzz still asserts (see `_topic`).
LIVE_SECRET_OF = st.builds(lambda index: ('live secret', index), KNOWN)
PROBE_HANDLE = st.just(('probe handle', 0))


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
    tag: object       # bytes, or a kind resolved against the session (see `_tag`)
    sequence: object  # an int, or 'next' or 'same' (the fuzz's last for that session)


@dataclass
class Opened:
    secret: str
    handle: str
    client: str


def _mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Draw from `usual` three times in four: each odd field alone makes a start fail."""
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda is_usual: usual if is_usual else odd)


# Where a secret id is due (end, resume): secrets, but also handles and made-up ids.
SESSION = st.one_of(ANY_TEXT, SECRET_OF, LIVE_SECRET_OF, LIVE_SECRET_OF, HANDLE_OF,
                    PROBE_HANDLE, st.just(''), st.just('0' * 32))
# Where a handle is due: a stop (never the probe's) or a command (the probe's too).
STOP_SESSION = st.one_of(ANY_TEXT, HANDLE_OF, HANDLE_OF, SECRET_OF, st.just(''),
                         st.just('0' * 16))
COMMAND_SESSION = st.one_of(ANY_TEXT, HANDLE_OF, HANDLE_OF, HANDLE_OF, PROBE_HANDLE,
                            SECRET_OF, st.just(''))

TOPIC = st.one_of(ANY_TEXT, VALID_TOPIC, VALID_TOPIC, st.sampled_from(TAKEN_TOPICS),
                  st.sampled_from(sorted(ODD_WRITERS)),
                  st.sampled_from(['probe', 'reused', 'live', 'live']))
START = st.builds(
    Start, client=_mostly(st.sampled_from(['fuzz', 'probe', OWNER]), ANY_TEXT), topic=TOPIC,
    window=DURATION, resume=_mostly(st.just(''), SESSION),
    client_node=_mostly(st.sampled_from(['', '', '/input_rig']),
                        st.sampled_from(['/nobody']) | ANY_TEXT),
    local=st.booleans())
# A good tag and the next sequence three times in four: the commands a session's client sends.
TAG = _mostly(st.just('good'), st.one_of(
    st.sampled_from(['handle key', 'other resource', b'', bytes(32)]), st.binary(max_size=40)))
SEQUENCE = _mostly(st.just('next'), st.one_of(st.sampled_from(['same', 0]),
                                              st.integers(0, MAX_SEQUENCE)))
REQUEST = st.one_of(
    START, START, START, st.builds(End, SESSION), st.builds(Stop, STOP_SESSION),
    st.builds(Command, COMMAND_SESSION,
              st.sampled_from([SPARE, SPARE, '/motor', '/nope']) | ANY_TEXT, VALUE, TAG,
              SEQUENCE))


def _received(text: str) -> str:
    """Return what the manager receives of a string field: a C string ends at its first NUL."""
    return text.split('\0', 1)[0]


class Fuzzer:
    """Sends generated requests; remembers the sessions it opened and their sequences."""

    def __init__(self, rig: InputRig) -> None:
        self.rig = rig
        self.opened: List[Opened] = []
        self.topics: List[str] = []
        # Topics whose writer is asserted, oldest first, and each session's latest topic.
        self.live_topics: List[str] = []
        self.topic_of: Dict[str, str] = {}
        # Per handle of the fuzz's, the highest sequence it sent with a good tag (or the
        # start reply's): 'next' goes above it, 'same' repeats it.
        self.sequences: Dict[str, int] = {}
        self.requests = 0
        # How the replies went, by their first words: what the fuzz reached, for its report.
        self.outcomes: Counter = Counter()
        # Commands sent, by whether they carried a good tag of a session of the fuzz's.
        self.commands: Counter = Counter()
        for topic, (message_type, qos) in ODD_WRITERS.items():
            writer = rig.node.create_publisher(message_type, topic, qos)
            if qos.liveliness == LivelinessPolicy.MANUAL_BY_TOPIC:
                writer.assert_liveliness()

    @property
    def handles(self) -> List[str]:
        return [opened.handle for opened in self.opened]

    def send(self, request: object) -> None:
        self.requests += 1
        if isinstance(request, Start):
            self._start(request)
        elif isinstance(request, End):
            secret = self._session(request.session)
            response = self.rig.end(secret)
            self._check_reply(response, secret)
            if not self._is_secret(secret):
                assert response.message == UNKNOWN_ID.format(action='end'), response.message
        elif isinstance(request, Stop):
            handle = self._session(request.session)
            assert handle != self.rig.probe_handle
            response = self.rig.stop(handle)
            self._check_reply(response, handle)
            if self._is_secret(handle):
                assert response.message == f'stop refused: unknown session {handle!r}', \
                    response.message
        else:
            self._command(request)

    def _command(self, request: Command) -> None:
        handle = self._session(request.session)
        secret = next((o.secret for o in self.opened if o.handle == handle), '')
        good = request.tag == 'good' and secret != ''
        # /motor is the probe's: a session of the fuzz would take it over (the latest
        # commander owns), so only commands that no session can have sent go to it.
        resource = SPARE if request.resource == '/motor' and good else request.resource
        last = self.sequences.get(handle, 0)
        sequence = {'next': min(last + 1, MAX_SEQUENCE), 'same': last}.get(
            request.sequence, request.sequence)
        if good:
            tag = command_tag(secret, handle, resource, request.value, sequence)
            self.sequences[handle] = max(last, sequence)
        elif request.tag == 'handle key':
            tag = command_tag(handle, handle, resource, request.value, sequence)
        elif request.tag == 'other resource':
            tag = command_tag(secret, handle, resource + '/other', request.value, sequence)
        else:
            tag = request.tag if isinstance(request.tag, bytes) else b''
        self.commands['good tag' if good else 'not proven'] += 1
        self.rig.command(handle, resource, request.value, sequence=sequence, tag=tag)

    def _start(self, request: Start) -> None:
        topic = self._topic(request.topic)
        resume = self._session(request.resume)
        client = request.client
        if client == OWNER:
            client = next((o.client for o in self.opened if o.secret == resume), 'fuzz')
        response = self.rig.start(
            client, topic, window=request.window, resume_session_id=resume,
            client_node=request.client_node, local=request.local)
        self._check_reply(response, topic, resume, client, request.client_node)
        must_refuse = self._must_refuse(request, topic, resume, client)
        if not response.success:
            assert (response.session_id, response.handle) == ('', ''), response
            if response.message.startswith('resume refused') and not self._is_secret(resume):
                assert response.message == UNKNOWN_ID.format(action='resume'), response.message
            return
        assert must_refuse is None, f'accepted, though {must_refuse}: {request}'
        assert SESSION_ID.fullmatch(response.session_id), response.session_id
        assert HANDLE.fullmatch(response.handle), response.handle
        assert MIN_WINDOW_S <= duration_to_seconds(response.window) <= MAX_WINDOW_S
        if resume:
            resumed = next(o for o in self.opened if o.secret == _received(resume))
            assert (response.session_id, response.handle) == (resumed.secret, resumed.handle)
            assert response.command_sequence <= self.sequences[resumed.handle]
        else:
            assert response.command_sequence == 0
            assert response.handle not in self.handles, response.handle
            self.opened.append(Opened(response.session_id, response.handle,
                                      _received(client) or 'unnamed client'))
            self.sequences[response.handle] = 0
        self.topics.append(topic)
        self.topic_of[response.handle] = topic

    def _must_refuse(self, request: Start, topic: str, resume: str,
                     client: str) -> Optional[str]:
        """Return why every robot refuses this start, or None if it might accept it."""
        window_s = duration_to_seconds(request.window)
        topic, client, resume = (_received(text) for text in (topic, client, resume))
        if topic == self.rig.probe_topic:
            return "the topic is the probe's"
        if window_s != 0.0 and not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
            return f'the window {window_s} s is out of bounds'
        if len(client) > MAX_CLIENT:
            return 'the client name is too long'
        if topic in TAKEN_TOPICS:
            return 'the topic has another type'
        if resume and not any(o.secret == resume and o.client == (client or 'unnamed client')
                              for o in self.opened):
            return "the resume id is no secret of this client's sessions"
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
        if topic == 'live':
            topic = self.rig.topic()
            self.rig.writer(topic, LIVE_LEASE_S)
            self.live_topics.append(topic)
            if len(self.live_topics) > LIVE_TOPICS:
                self.rig.silence(self.live_topics.pop(0))
        return topic

    def _session(self, session: object) -> str:
        """Resolve a reference to a secret or a handle of the fuzz's, or the probe's handle."""
        if not isinstance(session, tuple):
            return session
        kind, index = session
        if kind == 'probe handle':
            return self.rig.probe_handle
        sessions = self.opened if kind != 'live secret' else [
            o for o in self.opened if self.topic_of.get(o.handle) in self.live_topics]
        if not sessions:
            return ''
        opened = sessions[index % len(sessions)]
        return opened.handle if kind == 'handle' else opened.secret

    def _is_secret(self, text: str) -> bool:
        return any(o.secret == _received(text) for o in self.opened)

    def _check_reply(self, response: object, *sent: str) -> None:
        shape = re.sub(r"[0-9a-f]{16,32}|'[^']*'.*|/\S*|\d\S*|\(.*", '_', response.message)
        self.outcomes[shape[:50]] += 1
        if not response.success:
            assert response.message, f'refused without a reason: {response}'
        assert '\n' not in response.message and len(response.message) < LONGEST_REASON, \
            response.message
        for secret in [self.rig.probe_secret, *(o.secret for o in self.opened)]:
            assert secret not in response.message or any(secret in text for text in sent), \
                f'a secret the request did not carry: {response.message}'


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
    strangers = [r for r in rejections if r.handle and r.handle not in fuzzer.handles]
    assert not strangers, f"rejections naming no session of the fuzz's: {strangers[:3]}"
    unproven = [r for r in rejections if r.handle and _kind(r) in NOT_PROVEN]
    assert not unproven, f'rejections of unproven commands naming a session: {unproven[:3]}'
    leaked = [r for r in rejections if fuzzer.rig.probe_secret in r.reason]
    assert not leaked, f"rejections showing the probe's secret: {leaked[:3]}"
    kinds = Counter(_kind(r) for r in rejections)
    print(f'fuzz: {EXAMPLES} examples, {fuzzer.requests} requests, '
          f'{len(fuzzer.opened)} sessions opened, commands {dict(fuzzer.commands)}, '
          f'{len(rejections)} rejections '
          f'{dict(kinds.most_common())}; replies: {dict(fuzzer.outcomes.most_common())}')


NOT_PROVEN = ('unknown handle', 'wrong tag', 'replayed')


def _kind(rejection: object) -> str:
    """Return what a rejection refused: a command not proven its session's, or else."""
    if rejection.reason.startswith('command refused: unknown session '):
        return 'unknown handle'
    if rejection.reason.endswith('(forged?)'):
        return 'wrong tag'
    if rejection.reason.endswith('(replayed?)'):
        return 'replayed'
    return f'{rejection.subject} of a session' if rejection.handle else rejection.subject
