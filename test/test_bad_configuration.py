"""Executables refuse bad parameters with a clear message and exit code 2, touching nothing."""

from pathlib import Path
import subprocess
import sys

import pytest

from viam_session_harness.sim_robot import local_ros_environment

EXAMPLE = Path(__file__).resolve().parents[1] / 'config' / 'robot_example.yaml'


@pytest.mark.parametrize('module, ros_args, expected', [
    ('viam_session.drivers.dc_motor', ['-p', 'max_duty:=5.0'], 'max_duty out of range'),
    ('viam_session.drivers.dc_motor', ['-p', 'chip_backend:=gpiod'], 'chip_backend'),
    ('viam_session.drivers.dc_motor', ['-p', 'mode:=three_pwm'], "'mode' must be one of"),
    ('viam_session.drivers.dc_motor', ['-p', 'command_timeout_s:=-1.0'],
     'command_timeout_s out of range'),
    ('viam_session.drivers.servo', ['-p', 'min_pulse_us:=100.0'], 'min_pulse_us out of range'),
    ('viam_session.drivers.servo', ['-p', 'command_timeout_s:=61.0'],
     'command_timeout_s out of range'),
    ('viam_session.drivers.gpio_output', ['-p', 'active_level:=2'], 'active_level out of range'),
    ('viam_session.drivers.digital_input', ['-p', 'line:=-1'], 'line out of range'),
    ('viam_session.drivers.encoder', ['-p', 'publish_rate_hz:=0.0'],
     'publish_rate_hz out of range'),
    ('viam_session.sessions.manager_node', ['-p', "actuators:=['motor']"],
     'fully qualified node names'),
    ('viam_session.sessions.manager_node',
     ['-p', 'min_window_s:=5.0', '-p', 'default_window_s:=1.0'], 'window bounds'),
    ('viam_session.supervisor.supervisor_node',
     ['-p', f'robot_description:={EXAMPLE}',
      '-p', 'connectivity_loss_policy:=reboot'], "'connectivity_loss_policy' must be one of"),
    ('viam_session.supervisor.supervisor_node',
     ['-p', f'robot_description:={EXAMPLE}',
      '-p', 'connectivity_loss_policy:=shutdown'], 'needs session_manager'),
])
def test_bad_parameter_is_refused(tmp_path, module, ros_args, expected):
    """A node given a bad parameter exits 2 saying which, before claiming any line."""
    result = subprocess.run(
        [sys.executable, '-m', module, '--ros-args', '-p', f'chip:={tmp_path / "chip"}',
         *ros_args], env=local_ros_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert 'bad configuration' in result.stderr and expected in result.stderr
    assert not (tmp_path / 'chip').exists()


def test_supervisor_refuses_a_parameter_of_the_wrong_type_before_spawning(tmp_path):
    """spawn_nodes: a dc_motor given pwm_frequency_hz 'fast' starts nothing, naming the entry."""
    description = tmp_path / 'robot.yaml'
    description.write_text(
        'robot:\n  name: r\n  primary:\n    name: base\n    nodes:\n'
        '      - name: left_motor\n        driver: dc_motor\n'
        f'        parameters: {{chip: {tmp_path / "chip"}, pwm_line: 12, direction_line: 16,'
        ' pwm_frequency_hz: fast}\n', encoding='utf-8')
    result = subprocess.run(
        [sys.executable, '-m', 'viam_session.supervisor.supervisor_node', '--ros-args',
         '-p', f'robot_description:={description}', '-p', 'spawn_nodes:=true'],
        env=local_ros_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert ('robot.primary.nodes[0] (left_motor): parameter pwm_frequency_hz of driver '
            "'dc_motor' must be a double, got 'fast' (a string)") in result.stderr
    assert not (tmp_path / 'chip').exists()
