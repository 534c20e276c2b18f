"""Conversions between seconds, ROS Duration/Time messages and the monotonic clock."""

import time

from builtin_interfaces.msg import Duration, Time

__all__ = ['duration_to_seconds', 'monotonic_to_ros_time', 'seconds_to_duration',
           'time_to_seconds']


def seconds_to_duration(seconds: float) -> Duration:
    nanoseconds = int(round(seconds * 1e9))
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def duration_to_seconds(duration: Duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def time_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def monotonic_to_ros_time(monotonic_s: float) -> Time:
    """Convert an instant on the monotonic clock to system-clock (ROS) time."""
    wall_ns = time.time_ns() - int((time.monotonic() - monotonic_s) * 1e9)
    return Time(sec=wall_ns // 1_000_000_000, nanosec=wall_ns % 1_000_000_000)
