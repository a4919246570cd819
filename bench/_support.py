"""Helpers the benchmark scripts share: a scratch PostgreSQL database, stopping a server."""

from __future__ import annotations

import signal
import subprocess


def recreate_database(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    """Drop NAME (closing its connections) and, unless drop_only, create it empty."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited after timeout seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
