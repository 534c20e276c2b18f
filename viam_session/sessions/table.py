"""
The session table: sessions, heartbeat deadlines and actuator ownership, without ROS.

Time comes from an injected clock (seconds, monotonic), so tests drive it by hand. The table
only decides; the node that wraps it stops the actuators, outside any lock, in parallel.

A session stays alive in one of two ways: heartbeats, each moving its deadline one window
forward, or a *hold*: while something below the table vouches for the client (the manager uses
the DDS liveliness of the session's heartbeat writer), the session has no deadline, and when
that voucher is withdrawn the wrapper expires it at once with `expire`.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
import math
import secrets
from typing import Callable, Dict, List, Optional, Set, Tuple

from viam_session.sessions.quoting import quoted

__all__ = ['Session', 'SessionError', 'SessionLimits', 'SessionTable', 'StoppedSession']

# How many ended or expired ids the table remembers, to say "expired" rather than "unknown".
REMEMBERED_ENDED_IDS = 4096
EXPIRED_REASON = 'expired: no heartbeat for a full window'


class SessionError(ValueError):
    """A request the table refuses; the message says why, for the client."""


@dataclass(frozen=True)
class SessionLimits:
    """Window bounds and capacity; defaults are those of Viam's robot server."""

    default_window_s: float = 2.0
    min_window_s: float = 0.03
    max_window_s: float = 60.0
    max_sessions: int = 1024

    def __post_init__(self) -> None:
        windows = (self.min_window_s, self.default_window_s, self.max_window_s)
        if not (all(math.isfinite(w) for w in windows)
                and 0.0 < self.min_window_s <= self.default_window_s <= self.max_window_s):
            raise ValueError(
                'window bounds must satisfy 0 < min <= default <= max and be finite, got '
                f'min {self.min_window_s}, default {self.default_window_s}, '
                f'max {self.max_window_s}')
        if self.max_sessions < 1:
            raise ValueError(f'max_sessions must be at least 1, got {self.max_sessions}')


@dataclass
class Session:
    """A live session: who, how long between heartbeats, and when it expires."""

    session_id: str
    client: str
    window_s: float
    started: float
    last_heartbeat: float
    remote: bool = True
    held: bool = False
    owned: Set[str] = field(default_factory=set)

    @property
    def deadline(self) -> float:
        """Return when the session expires; infinite while it is held alive."""
        return math.inf if self.held else self.last_heartbeat + self.window_s


@dataclass(frozen=True)
class StoppedSession:
    """A session that expired or ended, with the actuators it owned at that moment."""

    session: Session
    owned: List[str]
    reason: str


