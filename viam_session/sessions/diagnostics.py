"""The session manager's `/diagnostics` statuses: sessions, and the actuators it stops."""

from dataclasses import dataclass
from typing import Optional, Sequence

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from viam_session.sessions.described_resources import IDLE
from viam_session.sessions.table import Session

__all__ = ['ActuatorView', 'actuator_status', 'session_status']


def session_status(*, name: str, sessions: Sequence[Session], now: float,
                   automatic_stop: bool, connectivity_lost: Optional[str]) -> DiagnosticStatus:
    """
    Describe the sessions for rqt_robot_monitor; ROS-free apart from the message types.

    WARN while the robot has lost connectivity or automatic stopping is off (an integrator must
    then stop actuators); OK otherwise. One value per session: client, where it runs, window,
    age and owned actuators.
    """
    remote = sum(1 for session in sessions if session.remote)
    problems = []
    if connectivity_lost is not None:
        problems.append(f'robot lost connectivity: {connectivity_lost}')
    if not automatic_stop:
        problems.append('automatic stop is off')
    summary = f'{len(sessions)} live session(s), {remote} remote'
    values = [KeyValue(key='automatic stop', value='on' if automatic_stop else 'off'),
              KeyValue(key='connectivity', value=connectivity_lost or 'ok')]
    for session in sorted(sessions, key=lambda s: s.started):
        owned = ', '.join(sorted(session.owned)) or 'nothing'
        values.append(KeyValue(
            key=f'session {session.handle}',
            value=(f'{session.client} ({"remote" if session.remote else "local"}), window '
                   f'{session.window_s:g} s, age {now - session.started:.1f} s, owns {owned}')))
    return DiagnosticStatus(
        level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK, name=name,
        message='; '.join([summary, *problems]), hardware_id='', values=values)


@dataclass(frozen=True)
class ActuatorView:
    """What the manager knows of one actuator it stops."""

    name: str
    owner: Optional[str]    # the handle of the session that owns it
    stopped: bool           # deactivated by the manager and not activated again since
    problem: str = ''       # the last stop or reactivation that failed; '' once one worked


def actuator_status(*, name: str, actuators: Sequence[ActuatorView]) -> DiagnosticStatus:
    """
    Describe the actuators for rqt_robot_monitor; ROS-free apart from the message types.

    An actuator no session owns is idle, and inactive once the manager stopped it: the
    robot's resting state between sessions, so OK. WARN while a stop or a reactivation failed
    (the actuator may still run, or a live session cannot drive it).
    """
    values = []
    for actuator in actuators:
        if actuator.problem:
            text = actuator.problem
        elif actuator.owner is not None:
            text = (f'inactive, activating for session {actuator.owner}' if actuator.stopped
                    else f'owned by session {actuator.owner}')
        else:
            text = IDLE if actuator.stopped else 'idle: no session'
        values.append(KeyValue(key=actuator.name, value=text))
    failed = [actuator.name for actuator in actuators if actuator.problem]
    owned = sum(1 for actuator in actuators if actuator.owner is not None)
    message = (f'{len(actuators)} actuator(s), {owned} owned by a session'
               + (f'; failed: {", ".join(failed)}' if failed else ''))
    return DiagnosticStatus(level=DiagnosticStatus.WARN if failed else DiagnosticStatus.OK,
                            name=name, message=message, hardware_id='', values=values)
