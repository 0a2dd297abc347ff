"""The review benchmark's seeded queue: rows shaped like real ones, which the services serve."""

from __future__ import annotations

import random
from typing import Any

from bench.review import DESTINATION, reviewer, seed
from hub.context import Hub
from hub.review.queue import QueueFilter, list_queue
from hub.review.views import open_record
from hub.tenancy.access import Permission, region_scope


def test_seeded_records_are_listed_and_open_like_real_ones(hub: Hub, regions_ab: Any) -> None:
    seed(hub, "01", 300, random.Random(1))
    scope = region_scope(hub, reviewer("01"), "01", Permission.READ_CONTENT)
    page = list_queue(scope, QueueFilter(to_lan=DESTINATION))
    assert page.items and all(i.to_lan == DESTINATION for i in page.items)
    assert len(list_queue(scope).items) == 50
    item = page.items[0]
    opened = open_record(scope, item.id)
    assert opened.masked_pnr == item.masked_pnr
    assert opened.information.subject_of_care.person_id.extension == opened.personnummer
    assert opened.intake.original_name.startswith("extract-")
