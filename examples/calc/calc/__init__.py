"""A tiny calculator with a bug for kcode's first run."""


def add(a, b):
    return a - b


def mul(a, b):
    return a * b
