"""
Names in a client's request (topics, nodes), checked with a reason that fits on one line.

rclpy's own name errors span three lines (reason, the name, a caret under the fault) and
echo the whole name, however long, and its length limit reads `'255U - 8U'`.
"""

from typing import Callable

from rclpy.validate_full_topic_name import validate_full_topic_name
from rclpy.validate_namespace import validate_namespace
from rclpy.validate_node_name import validate_node_name

from viam_session.sessions.quoting import quoted

__all__ = ['check_node_name', 'check_topic_name', 'MAX_TOPIC_LENGTH']

# RMW_TOPIC_MAX_NAME_LENGTH: DDS prefixes a ROS topic's name (rt/...) within 255 characters.
MAX_TOPIC_LENGTH = 255 - 8


def check_topic_name(topic: str, what: str) -> None:
    """Raise ValueError (`bad <what> ...: why`) unless `topic` is a full topic name."""
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f'bad {what} {quoted(topic)}: longer than {MAX_TOPIC_LENGTH} characters')
    _check(validate_full_topic_name, topic, topic, what)


def check_node_name(node: str, what: str) -> None:
    """Raise ValueError (`bad <what> ...: why`) unless `node` is a fully qualified node name."""
    namespace, _, name = node.rpartition('/')
    if not node.startswith('/'):
        raise ValueError(f'bad {what} {quoted(node)}: it must be fully qualified (start with /)')
    _check(validate_namespace, namespace or '/', node, what)
    _check(validate_node_name, name, node, what)


def _check(validate: Callable[[str], object], part: str, name: str, what: str) -> None:
    try:
        validate(part)
    except Exception as error:  # noqa: B902 - rclpy raises several name errors
        lines = str(error).splitlines()
        why = lines[0].partition(': ')[2].rstrip(':') or lines[0]
        raise ValueError(f'bad {what} {quoted(name)}: {why}') from error
