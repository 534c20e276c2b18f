"""Shared fixtures: keep DDS on this machine and give every robot a domain of its own."""

import itertools
import os
from pathlib import Path
import sys
from typing import Iterator

import pytest

# Before anything imports rclpy: discovery stays on localhost (docs/testing.md).
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
# The harness (viam_session_harness/) is not installed with the package: it is found in the
# repository, by this process and by the processes the tests start.
REPOSITORY = str(Path(__file__).resolve().parents[1])
if REPOSITORY not in sys.path:
    sys.path.insert(0, REPOSITORY)
os.environ['PYTHONPATH'] = os.pathsep.join(
    [REPOSITORY] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])

from viam_session_harness.ros_domains import domain_range  # noqa: E402
from viam_session_harness.sim_robot import MotorSpec, SimRobot  # noqa: E402

from supervisor_rig import SupervisorRig  # noqa: E402, I100 - the tests' own rig

# Consecutive tests use different domains, so a robot still shutting down cannot talk to the
# next test's; the start depends on the process id so two runs on one machine do not collide.
# With ROS_DOMAIN_ID set, only the domains it implies are used (the machine may be shared).
_DOMAINS = domain_range(range(1, 101))
_domains = itertools.cycle(_DOMAINS)
for _ in range(os.getpid() % len(_DOMAINS)):
    next(_domains)


def next_domain() -> int:
    """Return a ROS domain id no recent test of this run has used."""
    return next(_domains)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f'report_{report.when}', report)


def _robot(request: pytest.FixtureRequest, tmp_path: Path, **kwargs) -> Iterator[SimRobot]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain()))
    robot = SimRobot(workdir=tmp_path, env=env, **kwargs)
    failed = True
    try:
        robot.start()
        yield robot
        failed = getattr(request.node, 'report_call', None) is None or \
            request.node.report_call.failed
    finally:
        robot.close()
        if failed:
            for log in sorted(tmp_path.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text()}')


@pytest.fixture
def robot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SimRobot]:
    """One motor, window 0.5 s."""
    yield from _robot(request, tmp_path, default_window_s=0.5)


@pytest.fixture
def two_motor_robot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SimRobot]:
    """Two motors on one chip, window 0.5 s."""
    yield from _robot(request, tmp_path, default_window_s=0.5,
                      motors=(MotorSpec('left_motor', 12, 16), MotorSpec('right_motor', 13, 17)))


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SupervisorRig]:
    """Provide a supervisor rig in a domain of its own; print its logs when the test failed."""
    supervisor_rig = SupervisorRig(tmp_path, next_domain())
    failed = True
    try:
        yield supervisor_rig
        report = getattr(request.node, 'report_call', None)
        failed = report is None or report.failed
    finally:
        supervisor_rig.close(failed)
