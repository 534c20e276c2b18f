"""
Bring up a robot of two parts on this computer: a base (primary) and an arm in `/arm`.

    ros2 launch viam_session two_part_robot.launch.py [window:=2.0] [policy:=stop|shutdown]
        [automatic_stop:=true|false] [chip_backend:=sim|lgpio] [chip:=...]

`robot.launch.py` with `config/two_part_robot.yaml`: the session manager, the lifecycle
supervisor, the base's motor and the arm's board and servo. The supervisor starts the base
before the arm and stops the arm before the base. Every other argument of robot.launch.py
passes through.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description() -> LaunchDescription:
    """Include robot.launch.py with the two-part description."""
    share = get_package_share_directory('viam_session')
    return LaunchDescription([
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'robot.launch.py')),
            launch_arguments={'robot_description': os.path.join(
                share, 'config', 'two_part_robot.yaml')}.items()),
    ])
