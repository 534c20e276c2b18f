"""Unit tests of the ROS-free session table, driven by a hand-moved clock."""

import math
import re

import pytest

from viam_session.sessions import table as table_module
from viam_session.sessions.table import SessionError, SessionLimits, SessionTable

START = 1000.0
HEX_ID = re.compile(r'[0-9a-f]{32}')


class FakeClock:
    """A monotonic clock in seconds that only moves when the test moves it."""

    def __init__(self, now: float = START) -> None:
        """Start the clock at `now`."""
        self.now = now

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


@pytest.fixture
def clock():
    """Provide a fake clock."""
    return FakeClock()


@pytest.fixture
def table(clock):
    """Provide a table with Viam's default limits on the fake clock."""
    return SessionTable(clock=clock)


def test_limits_default_to_viam_robot_server_values():
    """Default limits are a 2 s window within [30 ms, 1 min] and 1024 sessions."""
    limits = SessionLimits()
    assert limits.default_window_s == 2.0
    assert limits.min_window_s == 0.03
    assert limits.max_window_s == 60.0
    assert limits.max_sessions == 1024


@pytest.mark.parametrize('kwargs', [
    {'min_window_s': 0.0},
    {'min_window_s': -1.0},
    {'min_window_s': 3.0},
    {'default_window_s': 61.0},
    {'default_window_s': 0.01},
    {'max_window_s': 1.0},
    {'min_window_s': math.nan},
    {'default_window_s': math.nan},
    {'max_window_s': math.nan},
])
def test_limits_reject_inconsistent_window_bounds(kwargs):
    """Window bounds must satisfy 0 < min <= default <= max."""
    with pytest.raises(ValueError, match='window bounds must satisfy 0 < min <= default <= max'):
        SessionLimits(**kwargs)


@pytest.mark.parametrize('kwargs', [
    {'max_window_s': math.inf},
    {'default_window_s': math.inf, 'max_window_s': math.inf},
])
def test_limits_reject_infinite_window_bounds(kwargs):
    """An infinite window bound is refused: a session could then never expire."""
    with pytest.raises(ValueError, match='window'):
        SessionLimits(**kwargs)


@pytest.mark.parametrize('max_sessions', [0, -1])
def test_limits_reject_max_sessions_below_one(max_sessions):
    """At least one session must be allowed."""
    with pytest.raises(ValueError, match=f'max_sessions must be at least 1, got {max_sessions}'):
        SessionLimits(max_sessions=max_sessions)


def test_table_exposes_its_limits(clock):
    """The table reports the limits it was built with."""
    limits = SessionLimits(default_window_s=1.0, min_window_s=0.5, max_window_s=5.0,
                           max_sessions=7)
    assert SessionTable(clock=clock, limits=limits).limits is limits


def test_start_uses_default_window(table):
    """A session asking for no particular window gets the default one."""
    session = table.start('client-a')
    assert session.client == 'client-a'
    assert session.window_s == 2.0
    assert session.started == START
    assert session.last_heartbeat == START
    assert session.deadline == START + 2.0
    assert session.owned == set()
    assert table.live() == [session]
    assert table.get(session.handle) is session


@pytest.mark.parametrize('window_s', [0.03, 0.5, 2.0, 60.0])
def test_start_grants_requested_window_within_bounds(table, window_s):
    """A window within the bounds (inclusive) is granted as asked."""
    session = table.start('client-a', requested_window_s=window_s)
    assert session.window_s == window_s
    assert session.deadline == START + window_s


@pytest.mark.parametrize('window_s', [
    math.nan, math.inf, -math.inf, -1.0, 0.001, 0.029, 60.001, 1e9])
def test_start_rejects_window_outside_bounds(table, window_s):
    """NaN, infinities, too small and too large windows are refused and add no session."""
    message = re.escape(f"requested window {window_s} s is outside the robot's bounds "
                        '[0.03, 60.0] s')
    with pytest.raises(SessionError, match=message):
        table.start('client-a', requested_window_s=window_s)
    assert table.live() == []
    assert table.next_deadline() is None


