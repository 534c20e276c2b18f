"""
What a third party on the robot's domain can and cannot do (docs/security.md), end to end.

The third party is an ordinary ROS node in this process: it reads everything the robot
publishes (events, rejections, diagnostics, /rosout, the shared command topic), calls the
session services and publishes where it likes. Real processes, real DDS; the motor's PWM is
read from the simulated chip's record.
"""

import itertools
import subprocess
import sys
import threading
import time
from typing import Callable, List

from diagnostic_msgs.msg import DiagnosticArray
import pytest
from rcl_interfaces.msg import Log
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from viam_session.service_call import call_service
from viam_session.sessions.heartbeat_watch import heartbeat_qos
from viam_session.sessions.manager_node import EVENTS_QOS
from viam_session_harness.sim_robot import SimRobot
from viam_session_harness.waiting import poll_until
from viam_session_interfaces.msg import Heartbeat, Rejection, SessionCommand, SessionEvent
from viam_session_interfaces.srv import EndSession, ListSessions, StartSession

MANAGER = '/session_manager'
# rclpy from Kilted on tells a subscriber each message's writer; before, a driver cannot tell
# the manager's commands from a foreign writer's, and obeys none while one is on its topic.
WRITER_GIDS = 'publisher_gid' in getattr(
    getattr(rclpy.subscription, 'MessageInfo', None), '__annotations__', {})


class ThirdParty:
    """A node that watches everything the robot publishes and calls its services."""

    def __init__(self, robot: SimRobot) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=int(robot.env['ROS_DOMAIN_ID']))
        self.node = Node('third_party', context=self._context, enable_rosout=False)
        self.seen: List[object] = []        # every message of every topic below
        self.commands: List[SessionCommand] = []
        self.diagnostics: List[DiagnosticArray] = []
        self._lock = threading.Lock()
        for message_type, topic, qos in (
                (SessionEvent, f'{MANAGER}/events', EVENTS_QOS),
                (Rejection, f'{MANAGER}/rejections', 10),
                (DiagnosticArray, '/diagnostics', 10),
                (Log, '/rosout', 100),
                (SessionCommand, f'{MANAGER}/command', 100)):
            self.node.create_subscription(message_type, topic, self._record, qos)
        self.command_writer = self.node.create_publisher(
            SessionCommand, f'{MANAGER}/command', 10)
        self.start = self.node.create_client(StartSession, f'{MANAGER}/start_session')
        self.end = self.node.create_client(EndSession, f'{MANAGER}/end_session')
        self.list = self.node.create_client(ListSessions, f'{MANAGER}/list_sessions')
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self._context)

    def _record(self, message: object) -> None:
        with self._lock:
            self.seen.append(message)
            if isinstance(message, SessionCommand):
                self.commands.append(message)
            elif isinstance(message, DiagnosticArray):
                self.diagnostics.append(message)

    def send(self, command: SessionCommand) -> None:
        """
        Publish `command` once the manager's command reader has matched this writer.

        One message sent before that is lost, and the test would wait for a refusal that
        cannot come. Two readers match: this node's own and the manager's.
        """
        poll_until(lambda: self.command_writer.get_subscription_count() >= 2, timeout_s=30.0,
                   what="no match of the third party's command writer with the manager")
        self.command_writer.publish(command)

    def snapshot(self) -> List[object]:
        with self._lock:
            return list(self.seen)

    @staticmethod
    def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        """Wait until `predicate()` holds (it reads what the executor thread records)."""
        poll_until(predicate, timeout_s=timeout_s, what=f'no {what}', interval_s=0.02)

    def listed(self) -> list:
        return list(call_service(self.list, ListSessions.Request(), 30.0).sessions)

    def dropped(self) -> int:
        """Return how many foreign commands the motor driver last reported dropped."""
        with self._lock:
            statuses = [status for array in self.diagnostics for status in array.status
                        if status.name == '/motor: dc_motor driver']
        values = {v.key: v.value for v in statuses[-1].values} if statuses else {}
        text = values.get('commands from', '')
        assert not statuses or text.startswith('/session_manager only'), text
        return int(text.split('; ')[1].split()[0]) if '; ' in text else 0


@pytest.fixture
def party(robot):
    third = ThirdParty(robot)
    yield third
    third.close()


def _start(robot, value: float, name: str = 'owner'):
    client = robot.start_client(resource='/motor', value=value, name=name)
    started = client.wait_for('started')
    robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(value))
    return client, started['session_id'], started['handle']


