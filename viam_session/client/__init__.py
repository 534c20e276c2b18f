"""Client library: what Viam's SDKs do for sessions, for Python programs that drive a robot."""

from viam_session.client.session_client import SessionClient, SessionError, SessionLost

__all__ = ['SessionClient', 'SessionError', 'SessionLost']