def test_start_window_bounds_follow_custom_limits(clock):
    """The bounds and the default come from the table's limits."""
    limits = SessionLimits(default_window_s=1.0, min_window_s=0.5, max_window_s=5.0)
    table = SessionTable(clock=clock, limits=limits)
    assert table.start('a').window_s == 1.0
    assert table.start('b', requested_window_s=5.0).window_s == 5.0
    with pytest.raises(SessionError, match=re.escape('[0.5, 5.0] s')):
        table.start('c', requested_window_s=0.4)
    with pytest.raises(SessionError, match=re.escape('[0.5, 5.0] s')):
        table.start('c', requested_window_s=5.5)
    assert len(table.live()) == 2


def test_session_ids_are_32_hex_chars_and_distinct(table):
    """Secret ids are 128-bit random hex strings, never repeated, and unlike any handle."""
    sessions = [table.start(f'client-{n}') for n in range(300)]
    ids = [session.secret for session in sessions]
    handles = [session.handle for session in sessions]
    assert all(HEX_ID.fullmatch(session_id) for session_id in ids)
    assert all(re.fullmatch(r'[0-9a-f]{16}', handle) for handle in handles)
    assert len(set(ids)) == len(ids) and len(set(handles)) == len(handles)
    assert not any(handle in secret for handle, secret in zip(handles, ids))


def test_resume_by_same_client_returns_live_session_and_moves_deadline(table, clock):
    """Resuming a live id as its own client keeps the session and restarts its window."""
    session = table.start('client-a', requested_window_s=1.0)
    table.claim(session.handle, 'motor')
    clock.now = START + 0.6
    resumed = table.start('client-a', resume_session_id=session.secret)
    assert resumed is session
    assert resumed.window_s == 1.0
    assert resumed.started == START
    assert resumed.deadline == START + 1.6
    assert resumed.owned == {'motor'}
    assert table.live() == [session]


def test_resume_by_another_client_is_refused_as_an_unknown_id(table, clock):
    """Another client's id, a handle and a made-up id get the same words; nothing changes."""
    session = table.start('client-a')
    clock.now = START + 1.0
    answers = set()
    for client, presented in (('client-b', session.secret), ('client-a', session.handle),
                              ('client-b', session.handle), ('client-a', '0' * 32)):
        with pytest.raises(SessionError) as refused:
            table.start(client, resume_session_id=presented)
        answers.add(str(refused.value))
    assert answers == {'resume refused: unknown session id'}
    assert session.client == 'client-a'
    assert session.deadline == START + 2.0
    assert table.live() == [session]


def test_resume_of_unknown_or_expired_id_is_refused(table, clock):
    """Only a live id can be resumed, and no new session is opened instead."""
    with pytest.raises(SessionError, match='resume refused: unknown session id$'):
        table.start('client-a', resume_session_id='f00d')
    session = table.start('client-a')
    clock.now = session.deadline
    table.expire_due()
    with pytest.raises(SessionError, match=f'resume refused: session {session.handle} '
                       'is over, expired'):
        table.start('client-a', resume_session_id=session.secret)
    assert table.live() == []


@pytest.mark.parametrize('window_s', [-1.0, 0.001, 61.0, 8e8, math.inf, math.nan])
def test_a_resume_asking_for_a_window_out_of_bounds_is_refused(table, clock, window_s):
    """As a start would be, whatever the id (the answer tells nothing of it); nothing changes."""
    session = table.start('client-a', requested_window_s=1.0)
    clock.now = START + 0.5
    answers = set()
    for presented in (session.secret, session.handle, '0' * 32):
        with pytest.raises(SessionError) as refused:
            table.start('client-a', window_s, resume_session_id=presented)
        answers.add(str(refused.value))
    assert answers == {f"requested window {window_s} s is outside the robot's bounds "
                       '[0.03, 60.0] s'}
    assert session.deadline == START + 1.0
    resumed = table.start('client-a', 2.0, resume_session_id=session.secret)
    assert resumed is session and resumed.window_s == 1.0


