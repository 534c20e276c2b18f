"""The session gate: a session's commands reach a robot's own topic only while it lives."""
