"""Settings of the consumer side: where NTjP is, the agent's certificate, the resend policy.

Read from ``AGENTHUB_*`` environment variables with the typed helpers of :mod:`hub.config`, so a
bad value fails at start with a message naming the variable. Every policy value can be overridden
for one destination län code with ``AGENTHUB_DEST_<län>_<NAME>`` (e.g.
``AGENTHUB_DEST_01_MAX_ATTEMPTS=3``): one producer may be slower or flakier than the others, and
rule #22 asks for the timeout and attempts to be configurable per target producer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from hub.config import ConfigError, env_int, env_str
from hub.contract.hsaid import is_hsa_id
from hub.contract.names import ENDPOINT_PATH
from hub.contract.regions import REGIONS

#: The simulator's default port (``agenthub ntjp-sim``); the dev default NTjP URL points at it.
SIM_DEFAULT_PORT: Final = 8081
DEFAULT_NTJP_URL: Final = f"http://127.0.0.1:{SIM_DEFAULT_PORT}{ENDPOINT_PATH}"
#: A synthetic HSA-id for the agent on a developer's machine; production sets its own.
DEV_AGENT_HSAID: Final = "SE0000000000-AGENTHUB"
#: The header the simulator reads the caller's HSA-id from when there is no client certificate.
DEV_CONSUMER_HEADER: Final = "x-sim-consumer-hsaid"


@dataclass(frozen=True)
class DestinationPolicy:
    """How one destination (a target producer, i.e. a län code) is called (RIVTA rule #22)."""

    #: Calls per second at most; 0 switches the cap off. Default: the contract's SLA, 10/s.
    rate_per_s: float = 10.0
    #: Calls in flight at once, so a slow producer does not pull the rate below the cap.
    concurrency: int = 4
    #: Attempts in all (the first call included) before a record is marked failed.
    max_attempts: int = 5
    #: Pause before the second attempt; each further pause is ``backoff`` times longer.
    pause_ms: int = 5000
    backoff: float = 2.0
    #: Upper bound of one pause, so a long outage does not push the next try days away.
    max_pause_ms: int = 15 * 60 * 1000
    #: Read timeout of one call. Longer than the platform's own 29 s producer timeout by default,
    #: so a slow producer shows up as the platform's VP009 rather than as our own guess.
    timeout_ms: int = 35_000
    connect_timeout_ms: int = 5_000

    @property
    def deadline_s(self) -> float:
        """The hard deadline of one call: connect + read timeout, for the whole exchange.

        The timeouts bound each wait on the socket; this bounds the call, however slowly a
        destination trickles its answer. A claim's lease is always longer (hub.outbound.sender).
        """
        return (self.connect_timeout_ms + self.timeout_ms) / 1000

    def pause_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, …): pause × backoff^(attempt − 2), capped."""
        if attempt <= 1:
            return 0.0
        pause = self.pause_ms * self.backoff ** (attempt - 2)
        return min(pause, self.max_pause_ms) / 1000.0

    def check(self, where: str) -> None:
        """Refuse values that cannot work; ``where`` names the setting in the message."""
        if self.rate_per_s < 0:
            raise ConfigError(f"{where}RATE must be >= 0 (0 = no cap)")
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ConfigError(f"{where}CONCURRENCY and {where}MAX_ATTEMPTS must be >= 1")
        if self.backoff < 1:
            raise ConfigError(f"{where}BACKOFF must be >= 1 (exponential backoff)")
        if self.timeout_ms < 1 or self.connect_timeout_ms < 1:
            raise ConfigError(f"{where}TIMEOUT_MS must be >= 1")


@dataclass(frozen=True)
class ConsumerSettings:
    """What the senders need besides the hub. Build with :func:`load_consumer_settings`."""

    #: The platform's endpoint for this contract (the simulator on loopback in dev).
    ntjp_url: str = DEFAULT_NTJP_URL
    #: The agent's client certificate and key (PEM files) for mutual TLS towards NTjP.
    client_cert: Path | None = None
    client_key: Path | None = None
    #: The platform's CA bundle; None = the system's trust store.
    ca_bundle: Path | None = None
    #: The agent's HSA-id; in dev (no certificate) sent in :data:`DEV_CONSUMER_HEADER`.
    agent_hsaid: str = DEV_AGENT_HSAID
    #: Send the agent's HSA-id in a plain header (the simulator's dev shortcut): dev/test only.
    dev_identity_header: str | None = DEV_CONSUMER_HEADER
    default_policy: DestinationPolicy = field(default_factory=DestinationPolicy)
    policies: Mapping[str, DestinationPolicy] = field(default_factory=dict)
    #: Records claimed per destination at once when uncapped (capped: one second's worth).
    claim_batch: int = 100
    #: How often the worker looks for due records when idle.
    poll_interval_s: float = 1.0

    def policy(self, to_lan: str) -> DestinationPolicy:
        """The policy of one destination: its override, else the default."""
        return self.policies.get(to_lan, self.default_policy)

    def with_policy(self, **changes: Any) -> ConsumerSettings:
        """A copy with the default policy (and every override) changed: tests and benchmarks."""
        return replace(
            self,
            default_policy=replace(self.default_policy, **changes),
            policies={k: replace(v, **changes) for k, v in self.policies.items()},
        )


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env_str(env, name, "")
    if value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env_str(env, name, "")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}: {path} is not a readable file")
    return path


def _policy(env: Mapping[str, str], prefix: str, base: DestinationPolicy) -> DestinationPolicy:
    policy = DestinationPolicy(
        rate_per_s=_env_float(env, f"{prefix}RATE", base.rate_per_s),
        concurrency=env_int(env, f"{prefix}CONCURRENCY", base.concurrency, minimum=1),
        max_attempts=env_int(env, f"{prefix}MAX_ATTEMPTS", base.max_attempts, minimum=1),
        pause_ms=env_int(env, f"{prefix}PAUSE_MS", base.pause_ms, minimum=0),
        backoff=_env_float(env, f"{prefix}BACKOFF", base.backoff),
        max_pause_ms=env_int(env, f"{prefix}MAX_PAUSE_MS", base.max_pause_ms, minimum=0),
        timeout_ms=env_int(env, f"{prefix}TIMEOUT_MS", base.timeout_ms, minimum=1),
        connect_timeout_ms=env_int(
            env, f"{prefix}CONNECT_TIMEOUT_MS", base.connect_timeout_ms, minimum=1
        ),
    )
    policy.check(prefix)
    return policy


def load_consumer_settings(
    env: Mapping[str, str] | None = None, *, environment: str | None = None
) -> ConsumerSettings:
    """Read the consumer's settings; raise :class:`ConfigError` naming the first bad variable.

    Policy variables: ``AGENTHUB_SEND_RATE``, ``AGENTHUB_SEND_CONCURRENCY``,
    ``AGENTHUB_SEND_MAX_ATTEMPTS``, ``AGENTHUB_SEND_PAUSE_MS``, ``AGENTHUB_SEND_BACKOFF``,
    ``AGENTHUB_SEND_MAX_PAUSE_MS``, ``AGENTHUB_SEND_TIMEOUT_MS``,
    ``AGENTHUB_SEND_CONNECT_TIMEOUT_MS``; per destination ``AGENTHUB_DEST_<län>_<same suffix>``.
    """
    env = os.environ if env is None else env
    environment = environment or env_str(env, "AGENTHUB_ENV", "dev").lower()
    is_dev = environment in ("dev", "test")
    default = _policy(env, "AGENTHUB_SEND_", DestinationPolicy())
    policies: dict[str, DestinationPolicy] = {}
    for lan in REGIONS:
        prefix = f"AGENTHUB_DEST_{lan}_"
        if any(key.startswith(prefix) for key in env):
            policies[lan] = _policy(env, prefix, default)
    unknown = sorted(
        key
        for key in env
        if key.startswith("AGENTHUB_DEST_") and key[len("AGENTHUB_DEST_") :][:2] not in REGIONS
    )
    if unknown:
        raise ConfigError(f"{unknown[0]}: AGENTHUB_DEST_ must be followed by a län code")
    ntjp_url = env_str(env, "AGENTHUB_NTJP_URL", DEFAULT_NTJP_URL)
    if not ntjp_url.startswith(("http://", "https://")):
        raise ConfigError(f"AGENTHUB_NTJP_URL must be an http(s) URL, got {ntjp_url!r}")
    cert = _env_path(env, "AGENTHUB_NTJP_CLIENT_CERT")
    key = _env_path(env, "AGENTHUB_NTJP_CLIENT_KEY")
    if (cert is None) != (key is None):
        raise ConfigError("AGENTHUB_NTJP_CLIENT_CERT and AGENTHUB_NTJP_CLIENT_KEY go together")
    if not is_dev and (cert is None or not ntjp_url.startswith("https://")):
        # Outside a developer's machine the platform only accepts mutual TLS.
        raise ConfigError(
            "outside dev/test AGENTHUB_NTJP_URL must be https:// and AGENTHUB_NTJP_CLIENT_CERT/"
            "AGENTHUB_NTJP_CLIENT_KEY must name the agent's certificate and key"
        )
    agent_hsaid = env_str(env, "AGENTHUB_AGENT_HSAID", DEV_AGENT_HSAID)
    if not is_hsa_id(agent_hsaid):
        raise ConfigError(f"AGENTHUB_AGENT_HSAID {agent_hsaid!r} is not an HSA-id")
    return ConsumerSettings(
        ntjp_url=ntjp_url,
        client_cert=cert,
        client_key=key,
        ca_bundle=_env_path(env, "AGENTHUB_NTJP_CA_BUNDLE"),
        agent_hsaid=agent_hsaid,
        # The plain-header identity is a simulator shortcut; never offered to a real platform.
        dev_identity_header=DEV_CONSUMER_HEADER if is_dev and cert is None else None,
        default_policy=default,
        policies=policies,
        claim_batch=env_int(env, "AGENTHUB_SEND_CLAIM_BATCH", 100, minimum=1),
        poll_interval_s=env_int(env, "AGENTHUB_SEND_POLL_MS", 1000, minimum=10) / 1000.0,
    )
