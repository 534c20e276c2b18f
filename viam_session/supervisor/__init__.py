"""Lifecycle supervisor: the robot's parts tree (ROS-free) and, around it, the supervisor node."""

from viam_session.supervisor.tree import (
    DRIVER_TYPES, DriverType, load_robot_description, ManagedNode, parse_robot_description, Part,
    PartsTree, Respawn, RobotDescriptionError, ShutdownStep)

__all__ = ['DRIVER_TYPES', 'DriverType', 'ManagedNode', 'Part', 'PartsTree', 'Respawn',
           'RobotDescriptionError', 'ShutdownStep', 'load_robot_description',
           'parse_robot_description']
