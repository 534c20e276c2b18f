"""
The session table: sessions, heartbeat deadlines and actuator ownership, without ROS.

Time comes from an injected clock (seconds, monotonic), so tests drive it by hand. The table
only decides; the node that wraps it stops the actuators, outside any lock, in parallel.

A session stays alive in one of two ways: heartbeats, each moving its deadline one window
forward, or a *hold*: while something below the table vouches for the client (the manager uses
the DDS liveliness of the session's heartbeat writer), the session has no deadline, and when
that voucher is withdrawn the wrapper expires it at once with `expire`.

Every session has two names (see `command_auth`). Its *handle* is public: the table is keyed
by it, and everything the wrapper publishes or logs uses it. Its *secret* id is known only to
the table and to the client the start reply goes to; ending, resuming and command tags need it.
Nothing the table says in an error contains a secret, and a resume with anything but the
secret of a session of the same client (a handle, another client's id, a made-up id) is
refused with the same words as an unknown id, at the same point, before any waiting.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
import math
import secrets
from typing import Callable, Dict, List, Optional, Set, Tuple

from viam_session.sessions.command_auth import tag_matches
from viam_session.sessions.quoting import quoted

__all__ = ['NotAuthenticated', 'over_reason', 'Session', 'SessionError', 'SessionLimits',
           'SessionTable', 'StoppedSession']

# How many ended or expired sessions the table remembers, to say "expired" rather than "unknown".
REMEMBERED_ENDED_IDS = 4096
EXPIRED_REASON = 'expired: no heartbeat for a full window'
# The one answer to a secret id that is not a session's, or not the requesting client's.
UNKNOWN_ID = '{action} refused: unknown session id'
CLOSED = 'closed by robot'


def over_reason(refusal: str, handle: str) -> Optional[str]:
    """
    Return why session `handle` is over if `refusal` (a SessionError's message) says it is.

    The table refuses a request of a session that is over with `... session <handle> is over,
    <why>`; `why` starts with what ended it: `expired: ...`, `ended ...`, `closed by robot: ...`.
    """
    marker = f'session {handle} is over, '
    at = refusal.find(marker)
    return refusal[at + len(marker):] if at >= 0 else None


class SessionError(ValueError):
    """A request the table refuses; the message says why, for the client."""


class NotAuthenticated(SessionError):
    """A command not proven to come from its session (unknown handle, wrong tag, replay)."""


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

    handle: str
    secret: str
    client: str
    window_s: float
    started: float
    last_heartbeat: float
    remote: bool = True
    held: bool = False
    owned: Set[str] = field(default_factory=set)
    # The highest sequence of a command accepted for this session.
    command_sequence: int = 0

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


@dataclass(frozen=True)
class _Ended:
    """What the table remembers of a session that is over."""

    reason: str
    owned: Tuple[str, ...]
    secret: str
    client: str


class SessionTable:
    """Sessions by handle, their deadlines, and which session owns each actuator."""

    def __init__(self, *, clock: Callable[[], float], limits: SessionLimits = SessionLimits()):
        self._clock = clock
        self._limits = limits
        self._sessions: Dict[str, Session] = {}
        self._owner_of: Dict[str, str] = {}   # resource -> handle
        # Ended or expired handle -> what is remembered of it, newest last.
        self._ended: 'OrderedDict[str, _Ended]' = OrderedDict()
        # Secret -> handle, for live and remembered sessions.
        self._handle_of: Dict[str, str] = {}

    @property
    def limits(self) -> SessionLimits:
        return self._limits

    def start(self, client: str, requested_window_s: float = 0.0,
              resume_session_id: str = '', *, remote: bool = True) -> Session:
        """
        Open a session (or resume a live one of the same client); raise SessionError.

        `resume_session_id` is the session's secret. `remote` sessions end when the robot
        loses connectivity (`close_remote`); a client running on the robot itself opens a
        local one.
        """
        window_s = self.window_for(client, requested_window_s, resume_session_id)
        now = self._clock()
        if resume_session_id:
            session = self._sessions[self._handle_of[resume_session_id]]
            session.last_heartbeat = now
            return session
        secret = secrets.token_hex(16)  # 128 random bits
        handle = secrets.token_hex(8)   # public; random, so it says nothing of the secret
        while handle in self._sessions or handle in self._ended:
            handle = secrets.token_hex(8)
        session = Session(handle=handle, secret=secret, client=client, window_s=window_s,
                          started=now, last_heartbeat=now, remote=remote)
        self._sessions[handle] = session
        self._handle_of[secret] = handle
        return session

    def window_for(self, client: str, requested_window_s: float = 0.0,
                   resume_session_id: str = '') -> float:
        """
        Return the window `start` would grant now, or raise SessionError as it would.

        The requested window is checked on a resume too (a resumed session keeps its own
        window): a window out of bounds is refused whatever the id, so the answer tells
        nothing of the id.
        """
        window_s = self._window(requested_window_s)
        if resume_session_id:
            handle = self._handle_of.get(resume_session_id)
            live = self._sessions.get(handle)
            ended = self._ended.get(handle)
            owner = live.client if live is not None else ended.client if ended else None
            if owner != client:
                # Someone else's session is answered exactly as an unknown id.
                raise SessionError(UNKNOWN_ID.format(action='resume'))
            return self._find(handle, 'resume', self._clock()).window_s
        if len(self._sessions) >= self._limits.max_sessions:
            raise SessionError(
                f'too many sessions: the robot allows at most {self._limits.max_sessions}')
        return window_s

    def heartbeat(self, handle: str) -> Session:
        """Push the session's deadline one window forward; raise SessionError."""
        now = self._clock()
        session = self._find(handle, 'heartbeat', now)
        session.last_heartbeat = now
        return session

    def hold(self, handle: str, alive: bool) -> Session:
        """
        Keep the session alive without a deadline (`alive`), or let its window run again.

        Releasing restarts the window from now, as if a heartbeat had just arrived; the
        wrapper calls `expire` instead when the release means the client is gone.
        """
        now = self._clock()
        session = self._find(handle, 'heartbeat', now)
        session.held = alive
        session.last_heartbeat = now
        return session

    def authenticate(self, handle: str, resource: str, value: float, sequence: int,
                     tag: bytes) -> None:
        """
        Accept a command as its session's, or raise NotAuthenticated (say nothing to it).

        The tag must be the command's, keyed by the session's secret, and the sequence above
        every one accepted before. Authenticated commands of a session that is over pass:
        `claim` then refuses them with the reason, for their client.
        """
        live = self._sessions.get(handle)
        ended = self._ended.get(handle)
        if live is None and ended is None:
            raise NotAuthenticated(f'command refused: unknown session {quoted(handle)}')
        secret = live.secret if live is not None else ended.secret
        if not tag_matches(secret, handle, resource, value, sequence, tag):
            raise NotAuthenticated(
                f'command refused: its tag does not match session {handle} (forged?)')
        if live is not None:
            if sequence <= live.command_sequence:
                raise NotAuthenticated(
                    f'command refused: sequence {sequence} of session {handle} is not above '
                    f'{live.command_sequence} (replayed?)')
            live.command_sequence = sequence

    def claim(self, handle: str, resource: str) -> Optional[str]:
        """Make the session the owner of `resource`; return the previous owner's handle."""
        session = self._find(handle, 'command', self._clock())
        previous = self._owner_of.get(resource)
        if previous is not None and previous != handle:
            self._sessions[previous].owned.discard(resource)
        self._owner_of[resource] = handle
        session.owned.add(resource)
        return previous if previous != handle else None

    def handle_of(self, secret: str, action: str) -> str:
        """Return the handle of the session with this secret id; raise SessionError."""
        handle = self._handle_of.get(secret)
        if handle is None:
            raise SessionError(UNKNOWN_ID.format(action=action))
        return handle

    def end(self, secret: str) -> StoppedSession:
        """End the session with this secret id now; raise SessionError if it is not live."""
        handle = self.handle_of(secret, 'end')
        self._find(handle, 'end', self._clock())
        return self._remove(handle, 'ended by its client')

    def expire(self, handle: str) -> StoppedSession:
        """Expire a live session now (its client is known to be gone); raise SessionError."""
        now = self._clock()
        session = self._sessions.get(handle) or self._find(handle, 'expire', now)
        if session.held:
            # Liveliness is lost one window after the last heartbeat: the best estimate.
            session.last_heartbeat = max(session.last_heartbeat, now - session.window_s)
        return self._remove(handle, EXPIRED_REASON)

    def expire_due(self) -> List[StoppedSession]:
        """Remove and return every session whose deadline has passed."""
        now = self._clock()
        due = [sid for sid, session in self._sessions.items() if session.deadline <= now]
        return [self._remove(sid, EXPIRED_REASON) for sid in due]

    def close(self, handle: str, reason: str) -> StoppedSession:
        """End one live session for a reason of the robot's; raise SessionError."""
        self._find(handle, 'close', self._clock())
        return self._remove(handle, reason, f'{CLOSED}: {reason}')

    def close_remote(self, reason: str) -> List[StoppedSession]:
        """End every remote session at once (the robot lost connectivity)."""
        remote = [sid for sid, session in self._sessions.items() if session.remote]
        return [self._remove(sid, reason, f'{CLOSED}: {reason}') for sid in remote]

    def close_all(self, reason: str) -> List[StoppedSession]:
        """End every session at once (the robot shuts down)."""
        return [self._remove(sid, reason, f'{CLOSED}: {reason}') for sid in list(self._sessions)]

    def resources_to_stop(self, handle: str) -> List[str]:
        """
        Return what stopping this session's resources should stop; raise SessionError.

        For a live session, what it owns. For a recently ended or expired one, what it owned
        then, except actuators another live session has commanded since: those stay on.
        """
        session = self._sessions.get(handle)
        if session is not None:
            return sorted(session.owned)
        if handle not in self._ended:
            raise SessionError(f'stop refused: unknown session {quoted(handle)}')
        return [name for name in self._ended[handle].owned if name not in self._owner_of]

    def next_deadline(self) -> Optional[float]:
        """Return the earliest deadline of any live session not held alive, or None."""
        return min((s.deadline for s in self._sessions.values() if not s.held), default=None)

    def live(self) -> List[Session]:
        return list(self._sessions.values())

    def get(self, handle: str) -> Optional[Session]:
        return self._sessions.get(handle)

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

    def _find(self, handle: str, action: str, now: float) -> Session:
        session = self._sessions.get(handle)
        if session is not None:
            if session.deadline <= now:
                # Past its deadline but not yet swept: it is expired, nothing revives it.
                raise SessionError(
                    f'{action} refused: session {handle} is over, {EXPIRED_REASON}')
            return session
        if handle in self._ended:
            raise SessionError(
                f'{action} refused: session {handle} is over, {self._ended[handle].reason}')
        raise SessionError(f'{action} refused: unknown session {quoted(handle)}')

    def _remove(self, handle: str, reason: str, over: str = '') -> StoppedSession:
        """Remove a live session; `over` is how later refusals say it ended (else `reason`)."""
        session = self._sessions.pop(handle)
        owned = sorted(session.owned)
        for resource in owned:
            del self._owner_of[resource]
        self._ended[handle] = _Ended(reason=over or reason, owned=tuple(owned),
                                     secret=session.secret, client=session.client)
        while len(self._ended) > REMEMBERED_ENDED_IDS:
            _, forgotten = self._ended.popitem(last=False)
            del self._handle_of[forgotten.secret]
        return StoppedSession(session=session, owned=owned, reason=reason)
