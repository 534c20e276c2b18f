"""The ament flake8 check, as in every ament_python package."""

from pathlib import Path

from ament_flake8.main import main_with_errors
import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CHECKED = ['viam_session', 'test', 'launch', 'bench', 'setup.py']


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    """The package's Python code follows the ament flake8 rules."""
    paths = [str(PACKAGE_ROOT / name) for name in CHECKED if (PACKAGE_ROOT / name).exists()]
    rc, errors = main_with_errors(argv=paths)
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
