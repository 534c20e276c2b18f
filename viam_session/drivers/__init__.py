"""Lifecycle hardware drivers: outputs live only while active and go safe on every exit."""
