"""The drboot command line: ``drboot = "bootstrap.cli:main"``.

A package of small command modules, each a thin layer over one part of drboot:
``runcmds`` (restore, drill, resume, plan), ``inspection`` (validate, schema, init,
status, report, audit), ``escrow``, ``lab`` (with ``demo``), ``waitcmd`` (wait) and
``cloudcmds`` (teardown, janitor).
``app`` holds the group, ``Deps`` and the error edge; ``output`` is the one place that prints. The
command modules import ``app`` and never this package, and are added to the group
here, so there is no import cycle and no command registers itself by side effect.
"""

from __future__ import annotations

from bootstrap.cli import cloudcmds, escrow, inspection, lab, runcmds, waitcmd
from bootstrap.cli.app import Deps, cli, main

for _module in (runcmds, inspection, escrow, lab, waitcmd, cloudcmds):
    for _command in _module.COMMANDS:
        cli.add_command(_command)

__all__ = ["Deps", "cli", "main"]
