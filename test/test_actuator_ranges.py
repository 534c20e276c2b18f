"""Reading a driver's command range with real rclpy: a request left unanswered is sent again."""

import threading

from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.task import Future

from viam_session.sessions.actuator_ranges import ActuatorRanges
from viam_session_harness.waiting import poll_until

from conftest import next_domain  # noqa: I100 - the tests' own helper

DEADLINE_S = 30.0


class DriverStandIn:
    """A `get_parameters` service that never answers its first request, then answers [-1, 1]."""

    def __init__(self, context: Context) -> None:
        """Serve /standin/get_parameters; the first request waits forever."""
        self.node = Node('standin', context=context, start_parameter_services=False)
        self.requests = 0
        self._never = Future()
        self.node.create_service(GetParameters, '/standin/get_parameters', self._answer,
                                 callback_group=ReentrantCallbackGroup())

    async def _answer(self, request: GetParameters.Request,
                      response: GetParameters.Response) -> GetParameters.Response:
        self.requests += 1
        if self.requests == 1:
            await self._never  # as a reply the server dropped: the asker never hears of it
        response.values = [ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
                           for v in (-1.0, 1.0)]
        return response


def test_a_request_left_unanswered_is_sent_again_within_the_timeout():
    """The first request is lost; the range is still known well within the 20 s timeout."""
    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    executor = SingleThreadedExecutor(context=context)
    standin = DriverStandIn(context)
    asker = Node('asker', context=context, start_parameter_services=False)
    executor.add_node(standin.node)
    executor.add_node(asker)
    ranges = ActuatorRanges(asker, {}, ['/standin'], ReentrantCallbackGroup(), timeout_s=20.0)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        asked = []
        executor.create_task(lambda: ranges.when_known('/standin', asked.append))
        poll_until(lambda: asked, timeout_s=DEADLINE_S, what='an answer about the range')
        assert asked == [''], f'the range is not known: {asked}'
        assert ranges.get('/standin').describe() == '[-1, 1]'
        assert standin.requests == 2
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
        asker.destroy_node()
        standin.node.destroy_node()
        rclpy.shutdown(context=context)
