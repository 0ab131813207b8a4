"""Discrete-event simulation of many protocol instances on virtual time."""
