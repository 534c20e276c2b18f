"""The benchmarks' shared pieces that need no ROS: quantiles and judging a stop."""

from viam_session.chips.sim_chip import LineChange
from viam_session_harness.bench_support import judge_stop, quantile

MS = 1_000_000
WINDOW_S = 0.5
ALLOWED_S = 0.55


def _pwm(t_ms: float, duty: float) -> LineChange:
    return LineChange(t_ns=int(t_ms * MS), line=100, kind='pwm', value=duty,
                      frequency_hz=1000.0, pid=1, holder='test')


def test_quantile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert quantile(values, 0.5) == 3.0
    assert quantile(values, 0.99) == 5.0
    assert quantile(values, 0.0) == 1.0


def test_a_stop_before_the_deadline_is_in_time():
    changes = [_pwm(10, 0.5), _pwm(400, 0.0)]
    judged = judge_stop(changes, 0, ALLOWED_S, WINDOW_S, 2000 * MS)
    assert judged == {'stop_ns': 400 * MS, 'figure_ms': -100.0, 'outcome': 'stopped'}


def test_a_stop_after_the_deadline_is_powered_after_loss():
    changes = [_pwm(10, 0.5), _pwm(600, 0.0)]
    judged = judge_stop(changes, 0, ALLOWED_S, WINDOW_S, 2000 * MS)
    assert judged['outcome'] == 'powered_after_loss'
    assert judged['figure_ms'] == 100.0


def test_power_back_after_an_early_stop_counts_from_the_last_stop():
    changes = [_pwm(10, 0.5), _pwm(400, 0.0), _pwm(700, 0.5), _pwm(800, 0.0), _pwm(900, 0.0)]
    judged = judge_stop(changes, 0, ALLOWED_S, WINDOW_S, 2000 * MS)
    assert judged['stop_ns'] == 800 * MS
    assert judged['outcome'] == 'powered_after_loss'


def test_still_running_at_the_end_has_no_stop():
    judged = judge_stop([_pwm(10, 0.5), _pwm(110, 0.5)], 0, ALLOWED_S, WINDOW_S, 2000 * MS)
    assert judged == {'stop_ns': None, 'figure_ms': None, 'outcome': 'powered_after_loss'}


def test_changes_after_the_end_are_not_judged():
    changes = [_pwm(10, 0.5), _pwm(300, 0.0), _pwm(1500, 0.5)]
    judged = judge_stop(changes, 0, ALLOWED_S, WINDOW_S, 1000 * MS)
    assert judged['stop_ns'] == 300 * MS
    assert judged['outcome'] == 'stopped'
