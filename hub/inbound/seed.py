"""Synthetic stored messages in bulk, for the benchmark, the crash tests and demos.

Each row is what the producer would have stored for a valid call (same envelope, same sealing,
same content hash), but inserted in bulk without the HTTP and validation round trip, so tens of
thousands can be made in seconds. Personnummer come from :func:`hub.contract.personnummer.generate`
(Skatteverket's test series): never a real person's.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import insert, select

from hub.clock import utcnow
from hub.context import Hub
from hub.contract.canonical import canonical_bytes
from hub.contract.personnummer import generate
from hub.contract.samples import Scenario, sample_information
from hub.contract.serialise import build_request_envelope
from hub.db.region_tables import messages
from hub.delivery.files import information_element
from hub.inbound.store import CallMeta, message_row

SCENARIOS: tuple[Scenario, ...] = ("move", "sample", "treatment", "no_information")


def seed_messages(
    hub: Hub,
    lan_code: str,
    count: int,
    *,
    rng: random.Random | None = None,
    sending_lan: str = "05",
    chunk: int = 1000,
) -> list[str]:
    """Store ``count`` synthetic pending messages for a region; return their ids, oldest first."""
    # Seeded from the OS by default, so two calls for one region do not repeat their numbers.
    rng = rng or random.Random()  # noqa: S311 - synthetic test data, not secrets
    with hub.db.hub.connect() as connection:
        cipher = hub.keys.cipher(connection, lan_code)
    today = date.today()
    start = utcnow() - timedelta(seconds=count)
    engine = hub.db.region(lan_code)
    # The test series is small: a number the region already holds would repeat a content hash.
    with engine.connect() as connection:
        taken = set(connection.execute(select(messages.c.pnr_hash)).scalars())
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    for index in range(count):
        pnr = generate(rng)
        while cipher.keyed_hash(pnr) in taken:
            pnr = generate(rng)
        taken.add(cipher.keyed_hash(pnr))
        scenario = SCENARIOS[index % len(SCENARIOS)]
        info = sample_information(scenario, pnr=pnr, sending_lan=sending_lan, today=today)
        body = build_request_envelope(lan_code, info)
        message_id = str(uuid.uuid4())
        rows.append(
            message_row(
                cipher,
                info,
                canonical_bytes(information_element(body)),
                body,
                message_id=message_id,
                received_at=start + timedelta(seconds=index),
                logical_address=lan_code,
                meta=CallMeta("SE2321000040-SEED", None, f"seed-{index}"),
                result_code="OK",
                result_text=None,
            )
        )
        ids.append(message_id)
        if len(rows) >= chunk:
            with engine.begin() as connection:
                connection.execute(insert(messages), rows)
            rows = []
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(messages), rows)
    return ids
