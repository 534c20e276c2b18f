"""
Every input path of one real session manager refuses bad requests with a clear reason.

Start, end, stop_session_resources and commands on ~/command, with empty, huge, non-ASCII,
garbage and out-of-bounds fields, unknown, ended and expired ids, a session's public handle
where its secret id is due (and the reverse), commands with a wrong tag or a replayed
sequence, heartbeat topics of any name, type or QoS, QoS mismatches on the topics the manager
reads and writes, raw bytes that are no SessionCommand, races of starts, resumes and ends,
and a flood of requests. Each refusal says why in one short line and changes nothing else; a
healthy probe session beside them keeps its motor running throughout (input_rig).
"""

import math
import threading
import time
from typing import Iterator, Optional, Tuple

from builtin_interfaces.msg import Duration
import pytest
from rclpy.duration import Duration as RclDuration
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import (
    DurabilityPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy)
from rclpy.serialization import serialize_message
from std_msgs.msg import String

from viam_session.sessions.command_auth import command_tag
from viam_session.sessions.manager_node import EVENTS_QOS, SERVICES_QOS
from viam_session_harness.waiting import poll_until
from viam_session_interfaces.msg import Heartbeat, Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.srv import EndSession, StartSession

from input_rig import (  # noqa: I100 - the tests' own helpers
    assert_probe_untouched, DEADLINE_S, input_rig, InputRig, MANAGER, Opened, SPARE)

# A refusal is one line a person reads: it quotes what was sent, never all of it.
LONGEST_REASON = 400
HUGE = 100_000
# Long enough for a test to make the node it names appear; a start waits at most this.
# Generous: the starts that wait for a late client must see it appear even on a loaded box
# (with 3 s, Jazzy under load refused two such starts: the late client was not yet in the
# manager's graph).
DISCOVERY_TIMEOUT_S = 10.0
# The one answer to an end or resume with anything but a session's own secret id.
UNKNOWN_END = 'end refused: unknown session id'
UNKNOWN_RESUME = 'resume refused: unknown session id'
EXPIRED = 'expired: no heartbeat for a full window'
# How the manager lists its actuators when it refuses a resource it does not know.
NOT_AN_ACTUATOR = ': not an actuator (/motor, /spare) nor an external resource (none)'
# Requests a flood keeps waiting for an answer at once.
FLOOD_IN_FLIGHT = 8
BURST_CLIENTS = 200


@pytest.fixture(scope='module')
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InputRig]:
    """One manager for every request of this module, the probe running beside it."""
    yield from input_rig(tmp_path_factory.mktemp('inputs'),
                         [f'discovery_timeout_s:={DISCOVERY_TIMEOUT_S}'])


@pytest.fixture(autouse=True)
def probe_untouched(rig: InputRig) -> Iterator[None]:
    """After each test, the manager serves and the probe's session and motor are untouched."""
    yield
    assert_probe_untouched(rig)


class Exactly(str):
    """A refusal expected word for word (a plain str need only be in the message)."""


def _assert_refused(response: object, reason: str) -> None:
    assert not response.success, f'accepted: {response}'
    if isinstance(reason, Exactly):
        assert response.message == reason, response.message
    else:
        assert reason in response.message, response.message
    assert len(response.message) < LONGEST_REASON, response.message
    assert '\n' not in response.message, response.message


def _listed(rig: InputRig) -> set:
    return {s.handle for s in rig.sessions()}


# --- start_session ----------------------------------------------------------------------------

