"""The service-window console (窗口工作台): a staff web page served by the gateway at ``/console/``.

Importing this package registers its routes in :data:`gateway.app.FEATURES`.
"""

from __future__ import annotations

from ..app import FEATURES
from .routes import AUDIT_SEARCH, CONSOLE, ConsoleState, setup

if setup not in FEATURES:
    FEATURES.append(setup)

__all__ = ["AUDIT_SEARCH", "CONSOLE", "ConsoleState", "setup"]
