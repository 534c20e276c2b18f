"""
`ros2 launch viam_session robot.launch.py` for real: every driver of the robot reaches active.

Needs `launch_ros`, the `ros2` command and this package installed in an ament prefix (share/
files from setup.py): a ROS 2 install or a colcon workspace. Skipped (with the reason) where
they are missing, as in the project's own environment, which has no launch tools.
"""

import os
from pathlib import Path
import shutil
import signal
import subprocess
import time
from typing import Dict, Iterator

from lifecycle_msgs.msg import State
import pytest

from conftest import next_domain  # noqa: I100 - the tests' own helpers
from viam_session.chips.file_watch import FileWatch
from viam_session.chips.sim_chip import read_line_values
from viam_session_harness.sim_drivers import DriverObserver
from viam_session_harness.sim_robot import local_ros_environment

pytest.importorskip('launch_ros', reason='launch_ros is not installed (no ROS 2 launch tools)')

TIMEOUT_S = 120.0       # process start-up on a loaded 2-core machine, then discovery
ROBOTS = {
    # launch file (and arguments): {node name (no leading /): driver type}
    ('robot.launch.py',): {'left_motor': 'dc_motor', 'right_motor': 'dc_motor',
                           'camera_pan': 'servo', 'left_wheel_encoder': 'encoder',
                           'estop': 'digital_input'},
    ('two_part_robot.launch.py',): {'drive_motor': 'dc_motor', 'arm/servo_board': 'board',
                                    'arm/shoulder': 'servo'},
}
# PWM lines that must read 0 once the launch is over: {launch file: lines}.
PWM_LINES = {'robot.launch.py': (12, 13), 'two_part_robot.launch.py': (12,)}


def installed_launch_file(name: str) -> Path:
    """Return the installed launch file, or skip saying what is missing."""
    from ament_index_python.packages import (
        get_package_share_directory, PackageNotFoundError)
    if shutil.which('ros2') is None:
        pytest.skip('the ros2 command is not on PATH')
    try:
        path = Path(get_package_share_directory('viam_session')) / 'launch' / name
    except PackageNotFoundError:
        pytest.skip('viam_session is not installed in an ament prefix (AMENT_PREFIX_PATH)')
    if not path.is_file():
        pytest.skip(f'{path} is not installed')
    return path


def wait_for_log(path: Path, text: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Wait until `text` is in the log at `path` (woken by each write to it)."""
    deadline = time.monotonic() + timeout_s
    watch = FileWatch(path)
    try:
        while text not in path.read_text(errors='replace'):
            remaining = deadline - time.monotonic()
            assert process.poll() is None, f'ros2 launch exited with {process.returncode}'
            if remaining <= 0:
                raise TimeoutError(f'{text!r} not in the launch log within {timeout_s} s')
            watch.wait(min(remaining, 1.0))     # also notices an exited launch
    finally:
        watch.close()


@pytest.fixture(params=sorted(ROBOTS), ids=lambda key: key[0])
def launched(request, tmp_path) -> Iterator[Dict[str, object]]:
    """Run ros2 launch on a simulated chip in a domain of its own; stop it with SIGINT."""
    launch_file = request.param[0]
    installed_launch_file(launch_file)
    domain_id = next_domain()
    env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(domain_id)))
    chip = tmp_path / 'chip'
    log = tmp_path / 'launch.log'
    with open(log, 'w', encoding='utf-8') as output:
        process = subprocess.Popen(
            ['ros2', 'launch', 'viam_session', launch_file, 'chip_backend:=sim',
             f'chip:={chip}', 'aggregator:=false'],
            env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    failed = True
    try:
        yield {'process': process, 'log': log, 'chip': chip, 'domain_id': domain_id,
               'nodes': ROBOTS[request.param], 'launch_file': launch_file}
        failed = getattr(request.node, 'report_call', None) is None or \
            request.node.report_call.failed
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if failed:
            print(log.read_text(errors='replace'))


def test_every_driver_of_the_robot_reaches_active(launched):
    """The supervisor starts the whole tree; each driver answers get_state with active."""
    nodes = launched['nodes']
    wait_for_log(launched['log'], f'startup: {len(nodes)} node(s) active', launched['process'],
                 TIMEOUT_S)
    observer = DriverObserver(domain_id=launched['domain_id'], drivers=nodes,
                              with_commands=False)
    try:
        for name in nodes:
            assert observer.state(name, timeout_s=TIMEOUT_S) == State.PRIMARY_STATE_ACTIVE, name
    finally:
        observer.close()
    process = launched['process']
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    lines = read_line_values(launched['chip'])
    for line in PWM_LINES[launched['launch_file']]:
        assert lines[line].value == 0.0, f'line {line} left at {lines[line]}'