class SessionTable:
    """Sessions by id, their deadlines, and which session owns each actuator."""

    def __init__(self, *, clock: Callable[[], float], limits: SessionLimits = SessionLimits()):
        self._clock = clock
        self._limits = limits
        self._sessions: Dict[str, Session] = {}
        self._owner_of: Dict[str, str] = {}
        # Ended or expired id -> (why, what it owned then), newest last.
        self._ended: 'OrderedDict[str, Tuple[str, Tuple[str, ...]]]' = OrderedDict()

    @property
    def limits(self) -> SessionLimits:
        return self._limits

    def start(self, client: str, requested_window_s: float = 0.0,
              resume_session_id: str = '', *, remote: bool = True) -> Session:
        """
        Open a session (or resume a live one of the same client); raise SessionError.

        `remote` sessions end when the robot loses connectivity (`close_remote`); a client
        running on the robot itself opens a local one.
        """
        window_s = self.window_for(client, requested_window_s, resume_session_id)
        now = self._clock()
        if resume_session_id:
            session = self._sessions[resume_session_id]
            session.last_heartbeat = now
            return session
        session_id = secrets.token_hex(16)  # 128 random bits
        session = Session(session_id=session_id, client=client, window_s=window_s,
                          started=now, last_heartbeat=now, remote=remote)
        self._sessions[session_id] = session
        return session

    def window_for(self, client: str, requested_window_s: float = 0.0,
                   resume_session_id: str = '') -> float:
        """Return the window `start` would grant now, or raise SessionError as it would."""
        if resume_session_id:
            session = self._find(resume_session_id, 'resume', self._clock())
            if session.client != client:
                raise SessionError(
                    f'cannot resume session {resume_session_id}: it belongs to another client')
            return session.window_s
        window_s = self._window(requested_window_s)
        if len(self._sessions) >= self._limits.max_sessions:
            raise SessionError(
                f'too many sessions: the robot allows at most {self._limits.max_sessions}')
        return window_s

    def heartbeat(self, session_id: str) -> Session:
        """Push the session's deadline one window forward; raise SessionError."""
        now = self._clock()
        session = self._find(session_id, 'heartbeat', now)
        session.last_heartbeat = now
        return session

    def hold(self, session_id: str, alive: bool) -> Session:
        """
        Keep the session alive without a deadline (`alive`), or let its window run again.

        Releasing restarts the window from now, as if a heartbeat had just arrived; the
        wrapper calls `expire` instead when the release means the client is gone.
        """
        now = self._clock()
        session = self._find(session_id, 'heartbeat', now)
        session.held = alive
        session.last_heartbeat = now
        return session

    def claim(self, session_id: str, resource: str) -> Optional[str]:
        """Make the session the owner of `resource`; return the previous owner's id, if any."""
        session = self._find(session_id, 'command', self._clock())
        previous = self._owner_of.get(resource)
        if previous is not None and previous != session_id:
            self._sessions[previous].owned.discard(resource)
        self._owner_of[resource] = session_id
        session.owned.add(resource)
        return previous if previous != session_id else None

    def end(self, session_id: str) -> StoppedSession:
        """End the session now; raise SessionError if it is not live."""
        self._find(session_id, 'end', self._clock())
        return self._remove(session_id, 'ended by its client')

    def expire(self, session_id: str) -> StoppedSession:
        """Expire a live session now (its client is known to be gone); raise SessionError."""
        now = self._clock()
        session = self._sessions.get(session_id) or self._find(session_id, 'expire', now)
        if session.held:
            # Liveliness is lost one window after the last heartbeat: the best estimate.
            session.last_heartbeat = max(session.last_heartbeat, now - session.window_s)
        return self._remove(session_id, EXPIRED_REASON)

    def expire_due(self) -> List[StoppedSession]:
        """Remove and return every session whose deadline has passed."""
        now = self._clock()
        due = [sid for sid, session in self._sessions.items() if session.deadline <= now]
        return [self._remove(sid, EXPIRED_REASON) for sid in due]

    def close(self, session_id: str, reason: str) -> StoppedSession:
        """End one live session for a reason of the robot's; raise SessionError."""
        self._find(session_id, 'close', self._clock())
        return self._remove(session_id, reason)

    def close_remote(self, reason: str) -> List[StoppedSession]:
        """End every remote session at once (the robot lost connectivity)."""
        remote = [sid for sid, session in self._sessions.items() if session.remote]
        return [self._remove(sid, reason) for sid in remote]

    def close_all(self, reason: str) -> List[StoppedSession]:
        """End every session at once (the robot shuts down)."""
        return [self._remove(sid, reason) for sid in list(self._sessions)]

    def resources_to_stop(self, session_id: str) -> List[str]:
        """
        Return what stopping this session's resources should stop; raise SessionError.

        For a live session, what it owns. For a recently ended or expired one, what it owned
        then, except actuators another live session has commanded since: those stay on.
        """
        session = self._sessions.get(session_id)
        if session is not None:
            return sorted(session.owned)
        if session_id not in self._ended:
            raise SessionError(f'stop refused: unknown session id {quoted(session_id)}')
        _, owned = self._ended[session_id]
        return [name for name in owned if name not in self._owner_of]

    def next_deadline(self) -> Optional[float]:
        """Return the earliest deadline of any live session not held alive, or None."""
        return min((s.deadline for s in self._sessions.values() if not s.held), default=None)

    def live(self) -> List[Session]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> Optional[Session]:
        return self._sessions.get(session_id)

    def owner_of(self, resource: str) -> Optional[str]:
        return self._owner_of.get(resource)

    def _window(self, requested_window_s: float) -> float:
        limits = self._limits
        is_number = isinstance(requested_window_s, (int, float))
        if isinstance(requested_window_s, bool) or not is_number:
            raise SessionError(f'requested window must be a number, got {requested_window_s!r}')
        if requested_window_s == 0.0:
            return limits.default_window_s
        if not math.isfinite(requested_window_s) or not (
                limits.min_window_s <= requested_window_s <= limits.max_window_s):
            raise SessionError(
                f"requested window {requested_window_s} s is outside the robot's bounds "
                f'[{limits.min_window_s}, {limits.max_window_s}] s')
        return requested_window_s

    def _find(self, session_id: str, action: str, now: float) -> Session:
        session = self._sessions.get(session_id)
        if session is not None:
            if session.deadline <= now:
                # Past its deadline but not yet swept: it is expired, nothing revives it.
                raise SessionError(f'{action} refused: session {session_id} has expired')
            return session
        if session_id in self._ended:
            reason, _ = self._ended[session_id]
            raise SessionError(f'{action} refused: session {session_id} is over, {reason}')
        raise SessionError(f'{action} refused: unknown session id {quoted(session_id)}')

    def _remove(self, session_id: str, reason: str) -> StoppedSession:
        session = self._sessions.pop(session_id)
        owned = sorted(session.owned)
        for resource in owned:
            del self._owner_of[resource]
        self._ended[session_id] = (reason, tuple(owned))
        while len(self._ended) > REMEMBERED_ENDED_IDS:
            self._ended.popitem(last=False)
        return StoppedSession(session=session, owned=owned, reason=reason)
