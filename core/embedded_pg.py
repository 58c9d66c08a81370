"""The zero-config database: a PostgreSQL cluster under the data directory, run by pgserver."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DATABASE = "oms"


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded server and return an owner URL for the 'oms' database.
    pgserver stops the server when the last process that asked for it exits."""
    import pgserver

    server = pgserver.get_server(Path(data_dir) / "pg")
    params = conninfo_to_dict(server.get_uri())
    with psycopg.connect(make_conninfo(**params), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    params["dbname"] = DATABASE
    return make_conninfo(**params)