@pytest.mark.parametrize('fields, reason', [
    ({'heartbeat_topic': ''}, 'heartbeat_topic is required'),
    ({'heartbeat_topic': 'hb'}, "bad heartbeat topic 'hb': topic name must be absolute"),
    ({'heartbeat_topic': '~/hb'}, "bad heartbeat topic '~/hb': topic name must be absolute"),
    ({'heartbeat_topic': '/hb/{node}'}, 'must not contain characters other than'),
    ({'heartbeat_topic': '/not a topic!'}, 'must not contain characters other than'),
    ({'heartbeat_topic': '/hb/\u00e9t\u00e9'}, 'must not contain characters other than'),
    ({'heartbeat_topic': '/hb/\ufffd\ufffd'}, 'must not contain characters other than'),
    ({'heartbeat_topic': '/hb//x'}, "must not contain repeated '/'"),
    ({'heartbeat_topic': '/hb/1x'}, 'must not have a token that starts with a number'),
    ({'heartbeat_topic': '/hb/'}, "must not end with a '/'"),
    ({'heartbeat_topic': '/' + 'h' * 247}, '(248 characters): longer than 247 characters'),
    ({'heartbeat_topic': '/' + 'h' * HUGE}, 'longer than 247 characters'),
    ({'heartbeat_topic': '/rosout'}, 'in use with type rcl_interfaces/msg/Log'),
    ({'heartbeat_topic': '/parameter_events'},
     'in use with type rcl_interfaces/msg/ParameterEvent'),
    ({'heartbeat_topic': '/diagnostics'}, 'in use with type diagnostic_msgs/msg/DiagnosticArray'),
    ({'heartbeat_topic': f'{MANAGER}/events'},
     'in use with type viam_session_interfaces/msg/SessionEvent'),
    ({'heartbeat_topic': f'{SPARE}/command'}, 'in use with type std_msgs/msg/Float64'),
    ({'window': Duration(sec=-1)}, "requested window -1.0 s is outside the robot's bounds"),
    ({'window': Duration(sec=-2 ** 31)}, "outside the robot's bounds [0.03, 60.0] s"),
    ({'window': Duration(nanosec=1000)}, "outside the robot's bounds"),
    ({'window': Duration(sec=61)}, "requested window 61.0 s is outside the robot's bounds"),
    ({'window': Duration(sec=2 ** 31 - 1, nanosec=999_999_999)}, "outside the robot's bounds"),
    ({'client': 'c' * 257}, '(257 characters) is longer than 256 characters'),
    ({'client': 'c' * HUGE}, 'is longer than 256 characters'),
    ({'client_node': 'not a node'}, "bad client_node 'not a node': it must be fully qualified"),
    ({'client_node': '/bad node'}, "bad client_node '/bad node': node name must not contain"),
    ({'client_node': '/ns//node'}, "bad client_node '/ns//node': namespace must not end"),
    ({'client_node': '/' + 'n' * HUGE}, 'bad client_node'),
    # A resume id is a secret: the reply never echoes it, whatever was sent.
    ({'resume_session_id': 'garbage'}, Exactly(UNKNOWN_RESUME)),
    ({'resume_session_id': '\ufffd\ufffd'}, Exactly(UNKNOWN_RESUME)),
    ({'resume_session_id': '0' * 32}, Exactly(UNKNOWN_RESUME)),
    ({'resume_session_id': 'f' * HUGE}, Exactly(UNKNOWN_RESUME)),
], ids=lambda value: repr(value)[:40])
def test_a_bad_start_request_is_refused_and_starts_nothing(rig, fields, reason):
    before = _listed(rig)
    fields = {'heartbeat_topic': rig.topic(), **fields}
    _assert_refused(rig.start(**fields), reason)
    assert _listed(rig) == before


@pytest.mark.parametrize('client, resume', [
    ('probe', lambda rig, own: rig.probe_handle),
    ('not the probe', lambda rig, own: rig.probe_handle),
    ('not the probe', lambda rig, own: rig.probe_secret),
    ('own', lambda rig, own: own.handle),
    ('own', lambda rig, own: own.secret.upper()),
    ('own', lambda rig, own: own.secret[:-1]),
    ('own', lambda rig, own: own.secret + ' '),
], ids=['probe handle', 'probe handle, other client', 'probe secret, other client',
        'own handle', 'own secret upper case', 'own secret cut short', 'own secret padded'])
