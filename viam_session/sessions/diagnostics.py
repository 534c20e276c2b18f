"""The session manager's `/diagnostics` status: live sessions, their age and what they own."""

from typing import Optional, Sequence

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from viam_session.sessions.table import Session

__all__ = ['session_status']


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
            key=f'session {session.session_id[:8]}',
            value=(f'{session.client} ({"remote" if session.remote else "local"}), window '
                   f'{session.window_s:g} s, age {now - session.started:.1f} s, owns {owned}')))
    return DiagnosticStatus(
        level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK, name=name,
        message='; '.join([summary, *problems]), hardware_id='', values=values)
