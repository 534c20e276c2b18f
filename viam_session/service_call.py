"""Call a ROS service from a thread other than the one spinning its node, with a deadline."""

import threading
import time

from rclpy.client import Client

__all__ = ['call_service']


def call_service(client: Client, request: object, timeout_s: float) -> object:
    """
    Wait for the service, call it and return the response; TimeoutError past `timeout_s`.

    The node of `client` must be spun by an executor in another thread: this only waits.
    """
    deadline = time.monotonic() + timeout_s
    if not client.wait_for_service(timeout_sec=timeout_s):
        raise TimeoutError(f'{client.srv_name} is not available after {timeout_s} s')
    future = client.call_async(request)
    answered = threading.Event()
    future.add_done_callback(lambda _: answered.set())
    if not answered.wait(max(deadline - time.monotonic(), 0.0)) or future.result() is None:
        raise TimeoutError(f'{client.srv_name} did not answer within {timeout_s} s')
    return future.result()