def test_a_resume_with_anything_but_its_own_secret_is_refused_alike(rig, client, resume):
    """A handle, another client's secret, a near miss: one answer, and nothing changes."""
    own = rig.live_session('own')
    before = _listed(rig)
    _assert_refused(rig.start(client, rig.topic(), resume_session_id=resume(rig, own)),
                    Exactly(UNKNOWN_RESUME))
    assert _listed(rig) == before
    assert rig.end(own.secret).success


def test_a_start_naming_a_node_that_never_appears_is_refused_after_the_timeout(rig):
    response = rig.start(heartbeat_topic=rig.topic(), client_node='/nobody_here')
    _assert_refused(response, "did not discover the command publisher of '/nobody_here' "
                    f'within {DISCOVERY_TIMEOUT_S} s')


def test_a_topic_of_another_type_elsewhere_is_refused(rig):
    """Another process writes std_msgs/String on the topic: the manager says so, not DDS."""
    topic = rig.topic()
    rig.foreign().create_publisher(String, topic, 1)

    def refused() -> Optional[object]:
        response = rig.start(heartbeat_topic=topic)
        if response.success:
            # Accepted before the manager discovered the other writer (it would expire,
            # unheard): end it and ask again; discovery has no event the manager shows.
            assert rig.end(response.session_id).success
            return None
        return response

    response = poll_until(refused, timeout_s=DEADLINE_S,
                          what='the manager never saw the topic in use', interval_s=0.05)
    _assert_refused(response, f'heartbeat topic {topic} is in use with type std_msgs/msg/String')


def test_another_sessions_heartbeat_topic_is_refused(rig):
    _assert_refused(rig.start(heartbeat_topic=rig.probe_topic),
                    f'heartbeat topic {rig.probe_topic} belongs to another session')
    _assert_refused(rig.start(client='probe', heartbeat_topic=rig.probe_topic,
                              resume_session_id='0' * 32), Exactly(UNKNOWN_RESUME))
    _assert_refused(rig.start(client='probe', heartbeat_topic=rig.probe_topic,
                              resume_session_id=rig.probe_handle), Exactly(UNKNOWN_RESUME))


def test_resuming_another_clients_session_is_refused(rig):
    _assert_refused(rig.start(client='not the probe', heartbeat_topic=rig.topic(),
                              resume_session_id=rig.probe_secret), Exactly(UNKNOWN_RESUME))


def test_resuming_an_ended_or_expired_session_is_refused(rig):
    ended = rig.live_session('ender')
    assert rig.end(ended.secret).success
    _assert_refused(rig.start(client='ender', heartbeat_topic=rig.topic(),
                              resume_session_id=ended.secret),
                    Exactly(f'resume refused: session {ended.handle} is over, '
                            'ended by its client'))
    _assert_refused(rig.start(client='ender', heartbeat_topic=rig.topic(),
                              resume_session_id=ended.handle), Exactly(UNKNOWN_RESUME))
    expired = rig.live_session('expirer', window_s=0.5)
    rig.silence(expired.topic)
    rig.robot.wait_for_event(expired.handle, SessionEvent.EXPIRED)
    _assert_refused(rig.start(client='expirer', heartbeat_topic=rig.topic(),
                              resume_session_id=expired.secret),
                    Exactly(f'resume refused: session {expired.handle} is over, {EXPIRED}'))


def test_two_starts_on_one_topic_while_one_waits_for_discovery(rig):
    """The start that waited is refused once the other took the topic (they shared one watch)."""
    topic = rig.topic()
    rig.writer(topic, 2.0)
    waiting = rig.robot.call_async(f'{MANAGER}/start_session', _start_request(
        'waiter', topic, client_node='/late_client'))
    first = rig.start('first', topic, window=Duration(sec=2))
    assert first.success, first.message
    rig.foreign('late_client').create_publisher(SessionCommand, f'{MANAGER}/command', 10)
    _assert_refused(_result(waiting), f'heartbeat topic {topic} belongs to another session')
    assert [s.client for s in rig.sessions() if s.heartbeat_topic == topic] == ['first']
    assert rig.end(first.session_id).success


