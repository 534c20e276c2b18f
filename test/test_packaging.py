"""What a robot installs: the runtime package only, never the harness of tests and benchmarks."""

import ast
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def _setup_keyword(name: str) -> ast.expr:
    tree = ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'setup':
            for keyword in node.keywords:
                if keyword.arg == name:
                    return keyword.value
    raise AssertionError(f'setup.py calls setup() without {name}=')


def test_setup_installs_viam_session_and_not_the_harness():
    """The packages setup.py finds are viam_session and its subpackages, nothing else."""
    call = _setup_keyword('packages')
    exclude = ast.literal_eval(next(k.value for k in call.keywords if k.arg == 'exclude'))
    packages = find_packages(where=str(ROOT), exclude=exclude)
    assert packages and all(p == 'viam_session' or p.startswith('viam_session.')
                            for p in packages), packages


def test_runtime_code_imports_nothing_of_the_harness():
    """No installed module needs viam_session_harness (it is not on a robot)."""
    offenders = []
    for path in sorted((ROOT / 'viam_session').rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            names = [node.module or ''] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f'{path.relative_to(ROOT)}: {name}' for name in names
                          if name.split('.')[0] == 'viam_session_harness']
    assert not offenders, offenders
