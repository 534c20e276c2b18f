"""
Every input path of one real session manager refuses bad requests with a clear reason.

Start, end, stop_session_resources and commands on ~/command, with empty, huge, non-ASCII,
garbage and out-of-bounds fields, unknown, ended and expired ids, heartbeat topics of any name,
type or QoS, QoS mismatches on the topics the manager reads and writes, raw bytes that are no
SessionCommand, races of starts, resumes and ends, and a flood of requests. Each refusal says
why in one short line and changes nothing else; a healthy probe session beside them keeps its
motor running throughout (input_rig).
"""

import math
import threading
import time
from typing import Iterator

from builtin_interfaces.msg import Duration
import pytest
from rclpy.duration import Duration as RclDuration
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import (
    DurabilityPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy)
from rclpy.serialization import serialize_message
from std_msgs.msg import String

from viam_session.sessions.manager_node import EVENTS_QOS, SERVICES_QOS
from viam_session_interfaces.msg import Heartbeat, Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.srv import EndSession, StartSession

from input_rig import (  # noqa: I100 - the tests' own helpers
    assert_probe_untouched, DEADLINE_S, input_rig, InputRig, MANAGER, SPARE)

# A refusal is one line a person reads: it quotes what was sent, never all of it.
LONGEST_REASON = 400
HUGE = 100_000
# Long enough for a test to make the node it names appear; a start waits at most this.
DISCOVERY_TIMEOUT_S = 3.0
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


def _assert_refused(response: object, reason: str) -> None:
    assert not response.success, f'accepted: {response}'
    assert reason in response.message, response.message
    assert len(response.message) < LONGEST_REASON, response.message
    assert '\n' not in response.message, response.message


def _listed_ids(rig: InputRig) -> set:
    return {s.session_id for s in rig.sessions()}


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
    ({'resume_session_id': 'garbage'}, "resume refused: unknown session id 'garbage'"),
    ({'resume_session_id': '\ufffd\ufffd'}, 'resume refused: unknown session id'),
    ({'resume_session_id': 'f' * HUGE}, f'unknown session id {"f" * 78!r}... ({HUGE} characters)'),
], ids=lambda value: repr(value)[:40])
def test_a_bad_start_request_is_refused_and_starts_nothing(rig, fields, reason):
    before = _listed_ids(rig)
    fields = {'heartbeat_topic': rig.topic(), **fields}
    _assert_refused(rig.start(**fields), reason)
    assert _listed_ids(rig) == before


def test_a_start_naming_a_node_that_never_appears_is_refused_after_the_timeout(rig):
    response = rig.start(heartbeat_topic=rig.topic(), client_node='/nobody_here')
    _assert_refused(response, "did not discover the command publisher of '/nobody_here' "
                    f'within {DISCOVERY_TIMEOUT_S} s')


def test_a_topic_of_another_type_elsewhere_is_refused(rig):
    """Another process writes std_msgs/String on the topic: the manager says so, not DDS."""
    topic = rig.topic()
    rig.foreign().create_publisher(String, topic, 1)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        response = rig.start(heartbeat_topic=topic)
        if not response.success:
            break
        # Accepted before the manager discovered the other writer (it would expire, unheard).
        assert rig.end(response.session_id).success
        assert time.monotonic() < deadline, 'the manager never saw the topic in use'
        time.sleep(0.05)  # discovery has no event the manager shows
    _assert_refused(response, f'heartbeat topic {topic} is in use with type std_msgs/msg/String')


def test_another_sessions_heartbeat_topic_is_refused(rig):
    _assert_refused(rig.start(heartbeat_topic=rig.probe_topic),
                    f'heartbeat topic {rig.probe_topic} belongs to another session')
    _assert_refused(rig.start(client='probe', heartbeat_topic=rig.probe_topic,
                              resume_session_id='0' * 32), 'resume')


def test_resuming_another_clients_session_is_refused(rig):
    _assert_refused(rig.start(client='not the probe', heartbeat_topic=rig.topic(),
                              resume_session_id=rig.probe_id), 'resume')


def test_resuming_an_ended_or_expired_session_is_refused(rig):
    ended, _ = rig.live_session('ender')
    assert rig.end(ended).success
    _assert_refused(rig.start(client='ender', heartbeat_topic=rig.topic(),
                              resume_session_id=ended), 'is over, ended by its client')
    expired, topic = rig.live_session('expirer', window_s=0.5)
    rig.silence(topic)
    rig.robot.wait_for_event(expired, SessionEvent.EXPIRED)
    _assert_refused(rig.start(client='expirer', heartbeat_topic=rig.topic(),
                              resume_session_id=expired), 'is over, expired')


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
    session_id, topic = rig.live_session('resumer')
    waiting = rig.robot.call_async(f'{MANAGER}/start_session', _start_request(
        'resumer', rig.topic(), client_node='/late_resumer', resume_session_id=session_id))
    assert rig.end(session_id).success
    rig.foreign('late_resumer').create_publisher(SessionCommand, f'{MANAGER}/command', 10)
    _assert_refused(_result(waiting), 'is over, ended by its client')
    assert session_id not in _listed_ids(rig)


