"""The ament pep257 check, as in every ament_python package."""

from pathlib import Path

from ament_pep257.main import main
import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CHECKED = ['viam_session', 'viam_session_harness', 'test', 'launch', 'bench', 'scripts',
           'setup.py']


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    """The package's docstrings follow the ament pep257 rules."""
    paths = [str(PACKAGE_ROOT / name) for name in CHECKED if (PACKAGE_ROOT / name).exists()]
    rc = main(argv=paths)
    assert rc == 0, 'Found code style errors / warnings'
