"""Fixtures of the training tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def medcolor_log(caplog):
    """Records of the ``medcolor`` logger, each once (whether or not it propagates to the root logger)."""
    logger = logging.getLogger("medcolor")
    saved = (logger.level, logger.propagate)
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.level, logger.propagate = saved
