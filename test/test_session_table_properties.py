"""
Property tests of the session table: any sequence of requests keeps ownership and stops right.

A hypothesis state machine drives the table with starts, heartbeats, liveliness holds, commands,
ends, liveliness losses, connectivity losses and time steps (each followed by the expiry sweep,
as the manager's timer does), and checks it against a small model after every step.
"""

from typing import Dict, List, Set

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle, initialize, invariant, multiple, rule, RuleBasedStateMachine)
import pytest

from viam_session.sessions.table import (
    SessionError, SessionLimits, SessionTable, StoppedSession)

RESOURCES = ('/left_motor', '/right_motor', '/arm_servo')
WINDOWS = (0.0, 0.05, 0.5, 2.0)


class FakeClock:
    """A monotonic clock the state machine moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SessionTableMachine(RuleBasedStateMachine):
    """The table against a model of who commanded each actuator last."""

    sessions = Bundle('sessions')

    @initialize(target=sessions)
    def set_up(self):
        self.clock = FakeClock()
        self.table = SessionTable(clock=self.clock, limits=SessionLimits(max_sessions=8))
        # Model: the session that most recently commanded each actuator, while that session
        # lives; the stops the table asked for, as (session, actuator) pairs.
        self.last_commander: Dict[str, str] = {}
        self.stops: List[tuple] = []
        self.over: Set[str] = set()
        self.secrets: Dict[str, str] = {}   # handle -> secret id, as each client keeps it
        return multiple(*(self._started(self.table.start('client')) for _ in range(2)))

    @rule(target=sessions, window_s=st.sampled_from(WINDOWS), remote=st.booleans())
    def start(self, window_s: float, remote: bool):
        try:
            session = self.table.start('client', window_s, remote=remote)
        except SessionError:
            assert len(self.table.live()) == self.table.limits.max_sessions
            return multiple()
        return self._started(session)

    @rule(session_id=sessions)
    def heartbeat(self, session_id: str) -> None:
        self._refused_unless_live(session_id, self.table.heartbeat)

    @rule(session_id=sessions, alive=st.booleans())
    def hold(self, session_id: str, alive: bool) -> None:
        self._refused_unless_live(session_id, lambda sid: self.table.hold(sid, alive))

    @rule(session_id=sessions, resource=st.sampled_from(RESOURCES))
    def command(self, session_id: str, resource: str) -> None:
        if self._refused_unless_live(session_id, lambda sid: self.table.claim(sid, resource)):
            self.last_commander[resource] = session_id

    @rule(session_id=sessions)
    def end(self, session_id: str) -> None:
        if session_id in self.over:
            with pytest.raises(SessionError):
                self.table.end(self.secrets[session_id])
            return
        try:
            self._record(self.table.end(self.secrets[session_id]))
        except SessionError:
            # Past its deadline, not yet swept: the sweep will expire it.
            assert self.table.get(session_id).deadline <= self.clock.now

    @rule(session_id=sessions)
    def lose_liveliness(self, session_id: str) -> None:
        if session_id in self.over:
            with pytest.raises(SessionError):
                self.table.expire(session_id)
            return
        self._record(self.table.expire(session_id))

    @rule()
    def lose_connectivity(self) -> None:
        remote_before = {s.handle for s in self.table.live() if s.remote}
        closed = self.table.close_remote('robot lost connectivity')
        assert {c.session.handle for c in closed} == remote_before
        for stopped in closed:
            self._record(stopped)

    @rule(seconds=st.sampled_from((0.01, 0.049, 0.05, 0.3, 1.0, 2.5)))
    def advance_time(self, seconds: float) -> None:
        self.clock.now += seconds
        for stopped in self.table.expire_due():
            self._record(stopped)

    @rule(session_id=sessions)
    def stop_resources(self, session_id: str) -> None:
        """Check that stopping a session's resources never names what another session owns."""
        names = self.table.resources_to_stop(session_id)
        owner_ids = {self.table.owner_of(name) for name in names}
        assert owner_ids <= {session_id, None}

    @invariant()
    def owners_are_live_and_within_their_window(self) -> None:
        for resource in RESOURCES:
            owner = self.table.owner_of(resource)
            if owner is None:
                continue
            session = self.table.get(owner)
            assert session is not None, f'{resource} owned by a session that is over'
            assert owner not in self.over
            assert resource in session.owned

    @invariant()
    def every_stop_happened_once(self) -> None:
        assert len(self.stops) == len(set(self.stops))

    def _started(self, session) -> str:
        self.secrets[session.handle] = session.secret
        return session.handle

    def _refused_unless_live(self, session_id: str, action) -> bool:
        session = self.table.get(session_id)
        if session is None or session.deadline <= self.clock.now:
            with pytest.raises(SessionError):
                action(session_id)
            return False
        action(session_id)
        return True

    def _record(self, stopped: StoppedSession) -> None:
        session_id = stopped.session.handle
        assert session_id not in self.over, 'a session stopped twice'
        self.over.add(session_id)
        expected = sorted(name for name, commander in self.last_commander.items()
                          if commander == session_id)
        assert stopped.owned == expected
        for name in expected:
            del self.last_commander[name]
        self.stops += [(session_id, name) for name in stopped.owned]


SessionTableMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None)
test_session_table_state_machine = SessionTableMachine.TestCase