def test_max_sessions_refused_with_clear_reason(clock):
    """Past the capacity a start is refused saying why; ending one makes room again."""
    table = SessionTable(clock=clock, limits=SessionLimits(max_sessions=3))
    sessions = [table.start(f'client-{n}') for n in range(3)]
    with pytest.raises(SessionError, match='too many sessions: the robot allows at most 3'):
        table.start('client-3')
    assert len(table.live()) == 3
    resumed = table.start('client-0', resume_session_id=sessions[0].secret)
    assert resumed is sessions[0]
    table.end(sessions[1].secret)
    assert table.start('client-3').client == 'client-3'
    assert len(table.live()) == 3


def test_heartbeat_moves_deadline_one_window_from_now(table, clock):
    """A heartbeat pushes the deadline to one window after it."""
    session = table.start('client-a', requested_window_s=0.5)
    clock.now = START + 0.4
    assert table.heartbeat(session.handle) is session
    assert session.last_heartbeat == START + 0.4
    assert session.deadline == START + 0.9
    clock.now = START + 0.8
    assert table.expire_due() == []
    assert table.get(session.handle) is session


def test_heartbeat_for_one_session_does_not_move_another(table, clock):
    """Each session has its own deadline."""
    first = table.start('client-a', requested_window_s=1.0)
    second = table.start('client-b', requested_window_s=1.0)
    clock.now = START + 0.7
    table.heartbeat(first.handle)
    assert first.deadline == START + 1.7
    assert second.deadline == START + 1.0
    clock.now = START + 1.0
    expired = table.expire_due()
    assert [stopped.session for stopped in expired] == [second]
    assert table.live() == [first]


def test_expire_due_expires_exactly_at_the_deadline(table, clock):
    """A session lives until one full window after its last heartbeat, then expires."""
    session = table.start('client-a', requested_window_s=0.25)
    clock.now = START + 0.2
    assert table.expire_due() == []
    clock.now = session.deadline
    expired = table.expire_due()
    assert len(expired) == 1
    assert expired[0].session is session
    assert expired[0].reason == 'expired: no heartbeat for a full window'
    assert expired[0].owned == []
    assert table.live() == []
    assert table.get(session.handle) is None
    assert table.expire_due() == []


def test_expire_due_returns_every_overdue_session(table, clock):
    """Every session past its deadline expires in one call, the others stay."""
    short = [table.start(f'short-{n}', requested_window_s=0.1) for n in range(3)]
    lasting = table.start('long', requested_window_s=10.0)
    clock.now = START + 5.0
    expired = table.expire_due()
    assert {stopped.session.handle for stopped in expired} == {
        session.handle for session in short}
    assert table.live() == [lasting]


def test_end_returns_owned_resources_and_removes_session(table):
    """Ending a session returns what it owned, sorted, and frees those resources."""
    session = table.start('client-a')
    table.claim(session.handle, 'servo')
    table.claim(session.handle, 'left_motor')
    stopped = table.end(session.secret)
    assert stopped.session is session
    assert stopped.owned == ['left_motor', 'servo']
    assert stopped.reason == 'ended by its client'
    assert table.live() == []
    assert table.owner_of('servo') is None
    assert table.owner_of('left_motor') is None
    assert table.next_deadline() is None


@pytest.mark.parametrize('action', ['heartbeat', 'claim', 'end', 'resume'])
def test_unknown_expired_and_ended_ids_give_distinct_clear_messages(table, clock, action):
    """Each refusal names the action and says whether the id is unknown, expired or ended."""
    def attempt(session):
        """Heartbeats and claims name a handle; ends and resumes need the secret."""
        handle, secret = (session.handle, session.secret) if session else ('f' * 16, '0' * 32)
        if action == 'heartbeat':
            table.heartbeat(handle)
        elif action == 'claim':
            table.claim(handle, 'motor')
        elif action == 'end':
            table.end(secret)
        else:
            table.start('client-a', resume_session_id=secret)

    verb = 'command' if action == 'claim' else action
    expired = table.start('client-a', requested_window_s=0.1)
    ended = table.start('client-a', requested_window_s=10.0)
    clock.now = START + 1.0
    table.expire_due()
    table.end(ended.secret)
    with pytest.raises(SessionError) as unknown_error:
        attempt(None)
    with pytest.raises(SessionError) as expired_error:
        attempt(expired)
    with pytest.raises(SessionError) as ended_error:
        attempt(ended)

    assert str(unknown_error.value) == (
        f'{verb} refused: unknown session id' if action in ('end', 'resume')
        else f"{verb} refused: unknown session '{'f' * 16}'")
    assert str(expired_error.value) == (
        f'{verb} refused: session {expired.handle} is over, '
        'expired: no heartbeat for a full window')
    assert str(ended_error.value) == (
        f'{verb} refused: session {ended.handle} is over, ended by its client')
    assert table.live() == []
    assert table.owner_of('motor') is None


