"""hub.db: reads that survive a connection lost midway."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from hub.context import Hub
from hub.db import read_once_more_if_lost
from tests.conftest import sessions_ended_midway

MARK = "/* marked */"


def _marked_read(connection: Connection) -> int:
    return int(connection.execute(text(f"SELECT {MARK} 41 + 1")).scalar_one())


def test_a_read_whose_connection_is_lost_midway_runs_once_more(
    hub: Hub, settings: Any, postgresql_only: None
) -> None:
    with sessions_ended_midway(hub.db.hub.engine, settings.database_url, MARK) as ended:
        assert read_once_more_if_lost(hub.db.hub, _marked_read) == 42
    assert len(ended) == 1


def test_a_second_loss_or_any_other_error_is_raised(
    hub: Hub, settings: Any, postgresql_only: None
) -> None:
    with sessions_ended_midway(hub.db.hub.engine, settings.database_url, MARK, times=2) as ended:
        with pytest.raises(OperationalError):
            read_once_more_if_lost(hub.db.hub, _marked_read)
    assert len(ended) == 2  # once more, and no more
    calls: list[int] = []

    def broken(connection: Connection) -> None:
        calls.append(1)
        connection.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(ProgrammingError):
        read_once_more_if_lost(hub.db.hub, broken)
    assert calls == [1]  # not about the connection: not tried again