def test_a_resume_whose_session_ends_while_it_waits_is_refused(rig):
    resumed = rig.live_session('resumer')
    waiting = rig.robot.call_async(f'{MANAGER}/start_session', _start_request(
        'resumer', rig.topic(), client_node='/late_resumer', resume_session_id=resumed.secret))
    assert rig.end(resumed.secret).success
    rig.foreign('late_resumer').create_publisher(SessionCommand, f'{MANAGER}/command', 10)
    _assert_refused(_result(waiting), Exactly(
        f'resume refused: session {resumed.handle} is over, ended by its client'))
    assert resumed.handle not in _listed(rig)


# --- end_session and stop_session_resources ---------------------------------------------------

@pytest.mark.parametrize('text, stop_reason', [
    ('', "stop refused: unknown session ''"),
    ('garbage', "stop refused: unknown session 'garbage'"),
    ('\ufffd\x7f', "stop refused: unknown session '\ufffd\\x7f'"),
    ('0' * 32, f"stop refused: unknown session '{'0' * 32}'"),
    ('0' * 16, f"stop refused: unknown session '{'0' * 16}'"),
    ('f' * HUGE, f"stop refused: unknown session '{'f' * 78}'... ({HUGE} characters)"),
], ids=lambda value: repr(value)[:20])
def test_end_and_stop_of_an_unknown_id_are_refused(rig, text, stop_reason):
    """An end (secret id) never echoes what was sent; a stop (public handle) quotes it short."""
    before = _listed(rig)
    _assert_refused(rig.end(text), Exactly(UNKNOWN_END))
    _assert_refused(rig.stop(text), Exactly(stop_reason))
    assert _listed(rig) == before


def test_end_takes_only_the_secret_and_stop_only_the_handle(rig):
    """The probe's handle and a session's handle end nothing; a secret stops nothing."""
    opened = rig.live_session('two names')
    rig.signed(opened.handle, SPARE, 0.2)
    rig.robot.wait_for_duty(SPARE[1:], lambda duty: duty == 0.2)
    for handle in (rig.probe_handle, opened.handle):
        _assert_refused(rig.end(handle), Exactly(UNKNOWN_END))
    _assert_refused(rig.stop(opened.secret),
                    Exactly(f'stop refused: unknown session {opened.secret!r}'))
    listed = {s.handle: list(s.owned_resources) for s in rig.sessions()}
    assert listed[opened.handle] == [SPARE]
    assert rig.robot.duty(SPARE[1:]) == 0.2
    ended = rig.end(opened.secret)
    assert ended.success, ended.message
    assert list(ended.stopped_resources) == [SPARE]


def test_ending_twice_at_once_ends_once(rig):
    opened = rig.live_session('twice')
    futures = [rig.robot.call_async(f'{MANAGER}/end_session',
                                    EndSession.Request(session_id=opened.secret))
               for _ in range(2)]
    replies = sorted((_result(f) for f in futures), key=lambda reply: not reply.success)
    assert replies[0].success, replies[0].message
    _assert_refused(replies[1], Exactly(
        f'end refused: session {opened.handle} is over, ended by its client'))


# --- commands on ~/command --------------------------------------------------------------------

def _first_rejection(rig: InputRig, sent_ns: int, handle: str) -> Rejection:
    """Return the first rejection received after `sent_ns` that names `handle` ('': none)."""
    return rig.rejection(sent_ns, f'a rejection for {handle[:40]!r}',
                         lambda r: r.handle == handle).message


def _assert_reason(rejection: Rejection, reason: str) -> None:
    assert rejection.subject == 'command'
    if isinstance(reason, Exactly):
        assert rejection.reason == reason, rejection.reason
    else:
        assert reason in rejection.reason, rejection.reason
    assert len(rejection.reason) < LONGEST_REASON, rejection.reason
    assert '\n' not in rejection.reason, rejection.reason


