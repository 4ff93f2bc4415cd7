"""Authlib's OAuth 2 client on httpx, imported without its notice about httpx2.

Authlib 1.9.10 moved its httpx integration onto the ``httpx2`` package and, where only httpx is
installed, warns at import: two lines on standard error at every process start (each CLI
command, each server and worker). The project is built on httpx (pyproject), on which the
integration still works, so the notice told operators nothing they could act on. It is silenced
for this one import and this one message; Authlib's other notices still show.
"""

from __future__ import annotations

import warnings

import authlib.deprecate  # noqa: F401  (its own filter, "always" for its notices, set first)

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="The httpx module is deprecated", category=DeprecationWarning
    )
    from authlib.integrations.httpx_client import AsyncOAuth2Client

__all__ = ["AsyncOAuth2Client"]