def _command_seen(robot, party: ThirdParty, handle: str, secret: str,
                  value: float) -> SessionCommand:
    """
    Send the session's command (tagged, sequences from 2 up) until the third party records one.

    The client process's own first command may leave before this node has matched it.
    """
    deadline = time.monotonic() + 30.0
    for sequence in itertools.count(2):
        robot.send_command(handle, '/motor', value, secret=secret, sequence=sequence)
        try:
            party.wait_for(lambda: any(m.sequence >= 2 for m in party.commands),
                           'a command seen on the shared topic', timeout_s=0.2)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            continue
        return next(m for m in party.commands if m.sequence >= 2)


def test_nothing_the_robot_publishes_carries_the_secret_id(robot, party):
    """Events, rejections, diagnostics, /rosout and the command topic show only the handle."""
    client, secret, handle = _start(robot, 0.5)
    listed = party.listed()
    assert [s.handle for s in listed] == [handle]
    _command_seen(robot, party, handle, secret, 0.5)
    party.wait_for(lambda: any(isinstance(m, DiagnosticArray) and handle in str(m)
                               for m in party.snapshot()), 'diagnostics naming the session')
    robot.send_command(handle, '/nowhere', 1.0, secret=secret, sequence=10 ** 6)
    party.wait_for(lambda: any(isinstance(m, Rejection) and m.handle == handle
                               for m in party.snapshot()), 'a rejection of the session')
    client.process.terminate()
    party.wait_for(lambda: any(isinstance(m, SessionEvent) and m.handle == handle
                               and m.state == SessionEvent.ENDED for m in party.snapshot()),
                   'the end event')
    party.wait_for(lambda: any(isinstance(m, Log) and handle in m.msg
                               for m in party.snapshot()), 'the manager logging the session')
    seen = party.snapshot()
    kinds = {type(m).__name__ for m in seen}
    assert {'SessionEvent', 'Rejection', 'DiagnosticArray', 'Log', 'SessionCommand'} <= kinds
    assert [m for m in seen if secret in str(m)] == []
    assert secret not in str(listed)


def test_the_handle_neither_ends_nor_resumes_nor_commands(robot, party):
    """A third party with the listed handle is refused everywhere; the motor runs on."""
    client, secret, handle = _start(robot, 0.4)
    (info,) = party.listed()
    ended = call_service(party.end, EndSession.Request(session_id=info.handle), 30.0)
    assert not ended.success and ended.message == 'end refused: unknown session id'
    resume = StartSession.Request(client=info.client, heartbeat_topic='/third/party/heartbeat',
                                  resume_session_id=info.handle)
    resumed = call_service(party.start, resume, 30.0)
    assert not resumed.success and resumed.message == 'resume refused: unknown session id'
    # A command with the handle and a tag of its own making (it has no secret to key it).
    forged = SessionCommand(handle=info.handle, resource='/motor', value=-1.0, sequence=1,
                            tag=bytes(32))
    party.send(forged)
    party.wait_for(lambda: any(isinstance(m, Rejection) and 'does not match' in m.reason
                               for m in party.snapshot()), 'the forged command refused')
    assert [(s.handle, list(s.owned_resources)) for s in party.listed()] == [
        (handle, ['/motor'])]
    assert robot.duty('motor') == pytest.approx(0.4)
    assert client.process.poll() is None
    assert [line for line in client.lines.snapshot() if line['event'] == 'lost'] == []


def test_resume_of_another_clients_session_is_answered_as_an_unknown_id(robot, party):
    """Same words, and both refused before any waiting: the reply tells nothing apart."""
    _, secret, handle = _start(robot, 0.3)

    def resume(client: str, session_id: str) -> StartSession.Response:
        # A client node nobody runs: a refusal after the discovery wait would say so instead.
        request = StartSession.Request(client=client, client_node='/nobody/runs/this',
                                       heartbeat_topic='/third/party/heartbeat',
                                       resume_session_id=session_id)
        return call_service(party.start, request, 30.0)

    answers = [resume('thief', secret),            # someone else's secret id
               resume('owner', handle),            # the owner's name and the public handle
               resume('owner', '0' * 32)]          # an id nobody has
    assert [(a.success, a.message, a.session_id, a.handle) for a in answers] == [
        (False, 'resume refused: unknown session id', '', '')] * 3
    assert [s.handle for s in party.listed()] == [handle]
    assert robot.duty('motor') == pytest.approx(0.3)


