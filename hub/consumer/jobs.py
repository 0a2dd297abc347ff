"""Jobs of the consumer side, registered into the worker's scheduler.

``outbox.send`` ticks the :class:`~hub.consumer.sender.Dispatcher` every poll interval: a tick
only makes sure the dispatcher's coordinator thread runs (and restarts it if it died), so it is
cheap and never holds a scheduler thread. ``outbox.receipts`` writes owed receipts to the
regions' drops.
"""

from __future__ import annotations

from typing import Any

from hub.consumer.receipts import write_receipts
from hub.consumer.sender import Dispatcher
from hub.consumer.settings import ConsumerSettings, load_consumer_settings
from hub.context import Hub


def register_jobs(scheduler: Any, hub: Hub, settings: ConsumerSettings | None = None) -> Dispatcher:
    """Add the consumer's jobs (senders, receipts) to ``scheduler``; return the dispatcher.

    The dispatcher's threads are stopped when the scheduler shuts down.
    """
    from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN

    settings = settings or load_consumer_settings(environment=hub.settings.env)
    dispatcher = Dispatcher(hub, settings)
    common = {"max_instances": 1, "coalesce": True, "replace_existing": True}
    scheduler.add_job(
        dispatcher.tick,
        "interval",
        seconds=settings.poll_interval_s,
        id="outbox.send",
        name="send due outbox records through NTjP",
        **common,
    )
    scheduler.add_job(
        write_receipts,
        "interval",
        args=[hub],
        seconds=max(2 * settings.poll_interval_s, 1.0),
        id="outbox.receipts",
        name="write receipts of final outbox records",
        **common,
    )

    def _closed(_event: Any) -> None:
        dispatcher.close()

    scheduler.add_listener(_closed, EVENT_SCHEDULER_SHUTDOWN)
    return dispatcher
