"""viam_session: keeps a ROS 2 robot safe when a client's network connection drops."""