def test_the_same_client_name_without_the_secret_cannot_take_the_session_over(robot, party):
    """A process calling itself `owner` gets a session of its own, never the owner's."""
    owner, secret, handle = _start(robot, 0.3)
    impostor = robot.start_client(resource='/motor', value=0.9, name='owner', resume=handle)
    assert impostor.wait_for('error')['reason'].endswith('resume refused: unknown session id')
    assert robot.duty('motor') == pytest.approx(0.3)
    assert [s.handle for s in party.listed()] == [handle]
    assert owner.process.poll() is None


def test_a_recorded_command_replayed_later_is_refused(robot, party):
    """A third party echoes the owner's command and sends it again: refused, motor unmoved."""
    client, secret, handle = _start(robot, 0.5)
    recorded = _command_seen(robot, party, handle, secret, 0.5)
    # The owner moves on (a later command, as a teleop would send), then the replay.
    last = max(m.sequence for m in party.commands)
    robot.send_command(handle, '/motor', 0.2, secret=secret, sequence=last + 1000)
    moved = robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.2))
    party.send(recorded)
    party.wait_for(lambda: any(isinstance(m, Rejection) and 'replayed' in m.reason
                               for m in party.snapshot()), 'the replay refused')
    rejection = next(m for m in party.snapshot() if isinstance(m, Rejection))
    assert rejection.handle == ''    # not attributed: the owner's client is not bothered
    assert robot.duty('motor') == pytest.approx(0.2)
    assert [c for c in robot.chip_changes('motor') if c.t_ns > moved.t_ns
            and c.value != pytest.approx(0.2)] == []


def test_a_second_writer_on_a_heartbeat_topic_closes_the_session(robot, party):
    """A rogue writer cannot keep a session alive: the robot closes it and stops the motor."""
    client, _, handle = _start(robot, 0.6)
    (info,) = party.listed()
    rogue = party.node.create_publisher(Heartbeat, info.heartbeat_topic, heartbeat_qos(0.5))
    rogue.assert_liveliness()
    closed = robot.wait_for_event(handle, SessionEvent.CLOSED_BY_ROBOT)
    assert 'second writer' in closed.message.reason
    assert list(closed.message.owned_resources) == ['/motor']
    robot.wait_for_duty('motor', lambda duty: duty == 0.0)
    assert client.wait_for('lost')['reason'].startswith('closed by robot')
    assert party.listed() == []


def test_a_rogue_publisher_on_the_motors_topic_does_not_drive_it(robot, party):
    """Commands on /motor/command not from the session manager are dropped, counted, logged."""
    rogue = subprocess.Popen(
        [sys.executable, '-m', 'viam_session_harness.sim_drivers', 'publish', '--topic',
         '/motor/command', '--value', '0.8', '--rate', '20', '--liveliness', 'automatic',
         '--lease', '0.5'], env=robot.env, stdout=subprocess.PIPE, text=True)
    try:
        assert rogue.stdout.readline().strip() == 'matched'
        # No session at all: the driver drops every one of them.
        party.wait_for(lambda: party.dropped() >= 20, 'twenty drops counted')
        assert [c for c in robot.chip_changes('motor') if c.value > 0.0] == []
        # A live session drives the motor; the rogue goes on, the motor stays the session's
        # (without writer GIDs: the motor stays stopped while the rogue is there).
        client = robot.start_client(resource='/motor', value=0.3, name='owner')
        handle = client.wait_for('started')['handle']
        if WRITER_GIDS:
            robot.wait_for_duty('motor', lambda duty: duty == pytest.approx(0.3))
        dropped = party.dropped()
        party.wait_for(lambda: party.dropped() >= dropped + 20, 'twenty more drops')
        assert [c for c in robot.chip_changes('motor') if c.value == pytest.approx(0.8)] == []
        assert robot.duty('motor') == (pytest.approx(0.3) if WRITER_GIDS else 0.0)
        assert [(s.handle, list(s.owned_resources)) for s in party.listed()] == [
            (handle, ['/motor'])]
    finally:
        rogue.kill()
        rogue.wait(timeout=10)
        rogue.stdout.close()
    log = robot.log_path('motor').read_text()
    assert 'command dropped: not from /session_manager' in log
    # Throttled to one line a second, not one per message (20 a second).
    assert log.count('command dropped') < party.dropped() / 5
