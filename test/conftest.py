"""Shared fixtures: keep DDS on this machine and give every robot a domain of its own."""

import itertools
import os
from pathlib import Path
from typing import Iterator

import pytest

# Before anything imports rclpy: discovery stays on localhost (see shared notes on faults).
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

from viam_session.sim_robot import MotorSpec, SimRobot  # noqa: E402

# Consecutive tests use different domains, so a robot still shutting down cannot talk to the
# next test's; the start depends on the process id so two runs on one machine do not collide.
_domains = itertools.cycle(range(1, 101))
for _ in range(os.getpid() % 100):
    next(_domains)


def next_domain() -> int:
    """Return a ROS domain id no recent test of this run has used."""
    return next(_domains)


def _robot(tmp_path: Path, **kwargs) -> Iterator[SimRobot]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain()))
    robot = SimRobot(workdir=tmp_path, env=env, **kwargs)
    try:
        robot.start()
        yield robot
    except BaseException:
        for name in ('session_manager', *robot.motors):
            log = robot.log_path(name)
            if log.exists():
                print(f'--- {log.name}\n{log.read_text()}')
        raise
    finally:
        robot.close()


@pytest.fixture
def robot(tmp_path: Path) -> Iterator[SimRobot]:
    """One motor, window 0.5 s."""
    yield from _robot(tmp_path, default_window_s=0.5)


@pytest.fixture
def two_motor_robot(tmp_path: Path) -> Iterator[SimRobot]:
    """Two motors on one chip, window 0.5 s."""
    yield from _robot(tmp_path, default_window_s=0.5,
                      motors=(MotorSpec('left_motor', 12, 16), MotorSpec('right_motor', 13, 17)))