@pytest.mark.parametrize('session, resource, value, reason', [
    ('live', '/nope', 0.1, Exactly("unknown resource '/nope'" + NOT_AN_ACTUATOR)),
    ('live', '', 0.1, Exactly("unknown resource ''" + NOT_AN_ACTUATOR)),
    ('live', '/' + 'r' * HUGE, 0.1,
     Exactly(f"unknown resource '/{'r' * 77}'... ({HUGE + 1} characters)" + NOT_AN_ACTUATOR)),
    ('live', SPARE, math.nan, Exactly(f'{SPARE}: value must be finite, got nan')),
    ('live', SPARE, math.inf, Exactly(f'{SPARE}: value must be finite, got inf')),
    ('live', SPARE, -math.inf, Exactly(f'{SPARE}: value must be finite, got -inf')),
    ('live', SPARE, 1.5, f'{SPARE} refuses 1.5: '),
    ('probe', '/nope', 0.1, Exactly("unknown resource '/nope'" + NOT_AN_ACTUATOR)),
], ids=lambda value: repr(value)[:20])
def test_a_bad_command_of_a_session_is_rejected_with_a_reason(
        rig, session, resource, value, reason):
    """Tagged by its session's secret: refused for what it names, and told to that session."""
    handle = rig.live_session('commander').handle if session == 'live' else rig.probe_handle
    rig.drain()
    sent_ns = time.monotonic_ns()
    rig.signed(handle, resource, value)
    rejection = _first_rejection(rig, sent_ns, handle)
    _assert_reason(rejection, reason)
    assert rejection.resource == resource
    assert rejection.value == value or math.isnan(value) and math.isnan(rejection.value)


def _replay(rig: InputRig, opened: Opened) -> Tuple[int, bytes]:
    """Have a command of the session accepted, then return its sequence with a good tag."""
    sent_ns = time.monotonic_ns()
    sequence = rig.signed(opened.handle, SPARE, 0.25)
    rig.robot.wait_for_duty(SPARE[1:], lambda duty: duty == 0.25, after_ns=sent_ns)
    return sequence, command_tag(opened.secret, opened.handle, SPARE, 0.25, sequence)


def _good(opened: Opened, sequence: int, resource: str = SPARE, value: float = 0.25) -> bytes:
    return command_tag(opened.secret, opened.handle, resource, value, sequence)


FORGED = Exactly('command refused: its tag does not match session {handle} (forged?)')


@pytest.mark.parametrize('session, make, reason', [
    ('unknown', lambda rig, s: (1, b''), Exactly("command refused: unknown session 'unknown'")),
    ('', lambda rig, s: (1, b''), Exactly("command refused: unknown session ''")),
    ('f' * HUGE, lambda rig, s: (1, b''),
     Exactly(f"command refused: unknown session '{'f' * 78}'... ({HUGE} characters)")),
    ('0' * 16, lambda rig, s: (1, command_tag('0' * 32, '0' * 16, SPARE, 0.25, 1)),
     Exactly(f"command refused: unknown session '{'0' * 16}'")),
    ('live', lambda rig, s: (1, b''), FORGED),
    ('live', lambda rig, s: (1, bytes(32)), FORGED),
    ('live', lambda rig, s: (1, _good(s, 1)[:31]), FORGED),
    ('live', lambda rig, s: (1, _good(s, 1) + b'\0'), FORGED),
    ('live', lambda rig, s: (1, command_tag(s.handle, s.handle, SPARE, 0.25, 1)), FORGED),
    ('live', lambda rig, s: (1, _good(s, 1, value=0.5)), FORGED),
    ('live', lambda rig, s: (1, _good(s, 1, resource='/motor')), FORGED),
    ('live', lambda rig, s: (2, _good(s, 1)), FORGED),
    ('live', lambda rig, s: (2 ** 64 - 1, _good(s, 1)), FORGED),
    ('live', lambda rig, s: (0, _good(s, 0)), Exactly(
        'command refused: sequence 0 of session {handle} is not above 0 (replayed?)')),
    ('live', _replay, Exactly(
        'command refused: sequence 1 of session {handle} is not above 1 (replayed?)')),
    ('probe', lambda rig, s: (1, command_tag(s.handle, s.handle, SPARE, 0.25, 1)), FORGED),
    ('probe', lambda rig, s: (2 ** 63, bytes(32)), FORGED),
    ('probe', lambda rig, s: (1, _good(s, 1)), 'command refused: sequence 1 of session '
                                               '{handle} is not above '),
], ids=['unknown', 'empty', 'huge', 'made-up handle and secret', 'no tag', 'zero tag',
        'short tag', 'long tag', 'tag keyed by the handle', 'tag of another value',
        'tag of another resource', 'tag of another sequence', 'tag of sequence 1 at 2^64-1',
        'sequence 0', 'replayed', 'probe: tag keyed by its handle', 'probe: zero tag',
        'probe: its first sequence again'])
