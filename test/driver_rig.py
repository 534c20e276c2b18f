"""Driver processes on a simulated chip, watched by an observer, with a domain of their own."""

import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import pytest

from rclpy.qos import QoSProfile

from viam_session.chips.sim_chip import LineChange, wait_for_line_change
from viam_session_harness.sim_drivers import DriverObserver, DriverProcess
from viam_session_harness.sim_robot import local_ros_environment

__all__ = ['DriverRig', 'driver_rig']


class DriverRig:
    """Start driver processes and one observer; close everything, showing logs on failure."""

    def __init__(self, workdir: Path, domain_id: int) -> None:
        self.workdir = workdir
        self.chip_dir = workdir / 'chip'
        self.chip_dir.mkdir(parents=True, exist_ok=True)
        self.env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(domain_id)))
        self.domain_id = domain_id
        self.processes: Dict[str, DriverProcess] = {}
        self.observer: Optional[DriverObserver] = None

    def start(self, drivers: Mapping[str, Tuple[str, Mapping[str, Any]]], *,
              command_qos: Optional[QoSProfile] = None, with_commands: bool = True,
              commands: Optional[Mapping[str, Sequence[str]]] = None) -> DriverObserver:
        """
        Start `drivers` ({name: (kind, parameters)}) and the observer; return it.

        `commands` replaces a driver's program (see DriverProcess); `command_qos` and
        `with_commands` are the observer's.
        """
        for name, (kind, parameters) in drivers.items():
            self.spawn(name, kind, parameters, command=(commands or {}).get(name))
        self.observer = DriverObserver(
            domain_id=self.domain_id, command_qos=command_qos, with_commands=with_commands,
            drivers={name: kind for name, (kind, _) in drivers.items()})
        return self.observer

    def spawn(self, name: str, kind: str, parameters: Mapping[str, Any], *,
              command: Optional[Sequence[str]] = None) -> DriverProcess:
        """Start one more driver process (the observer must already know its name)."""
        process = DriverProcess(kind=kind, name=name, chip_dir=self.chip_dir, env=self.env,
                                log_path=self.workdir / f'{name}_{len(self.processes)}.log',
                                parameters=parameters, command=command)
        self.processes[name] = process
        return process

    def wait_for_line(self, line: int, kind: str, value: float, *, after_ns: int = 0,
                      timeout_s: float = 30.0) -> LineChange:
        """Wait for a `kind` change of `line` to `value` recorded after `after_ns`."""
        return wait_for_line_change(
            self.chip_dir, lambda c: c.line == line and c.kind == kind and math.isclose(
                c.value, value, abs_tol=1e-9), after_ns=after_ns, timeout_s=timeout_s)

    def close(self, failed: bool) -> None:
        for process in self.processes.values():
            process.close()
        if self.observer is not None:
            self.observer.close()
        if failed:
            for log in sorted(self.workdir.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text(errors="replace")}')


def driver_rig(request: pytest.FixtureRequest, tmp_path: Path,
               domain_id: int) -> Iterator[DriverRig]:
    """Yield a rig for one test; print every log if the test failed."""
    rig = DriverRig(tmp_path, domain_id)
    failed = True
    try:
        yield rig
        report = getattr(request.node, 'report_call', None)
        failed = report is None or report.failed
    finally:
        rig.close(failed)