def test_old_ended_ids_are_eventually_forgotten(table, monkeypatch):
    """The table remembers a bounded number of ended ids; older ones become unknown."""
    monkeypatch.setattr(table_module, 'REMEMBERED_ENDED_IDS', 2)
    sessions = [table.start('client-a') for _ in range(3)]
    for session in sessions:
        table.end(session.secret)
    with pytest.raises(SessionError, match='unknown session'):
        table.heartbeat(sessions[0].handle)
    with pytest.raises(SessionError, match='end refused: unknown session id'):
        table.end(sessions[0].secret)
    for session in sessions[1:]:
        with pytest.raises(SessionError, match='is over, ended by its client'):
            table.heartbeat(session.handle)


def test_claim_makes_most_recent_commander_the_owner(table):
    """The session that commanded a resource last owns it; the previous owner is returned."""
    first = table.start('client-a')
    second = table.start('client-b')
    assert table.claim(first.handle, 'motor') is None
    assert table.owner_of('motor') == first.handle
    assert table.claim(second.handle, 'motor') == first.handle
    assert table.owner_of('motor') == second.handle
    assert first.owned == set()
    assert second.owned == {'motor'}
    assert table.claim(first.handle, 'motor') == second.handle
    assert table.owner_of('motor') == first.handle
    assert second.owned == set()


def test_claim_again_by_the_owner_reports_no_previous_owner(table):
    """Commanding a resource one already owns is not a takeover."""
    session = table.start('client-a')
    table.claim(session.handle, 'motor')
    assert table.claim(session.handle, 'motor') is None
    assert session.owned == {'motor'}


def test_claim_does_not_move_the_deadline(table, clock):
    """Only heartbeats keep a session alive, not commands."""
    session = table.start('client-a', requested_window_s=1.0)
    clock.now = START + 0.5
    table.claim(session.handle, 'motor')
    assert session.deadline == START + 1.0


def test_claim_with_unknown_id_changes_nothing(table):
    """A command under an unknown id does not take the resource from its owner."""
    owner = table.start('client-a')
    table.claim(owner.handle, 'motor')
    with pytest.raises(SessionError, match='command refused: unknown session'):
        table.claim('f' * 32, 'motor')
    assert table.owner_of('motor') == owner.handle
    assert owner.owned == {'motor'}


def test_expiry_returns_only_that_sessions_owned_resources(table, clock):
    """Expiry stops what the expired session owns and nothing that another session owns."""
    doomed = table.start('client-a', requested_window_s=0.5)
    alive = table.start('client-b', requested_window_s=5.0)
    table.claim(doomed.handle, 'right_motor')
    table.claim(doomed.handle, 'left_motor')
    table.claim(alive.handle, 'arm')
    clock.now = START + 1.0
    expired = table.expire_due()
    assert len(expired) == 1
    assert expired[0].session is doomed
    assert expired[0].owned == ['left_motor', 'right_motor']
    assert table.owner_of('left_motor') is None
    assert table.owner_of('right_motor') is None
    assert table.owner_of('arm') == alive.handle
    assert alive.owned == {'arm'}


def test_taken_over_resource_is_not_returned_for_the_old_session(table, clock):
    """A resource another session commanded since is not stopped when the old one expires."""
    old = table.start('client-a', requested_window_s=0.5)
    new = table.start('client-b', requested_window_s=5.0)
    table.claim(old.handle, 'left_motor')
    table.claim(old.handle, 'right_motor')
    table.claim(new.handle, 'right_motor')
    clock.now = START + 1.0
    expired = table.expire_due()
    assert [stopped.owned for stopped in expired] == [['left_motor']]
    assert table.owner_of('right_motor') == new.handle
    assert table.end(new.secret).owned == ['right_motor']


