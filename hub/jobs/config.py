"""Settings of the job runner, from ``AGENTHUB_WORKER_*`` / ``AGENTHUB_RETENTION_*`` variables.

Read with the same typed helpers as :mod:`hub.config`, so a bad value stops the worker at start
with a message naming the variable.

=====================================  =========  ============================================
Variable                               Default    Meaning
=====================================  =========  ============================================
AGENTHUB_WORKER_DELIVER_MS             2000       how often received messages are delivered
AGENTHUB_WORKER_PICKUP_SECONDS         15         how often ``extracts/`` is looked at
AGENTHUB_WORKER_CHECK_SECONDS          60         how often every drop is probed for status
AGENTHUB_WORKER_PURGE_SECONDS          3600       how often the retention job runs
AGENTHUB_WORKER_BATCH                  200        messages claimed per transaction
AGENTHUB_WORKER_LANES                  4          drop connections per region and run
AGENTHUB_WORKER_LEASE_SECONDS          300        how long a claim lasts if its worker dies
AGENTHUB_WORKER_RUN_BUDGET_SECONDS     60         time one region may take per run
AGENTHUB_WORKER_BACKOFF_BASE_SECONDS   5          first wait after a drop failed
AGENTHUB_WORKER_BACKOFF_CAP_SECONDS    900        longest wait (also: after a permanent error)
AGENTHUB_WORKER_MAX_ATTEMPTS           10         attempts before one message is marked failed
AGENTHUB_RETENTION_BODY_DAYS           90         empty delivered bodies after this; 0 = never
=====================================  =========  ============================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from hub.config import env_int
from hub.drops.state import Backoff


@dataclass(frozen=True)
class JobSettings:
    """How often jobs run and how hard they retry. Build with :func:`load_job_settings`."""

    deliver_every_ms: int = 2000
    pickup_every_s: int = 15
    check_every_s: int = 60
    purge_every_s: int = 3600
    batch_size: int = 200
    lanes: int = 4
    lease_s: int = 300
    run_budget_s: int = 60
    backoff_base_s: int = Backoff.base_s
    backoff_cap_s: int = Backoff.cap_s
    max_attempts: int = 10
    body_retention_days: int = 90

    @property
    def lease(self) -> timedelta:
        """How long a claim holds."""
        return timedelta(seconds=self.lease_s)

    @property
    def backoff(self) -> Backoff:
        """How long a failing drop is left alone."""
        return Backoff(self.backoff_base_s, self.backoff_cap_s)

    def with_overrides(self, **changes: Any) -> JobSettings:
        """A copy with some fields replaced (tests)."""
        return replace(self, **changes)


def load_job_settings(env: Mapping[str, str] | None = None) -> JobSettings:
    """Read and check the job runner's settings."""
    env = os.environ if env is None else env
    d = JobSettings()
    base = env_int(env, "AGENTHUB_WORKER_BACKOFF_BASE_SECONDS", d.backoff_base_s, minimum=1)
    cap = env_int(env, "AGENTHUB_WORKER_BACKOFF_CAP_SECONDS", d.backoff_cap_s, minimum=1)
    return JobSettings(
        deliver_every_ms=env_int(env, "AGENTHUB_WORKER_DELIVER_MS", d.deliver_every_ms, minimum=50),
        pickup_every_s=env_int(env, "AGENTHUB_WORKER_PICKUP_SECONDS", d.pickup_every_s, minimum=1),
        check_every_s=env_int(env, "AGENTHUB_WORKER_CHECK_SECONDS", d.check_every_s, minimum=1),
        purge_every_s=env_int(env, "AGENTHUB_WORKER_PURGE_SECONDS", d.purge_every_s, minimum=1),
        batch_size=env_int(env, "AGENTHUB_WORKER_BATCH", d.batch_size, minimum=1),
        lanes=env_int(env, "AGENTHUB_WORKER_LANES", d.lanes, minimum=1),
        lease_s=env_int(env, "AGENTHUB_WORKER_LEASE_SECONDS", d.lease_s, minimum=1),
        run_budget_s=env_int(env, "AGENTHUB_WORKER_RUN_BUDGET_SECONDS", d.run_budget_s, minimum=1),
        backoff_base_s=base,
        backoff_cap_s=max(cap, base),
        max_attempts=env_int(env, "AGENTHUB_WORKER_MAX_ATTEMPTS", d.max_attempts, minimum=1),
        body_retention_days=env_int(
            env, "AGENTHUB_RETENTION_BODY_DAYS", d.body_retention_days, minimum=0
        ),
    )
