"""Client sessions: the ROS-free session table and the session manager node around it."""