def test_next_deadline_is_the_earliest_live_deadline(table, clock):
    """next_deadline follows starts, heartbeats, expiries and ends."""
    assert table.next_deadline() is None
    slow = table.start('client-a', requested_window_s=3.0)
    assert table.next_deadline() == START + 3.0
    fast = table.start('client-b', requested_window_s=1.0)
    assert table.next_deadline() == START + 1.0
    clock.now = START + 0.5
    table.heartbeat(fast.handle)
    assert table.next_deadline() == START + 1.5
    clock.now = START + 2.5
    table.heartbeat(slow.handle)
    assert table.next_deadline() == START + 1.5
    table.expire_due()
    assert table.next_deadline() == START + 5.5
    table.end(slow.secret)
    assert table.next_deadline() is None


@pytest.mark.parametrize('action', ['heartbeat', 'claim', 'resume'])
def test_session_past_its_deadline_is_not_revived_before_the_sweep(table, clock, action):
    """Once a full window passed without a heartbeat, a late request cannot revive it."""
    session = table.start('client-a', requested_window_s=1.0)
    clock.now = START + 1.5  # past the deadline; the expiry timer has not run yet
    with pytest.raises(SessionError, match='expired'):
        if action == 'heartbeat':
            table.heartbeat(session.handle)
        elif action == 'claim':
            table.claim(session.handle, 'motor')
        else:
            table.start('client-a', resume_session_id=session.secret)
    assert table.owner_of('motor') is None


def test_held_session_has_no_deadline_until_released(table, clock):
    """A session held alive (liveliness) never expires by time; released, its window restarts."""
    session = table.start('teleop')
    table.hold(session.handle, True)
    clock.now += 3600.0
    assert table.expire_due() == [] and table.next_deadline() is None
    table.hold(session.handle, False)
    assert table.next_deadline() == clock.now + 2.0
    clock.now += 2.0
    assert [s.session.handle for s in table.expire_due()] == [session.handle]


def test_expire_stops_what_the_session_owns_and_refuses_it_afterwards(table):
    """Losing a held session's liveliness expires it now; a second expiry is refused."""
    session = table.start('teleop')
    table.hold(session.handle, True)
    table.claim(session.handle, '/left_motor')
    stopped = table.expire(session.handle)
    assert stopped.owned == ['/left_motor'] and stopped.reason.startswith('expired')
    assert table.owner_of('/left_motor') is None
    with pytest.raises(SessionError, match='is over, expired'):
        table.expire(session.handle)


def test_close_remote_keeps_local_sessions(table):
    """Connectivity loss ends remote sessions only; a client on the robot keeps its session."""
    remote = table.start('laptop')
    local = table.start('on-robot planner', remote=False)
    table.claim(remote.handle, '/left_motor')
    table.claim(local.handle, '/right_motor')
    closed = table.close_remote('robot lost connectivity')
    assert [(c.session.handle, c.owned, c.reason) for c in closed] == [
        (remote.handle, ['/left_motor'], 'robot lost connectivity')]
    assert table.owner_of('/right_motor') == local.handle


def test_close_all_ends_every_session(table):
    """Shutdown closes local and remote sessions alike."""
    table.start('laptop')
    table.start('on-robot planner', remote=False)
    assert len(table.close_all('robot shutting down')) == 2 and table.live() == []


def test_resources_to_stop_spares_actuators_taken_over_since(table):
    """Stopping an expired session's resources leaves alone what a live session drives now."""
    old = table.start('laptop')
    table.claim(old.handle, '/left_motor')
    table.claim(old.handle, '/right_motor')
    table.end(old.secret)
    new = table.start('tablet')
    table.claim(new.handle, '/left_motor')
    assert table.resources_to_stop(old.handle) == ['/right_motor']
    assert table.resources_to_stop(new.handle) == ['/left_motor']
    with pytest.raises(SessionError, match='unknown session'):
        table.resources_to_stop('f' * 32)
