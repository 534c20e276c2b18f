"""ament_python package definition of viam_session."""

from glob import glob

from setuptools import find_packages, setup

package_name = 'viam_session'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config',
         glob('config/*.yaml') + glob('config/*.perspective')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='viam_session maintainers',
    maintainer_email='maintainers@viam-session.dev',
    description='Session safety for ROS 2 robots: expired client sessions power off actuators.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'session_manager = viam_session.sessions.manager_node:main',
            'board_driver = viam_session.drivers.board:main',
            'dc_motor_driver = viam_session.drivers.dc_motor:main',
            'digital_input_driver = viam_session.drivers.digital_input:main',
            'encoder_driver = viam_session.drivers.encoder:main',
            'gpio_output_driver = viam_session.drivers.gpio_output:main',
            'servo_driver = viam_session.drivers.servo:main',
            'session_gate = viam_session.gate.gate_node:main',
            'lifecycle_supervisor = viam_session.supervisor.supervisor_node:main',
            'session_client = viam_session.client.cli:main',
            'viam-session = viam_session.client.operator_cli:main',
            'demo = viam_session.demo:main',
        ],
    },
)