def test_a_command_not_proven_its_sessions_is_rejected_unattributed(rig, session, make, reason):
    """An unknown handle, a wrong tag or an old sequence: refused, naming no session, no owner."""
    if session == 'live':
        opened = rig.live_session('tagger')
    elif session == 'probe':
        opened = Opened(rig.probe_secret, rig.probe_handle, rig.probe_topic)
    else:
        opened = Opened('', session, '')
    sequence, tag = make(rig, opened)
    owners = {s.handle: list(s.owned_resources) for s in rig.sessions()}
    rig.drain()
    sent_ns = time.monotonic_ns()
    rig.command(opened.handle, SPARE, 0.25, sequence=sequence, tag=tag)
    rejection = _first_rejection(rig, sent_ns, '')
    _assert_reason(rejection, type(reason)(reason.replace('{handle}', opened.handle)))
    assert {s.handle: list(s.owned_resources) for s in rig.sessions()} == owners


def test_a_command_of_an_expired_or_ended_session_is_rejected(rig):
    """Its tag is good: the session is told why (its client may still listen); nothing owned."""
    expired = rig.live_session('short', window_s=0.5)
    rig.silence(expired.topic)
    rig.robot.wait_for_event(expired.handle, SessionEvent.EXPIRED)
    ended = rig.live_session('ended')
    assert rig.end(ended.secret).success
    for opened, why in ((expired, EXPIRED), (ended, 'ended by its client')):
        rig.drain()
        sent_ns = time.monotonic_ns()
        rig.signed(opened.handle, SPARE, 0.2)
        _assert_reason(_first_rejection(rig, sent_ns, opened.handle), Exactly(
            f'command refused: session {opened.handle} is over, {why}'))
        # Its secret is no longer of use to the rest either.
        _assert_refused(rig.end(opened.secret), Exactly(
            f'end refused: session {opened.handle} is over, {why}'))


def test_bytes_that_are_no_session_command_are_dropped(rig):
    """Truncated, padded, random or mistyped CDR on ~/command: dropped, the manager serves."""
    writer = rig.foreign().create_publisher(SessionCommand, f'{MANAGER}/command', 10)
    rig.wait_for_subscriber(writer)
    good = serialize_message(SessionCommand(handle='AAAA', resource='/motor', value=0.3))
    for payload in (b'', b'\x00', b'\x00\x01\x00\x00', b'\x00\x01\x00\x00\xff\xff\xff\x7f',
                    good[:7], good[:-3], good + bytes(1000), bytes(range(256)) * 4,
                    good.replace(b'AAAA', b'\xff\xfe\x80\xc0')):
        writer.publish(payload)
    rig.drain()


