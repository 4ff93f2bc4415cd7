"""Guahao: a regional unified booking platform for hospital outpatient appointments.

One importable package with four subpackages (``platform``, ``hospital_connectors``,
``search``, ``web``); a top-level ``platform`` would shadow the standard-library module.
"""

__version__ = "0.1.0"
