"""Lifecycle hardware drivers: outputs live only while active and go safe on every exit."""

__all__ = ['DRIVER_MODULES']

# Driver type (as in a robot description) -> the module that runs it (`python -m`): every
# type but 'external', which someone else starts.
DRIVER_MODULES = {
    'board': 'viam_session.drivers.board',
    'dc_motor': 'viam_session.drivers.dc_motor',
    'digital_input': 'viam_session.drivers.digital_input',
    'encoder': 'viam_session.drivers.encoder',
    'gpio_output': 'viam_session.drivers.gpio_output',
    'servo': 'viam_session.drivers.servo',
    'session_gate': 'viam_session.gate.gate_node',
}
