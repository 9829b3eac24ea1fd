"""Fixtures shared by the customs tests: every store test runs on both engines.

``store_target`` is parametrized: an SQLite file in the test's directory, and a fresh database
on one real PostgreSQL cluster started for the session (initdb, a free loopback port; see
tests/helpers/postgres.py). A test that takes it runs twice, once per engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.postgres import Postgres, running_postgres

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    with running_postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a customs store lives: a file path, or a postgresql:// URL of an empty database."""
    if request.param == "sqlite":
        return str(tmp_path / "customs.db")
    pg: Postgres = request.getfixturevalue("pg_cluster")
    return pg.create_database(f"customs_{next(_names)}")
