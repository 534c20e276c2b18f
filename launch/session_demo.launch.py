"""
Bring up a one-motor robot: the session manager and a DC motor driver, the motor activated.

    ros2 launch viam_session session_demo.launch.py [window:=2.0] [automatic_stop:=false]
        [chip_backend:=lgpio chip:=0]

The motor is configured, then activated once; when a session expires the manager deactivates
it, and the next command of a live session reactivates it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition


def generate_launch_description() -> LaunchDescription:
    """Describe the session manager, the motor driver and the motor's configure/activate."""
    parameters = os.path.join(
        get_package_share_directory('viam_session'), 'config', 'session_demo.yaml')
    window = LaunchConfiguration('window')
    chip_backend = LaunchConfiguration('chip_backend')
    chip = LaunchConfiguration('chip')

    manager = Node(
        package='viam_session', executable='session_manager', name='session_manager',
        output='screen', parameters=[parameters, {
            'default_window_s': window,
            'automatic_stop': LaunchConfiguration('automatic_stop')}])
    motor = LifecycleNode(
        package='viam_session', executable='dc_motor_driver', name='motor', namespace='',
        output='screen',
        parameters=[parameters, {'chip_backend': chip_backend, 'chip': chip}])
    configure_motor = EmitEvent(event=ChangeState(
        lifecycle_node_matcher=matches_action(motor),
        transition_id=Transition.TRANSITION_CONFIGURE))
    # Only after configuring: an `inactive` reached by deactivation (a session expired) must
    # stay stopped until a live session commands the motor again.
    activate_once_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=motor, start_state='configuring', goal_state='inactive',
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(motor),
            transition_id=Transition.TRANSITION_ACTIVATE))]))

    return LaunchDescription([
        DeclareLaunchArgument('window', default_value='2.0',
                              description='default heartbeat window of a session, seconds'),
        DeclareLaunchArgument('automatic_stop', default_value='true',
                              description='false opts out: sessions stop nothing by themselves'),
        DeclareLaunchArgument('chip_backend', default_value='sim',
                              description="GPIO backend: 'sim' or 'lgpio'"),
        DeclareLaunchArgument('chip', default_value='/tmp/viam_session_sim_chip',
                              description='sim: chip directory; lgpio: gpiochip number'),
        activate_once_configured,
        manager,
        motor,
        configure_motor,
    ])
