"""Reference data shipped with the platform: the national department catalog and demo pools.

A regular package (not a namespace directory) so that ``importlib.resources`` finds the data
files and setuptools ships them with the wheel.
"""