# --- end_session and stop_session_resources ---------------------------------------------------

@pytest.mark.parametrize('session_id, reason', [
    ('', "unknown session id ''"),
    ('garbage', "unknown session id 'garbage'"),
    ('\ufffd\x7f', 'unknown session id'),
    ('0' * 32, 'unknown session id'),
    ('f' * HUGE, f'({HUGE} characters)'),
], ids=lambda value: repr(value)[:20])
def test_end_and_stop_of_an_unknown_id_are_refused(rig, session_id, reason):
    for verb, response in (('end', rig.end(session_id)), ('stop', rig.stop(session_id))):
        _assert_refused(response, reason)
        assert response.message.startswith(f'{verb} refused: '), response.message


def test_ending_twice_at_once_ends_once(rig):
    session_id, _ = rig.live_session('twice')
    futures = [rig.robot.call_async(f'{MANAGER}/end_session',
                                    EndSession.Request(session_id=session_id)) for _ in range(2)]
    replies = sorted((_result(f) for f in futures), key=lambda reply: not reply.success)
    assert replies[0].success, replies[0].message
    _assert_refused(replies[1], 'is over, ended by its client')


# --- commands on ~/command --------------------------------------------------------------------

@pytest.mark.parametrize('session, resource, value, reason', [
    ('unknown', '/motor', 0.1, "command refused: unknown session id 'unknown'"),
    ('', '/motor', 0.1, "command refused: unknown session id ''"),
    ('f' * HUGE, '/motor', 0.1, f'({HUGE} characters)'),
    ('live', '/nope', 0.1, "unknown actuator '/nope'"),
    ('live', '', 0.1, "unknown actuator ''"),
    ('live', '/' + 'r' * HUGE, 0.1, f'({HUGE + 1} characters)'),
    ('live', SPARE, math.nan, 'nan'),
    ('live', SPARE, math.inf, 'inf'),
    ('live', SPARE, -math.inf, 'inf'),
    ('probe', '/nope', 0.1, "unknown actuator '/nope'"),
], ids=lambda value: repr(value)[:20])
def test_a_bad_command_is_rejected_with_a_reason(rig, session, resource, value, reason):
    session_id = {'live': lambda: rig.live_session('commander')[0],
                  'probe': lambda: rig.probe_id}.get(session, lambda: session)()
    sent_ns = time.monotonic_ns()
    rig.command(session_id, resource, value)
    rejection = rig.rejection(session_id, sent_ns).message
    assert rejection.subject == 'command'
    assert reason in rejection.reason, rejection.reason
    assert len(rejection.reason) < LONGEST_REASON, rejection.reason


def test_a_command_of_an_expired_session_is_rejected(rig):
    session_id, topic = rig.live_session('short', window_s=0.5)
    rig.silence(topic)
    rig.robot.wait_for_event(session_id, SessionEvent.EXPIRED)
    sent_ns = time.monotonic_ns()
    rig.command(session_id, SPARE, 0.2)
    assert 'is over, expired' in rig.rejection(session_id, sent_ns).message.reason


def test_bytes_that_are_no_session_command_are_dropped(rig):
    """Truncated, padded, random or mistyped CDR on ~/command: dropped, the manager serves."""
    writer = rig.foreign().create_publisher(SessionCommand, f'{MANAGER}/command', 10)
    rig.wait_for_subscriber(writer)
    good = serialize_message(SessionCommand(session_id='AAAA', resource='/motor', value=0.3))
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
        best_effort.publish(SessionCommand(session_id='best effort', resource='/motor'))
        other_type.publish(String(data='not a command'))
    rig.drain()
    session_id, _ = rig.live_session('after mismatches')
    assert rig.end(session_id).success


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
        lambda s: s.message.session_id == started.session_id, DEADLINE_S, 'a heartbeat rejection')
    assert rejection.message.subject == 'heartbeat'
    assert f'incompatible QoS {policy}' in rejection.message.reason
    rig.robot.wait_for_event(started.session_id, SessionEvent.EXPIRED)


# --- many requests ----------------------------------------------------------------------------

def test_a_flood_of_requests_is_answered(rig):
    """2000 bad ends, and 2000 bad commands at once: each end answered, nothing harmed."""
    # Service requests and replies are kept 10 deep: more in flight from one client would
    # lose some in DDS, not in the manager.
    in_flight = []
    for index in range(2000):
        in_flight.append(rig.robot.call_async(
            f'{MANAGER}/end_session', EndSession.Request(session_id=f'flood {index}')))
        rig.command(f'flood {index}', '/motor', 1.0)
        if len(in_flight) == FLOOD_IN_FLIGHT:
            _assert_refused(_result(in_flight.pop(0)), 'unknown session id')
    for future in in_flight:
        _assert_refused(_result(future), 'unknown session id')
    rig.drain()
    session_id, _ = rig.live_session('after the flood')
    assert rig.end(session_id).success


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
    deadline = time.monotonic() + DEADLINE_S
    while not future.done():
        assert time.monotonic() < deadline, 'the manager did not answer'
        time.sleep(0.01)  # the observer's executor completes the future in its thread
    assert future.result() is not None, 'the request failed'
    return future.result()
