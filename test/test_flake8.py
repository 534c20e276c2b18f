"""The ament flake8 check, as in every ament_python package."""

from pathlib import Path
import subprocess
import sys

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CHECKED = ['viam_session', 'viam_session_harness', 'test', 'launch', 'bench', 'scripts',
           'setup.py']
# flake8 forks worker processes; forked from this process, which earlier tests left with DDS
# threads and rclpy objects, a worker can crash while collecting them and the pool then hangs.
# A fresh interpreter has neither.
RUN_AMENT_FLAKE8 = 'import sys; from ament_flake8.main import main; sys.exit(main(sys.argv[1:]))'


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    """The package's Python code follows the ament flake8 rules."""
    paths = [str(PACKAGE_ROOT / name) for name in CHECKED if (PACKAGE_ROOT / name).exists()]
    result = subprocess.run([sys.executable, '-c', RUN_AMENT_FLAKE8, *paths],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'ament_flake8 found problems:\n{result.stdout}{result.stderr}'
