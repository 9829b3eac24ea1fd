"""The one error hierarchy users meet: every failure a person can act on is a SealTrailError.

A command-line user, an operator reading a journal of the systemd unit, or a customs officer
running `sealtrail verify` should see one line that names the file, endpoint or value at fault and
get an exit code a script can branch on; a traceback is for bugs only (and for `--debug`). So
each package raises subclasses of these, the `sealtrail` command's last-resort handler prints
``str(exc)`` and exits with ``exc.exit_code``, and nothing else needs to know the mapping.

Exit codes (documented in README.md): 1 refused or failed at run time, 2 bad input (flag, file,
format), 3 a service (ledger node, broker, database) cannot be reached; 10-19 a record did not
verify (``ledger_client.verify``); 20-30 a credential did not verify (``customs.credentials``);
70 internal error (a bug: the one-line message says to re-run with ``--debug``).
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERNAL = 70


class SealTrailError(Exception):
    """Base of every error a user may see; ``str(exc)`` is the one line shown."""

    exit_code = EXIT_FAILED


class UsageError(SealTrailError, ValueError):
    """Bad input: a flag, a file that is missing or not of the expected kind, a bad value."""

    exit_code = EXIT_USAGE


class Unreachable(SealTrailError, OSError):
    """A service the command needs (ledger node, broker, database) cannot be reached."""

    exit_code = EXIT_UNREACHABLE