def test_qos_mismatches_on_the_managers_topics_harm_nothing(rig):
    """Readers and writers that cannot match the manager's QoS, or its topics' types."""
    node = rig.foreign()
    mismatched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL,
                            liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
                            liveliness_lease_duration=RclDuration(seconds=0.01))
    node.create_subscription(SessionEvent, f'{MANAGER}/events', lambda _: None, mismatched)
    node.create_subscription(Rejection, f'{MANAGER}/rejections', lambda _: None, mismatched)
    rig.foreign().create_subscription(String, f'{MANAGER}/events', lambda _: None, EVENTS_QOS)
    best_effort = node.create_publisher(
        SessionCommand, f'{MANAGER}/command',
        QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    other_type = rig.foreign().create_publisher(String, f'{MANAGER}/command', 10)
    for _ in range(10):
        best_effort.publish(SessionCommand(handle='best effort', resource='/motor'))
        other_type.publish(String(data='not a command'))
    rig.drain()
    assert rig.end(rig.live_session('after mismatches').secret).success


@pytest.mark.parametrize('qos, policy', [
    (QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
                liveliness_lease_duration=RclDuration(seconds=0.5)), 'RELIABILITY'),
    (QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                liveliness=LivelinessPolicy.AUTOMATIC,
                liveliness_lease_duration=RclDuration(seconds=0.5)), 'LIVELINESS'),
], ids=['best effort', 'automatic liveliness'])
def test_a_heartbeat_writer_that_cannot_match_is_named_and_its_session_expires(
        rig, qos, policy):
    topic = rig.topic()
    rig.node.create_publisher(Heartbeat, topic, qos)
    started = rig.start('mismatch', topic, window=Duration(nanosec=500_000_000))
    assert started.success, started.message
    rejection = rig.robot.rejections.wait_for(
        lambda s: s.message.handle == started.handle, DEADLINE_S, 'a heartbeat rejection')
    assert rejection.message.subject == 'heartbeat'
    assert f'incompatible QoS {policy}' in rejection.message.reason
    rig.robot.wait_for_event(started.handle, SessionEvent.EXPIRED)


# --- many requests ----------------------------------------------------------------------------

def test_a_flood_of_requests_is_answered(rig):
    """
    2000 bad ends, and 2000 bad commands at once: each end answered, nothing harmed.

    Every other command names the probe's session, with a tag of zeros: all refused.
    """
    # Service requests and replies are kept 10 deep: more in flight from one client would
    # lose some in DDS, not in the manager.
    in_flight = []
    for index in range(2000):
        in_flight.append(rig.robot.call_async(
            f'{MANAGER}/end_session', EndSession.Request(session_id=f'flood {index}')))
        if index % 2:
            rig.command(rig.probe_handle, '/motor', -1.0, sequence=10 ** 6 + index,
                        tag=bytes(32))
        else:
            rig.command(f'flood {index}', '/motor', 1.0)
        if len(in_flight) == FLOOD_IN_FLIGHT:
            _assert_refused(_result(in_flight.pop(0)), Exactly(UNKNOWN_END))
    for future in in_flight:
        _assert_refused(_result(future), Exactly(UNKNOWN_END))
    rig.drain()
    assert rig.end(rig.live_session('after the flood').secret).success


def test_a_burst_of_starts_from_many_clients_is_answered(rig):
    """200 clients send a start at the same moment: every one is answered (ROS keeps 10)."""
    node = rig.foreign('burst')
    clients = [node.create_client(StartSession, f'{MANAGER}/start_session',
                                  qos_profile=SERVICES_QOS) for _ in range(BURST_CLIENTS)]
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        for client in clients:
            assert client.wait_for_service(timeout_sec=DEADLINE_S)
        futures = [client.call_async(_start_request('burst', f'/burst/{index}/'))
                   for index, client in enumerate(clients)]
        for future in futures:
            _assert_refused(_result(future), "must not end with a '/'")
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5)


def _start_request(client: str, topic: str, **fields: object) -> StartSession.Request:
    request = StartSession.Request(client=client, heartbeat_topic=topic, **fields)
    request.requested_window = Duration(sec=2)
    return request


def _result(future: object) -> object:
    answered = threading.Event()
    future.add_done_callback(lambda _: answered.set())
    assert answered.wait(DEADLINE_S), 'the manager did not answer'
    assert future.result() is not None, 'the request failed'
    return future.result()
