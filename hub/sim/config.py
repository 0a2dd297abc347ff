"""Configuration of the NTjP simulator: routing table, authorisation table and platform knobs.

The two tables mirror the national platform's TAK (tjänsteadresseringskatalog): *vägval* (routes)
and *anropsbehörigheter* (authorisations). Everything else is the behaviour of the router (SKLTP VP)
that a region may want to vary while rehearsing: timeouts, the retry pause, the IP allow-list, which
consumers may set ``x-rivta-original-serviceconsumer-hsaid`` and how the caller is identified.

The file format is TOML; ``hub/sim/routes.example.toml`` documents every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from hub.contract.names import MAX_PAYLOAD_BYTES, RESPONDER_NS

#: Logical address that reaches the built-in mock producer (as in NTjP's SIT environment).
LOAD_MOCKS: Final = "LOAD-MOCKS"
#: A route URL of this scheme reaches the built-in mock producer in-process (no HTTP hop).
MOCK_SCHEME: Final = "mock:"
#: Wildcard accepted in the contract and consumer columns (a simulator convenience; TAK has none).
ANY: Final = "*"

#: The 21 län codes (docs/contract.md; a region's logical address is its län code).
LAN_CODES: Final = (
    "01", "03", "04", "05", "06", "07", "08", "09", "10", "12", "13",
    "14", "17", "18", "19", "20", "21", "22", "23", "24", "25",
)  # fmt: skip

# Earliest/latest instants: an entry without a window is valid "forever" in either direction.
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


class SimConfigError(ValueError):
    """The simulator configuration is unusable; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class Route:
    """One vägval: calls for (logical address, contract) go to ``url`` while the window is open.

    ``contract`` is a contract namespace or ``"*"`` (any contract). ``url`` is ``http(s)://…`` or
    ``mock:`` (optionally ``mock:?fault_rate=…&error_rate=…&seed=…``). ``timeout_s`` overrides the
    global read timeout for this producer (the whole call's, as the platform's: VP009 at it).
    """

    logical_address: str
    contract: str
    url: str
    valid_from: datetime = _MIN
    valid_to: datetime = _MAX
    timeout_s: float | None = None

    def valid_at(self, now: datetime) -> bool:
        """Return whether the route's validity window contains ``now`` (an aware datetime)."""
        return self.valid_from <= now < self.valid_to


@dataclass(frozen=True, slots=True)
class Authorisation:
    """One anropsbehörighet: ``consumer_hsaid`` may call ``logical_address`` via ``contract``.

    ``consumer_hsaid`` and ``contract`` may be ``"*"`` (simulator convenience);
    ``logical_address`` ``"SE"`` or ``"*"`` covers every address, as on the platform.
    """

    consumer_hsaid: str
    contract: str
    logical_address: str
    valid_from: datetime = _MIN
    valid_to: datetime = _MAX

    def valid_at(self, now: datetime) -> bool:
        """Return whether the authorisation's validity window contains ``now``."""
        return self.valid_from <= now < self.valid_to


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the simulator needs; immutable so one instance can be shared by all threads."""

    instance_id: str = "NTjP SIM"
    routes: tuple[Route, ...] = ()
    authorisations: tuple[Authorisation, ...] = ()
    #: CIDRs or addresses allowed to call; empty = everybody (VP011 otherwise).
    ip_allow_list: tuple[str, ...] = ()
    #: Header in which a TLS ingress forwards the verified client certificate (URL-escaped PEM,
    #: as nginx ``$ssl_client_escaped_cert``). Empty = not used.
    cert_header: str = "x-ssl-client-cert"
    #: Dev/test shortcut: a plain header carrying the caller's HSA-id. Empty = disabled, so only the
    #: certificate identifies the caller (what a production-like rehearsal should use).
    dev_consumer_header: str = "x-sim-consumer-hsaid"
    #: Consumers allowed to send x-rivta-original-serviceconsumer-hsaid ("*" = all); others: VP013.
    original_consumer_allowed: tuple[str, ...] = ()
    routing_history_header: str = "x-rivta-routing-history"
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 29.0
    retry_pause_s: float = 2.0
    #: Add a LOAD-MOCKS route and authorisation (any consumer, any contract) to the tables.
    load_mocks: bool = True
    #: How long the mock sleeps for MOCK_PNR_DELAY; longer than read_timeout_s provokes VP009.
    mock_delay_s: float = 35.0
    max_body_bytes: int = MAX_PAYLOAD_BYTES
    #: The platform's own HSA-id, sent to producers in ``platform_hsaid_header`` when that is set,
    #: so a producer behind a dev ingress can tell the "platform" called it.
    platform_hsaid: str = "SE0000000000-SIM1"
    platform_hsaid_header: str = ""
    #: TLS towards producers: client certificate and key files, and the CA bundle to verify with.
    tls_client_cert: str = ""
    tls_client_key: str = ""
    tls_ca_bundle: str = ""

    def effective_routes(self) -> tuple[Route, ...]:
        """Return the routes including the built-in LOAD-MOCKS route when enabled."""
        if not self.load_mocks:
            return self.routes
        return (*self.routes, Route(LOAD_MOCKS, ANY, MOCK_SCHEME))

    def effective_authorisations(self) -> tuple[Authorisation, ...]:
        """Return the authorisations including the built-in LOAD-MOCKS one when enabled."""
        if not self.load_mocks:
            return self.authorisations
        return (*self.authorisations, Authorisation(ANY, ANY, LOAD_MOCKS))


def _instant(value: object, key: str, *, end_of_day: bool) -> datetime:
    """Turn a TOML date/datetime into an aware datetime.

    A bare date is a whole day as in TAK (``valid_to = 2025-12-31`` includes that day); a naive
    datetime is the machine's local time, which is what an operator typing it means.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    if isinstance(value, date):
        start = datetime.combine(value, time.min).astimezone()
        return start + timedelta(days=1) if end_of_day else start
    raise SimConfigError(f"{key}: expected a TOML date or datetime, got {value!r}")


def _str(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise SimConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _number(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SimConfigError(f"{where}.{key}: expected a non-negative number, got {value!r}")
    return float(value)


def _strings(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SimConfigError(f"{where}.{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _reject_unknown(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    # A typo in a routing file silently changing behaviour is worse than a loud failure.
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SimConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _window(table: Mapping[str, Any], where: str) -> tuple[datetime, datetime]:
    start = _MIN
    end = _MAX
    if "valid_from" in table:
        start = _instant(table["valid_from"], f"{where}.valid_from", end_of_day=False)
    if "valid_to" in table:
        end = _instant(table["valid_to"], f"{where}.valid_to", end_of_day=True)
    if end <= start:
        raise SimConfigError(f"{where}: valid_to is not after valid_from")
    return start, end


def _route(table: Mapping[str, Any], where: str) -> Route:
    _reject_unknown(
        table, ("logical_address", "contract", "url", "valid_from", "valid_to", "timeout_s"), where
    )
    url = _str(table, "url", where)
    if not url.startswith(("http://", "https://", MOCK_SCHEME)):
        raise SimConfigError(f"{where}.url: expected http(s)://… or mock:, got {url!r}")
    start, end = _window(table, where)
    timeout = _number(table, "timeout_s", where, 0.0) if "timeout_s" in table else None
    return Route(
        logical_address=_str(table, "logical_address", where),
        contract=_str(table, "contract", where, RESPONDER_NS),
        url=url,
        valid_from=start,
        valid_to=end,
        timeout_s=timeout,
    )


def _authorisation(table: Mapping[str, Any], where: str) -> Authorisation:
    _reject_unknown(
        table, ("consumer_hsaid", "contract", "logical_address", "valid_from", "valid_to"), where
    )
    start, end = _window(table, where)
    return Authorisation(
        consumer_hsaid=_str(table, "consumer_hsaid", where),
        contract=_str(table, "contract", where, RESPONDER_NS),
        logical_address=_str(table, "logical_address", where),
        valid_from=start,
        valid_to=end,
    )


_SIM_KEYS: Final = (
    "instance_id",
    "ip_allow_list",
    "cert_header",
    "dev_consumer_header",
    "original_consumer_allowed",
    "routing_history_header",
    "connect_timeout_s",
    "read_timeout_s",
    "retry_pause_s",
    "load_mocks",
    "mock_delay_s",
    "max_body_bytes",
    "platform_hsaid",
    "platform_hsaid_header",
    "tls_client_cert",
    "tls_client_key",
    "tls_ca_bundle",
)


def sim_config_from_mapping(data: Mapping[str, Any]) -> SimConfig:
    """Build a :class:`SimConfig` from parsed TOML (tables sim, routes, authorisations).

    Raises :class:`SimConfigError` naming the key on any unknown key or wrong type.
    """
    _reject_unknown(data, ("sim", "routes", "authorisations"), "top level")
    sim = data.get("sim", {})
    if not isinstance(sim, dict):
        raise SimConfigError("sim: expected a table")
    _reject_unknown(sim, _SIM_KEYS, "sim")
    defaults = SimConfig()
    routes_raw = data.get("routes", [])
    auth_raw = data.get("authorisations", [])
    if not isinstance(routes_raw, list) or not all(isinstance(r, dict) for r in routes_raw):
        raise SimConfigError("routes: expected an array of tables ([[routes]])")
    if not isinstance(auth_raw, list) or not all(isinstance(a, dict) for a in auth_raw):
        raise SimConfigError("authorisations: expected an array of tables ([[authorisations]])")
    load_mocks = sim.get("load_mocks", defaults.load_mocks)
    if not isinstance(load_mocks, bool):
        raise SimConfigError(f"sim.load_mocks: expected true or false, got {load_mocks!r}")
    max_body = sim.get("max_body_bytes", defaults.max_body_bytes)
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0:
        raise SimConfigError(f"sim.max_body_bytes: expected a positive integer, got {max_body!r}")
    config = SimConfig(
        instance_id=_str(sim, "instance_id", "sim", defaults.instance_id),
        routes=tuple(_route(r, f"routes[{i}]") for i, r in enumerate(routes_raw)),
        authorisations=tuple(
            _authorisation(a, f"authorisations[{i}]") for i, a in enumerate(auth_raw)
        ),
        ip_allow_list=_strings(sim, "ip_allow_list", "sim"),
        cert_header=_str(sim, "cert_header", "sim", defaults.cert_header),
        dev_consumer_header=_str(sim, "dev_consumer_header", "sim", defaults.dev_consumer_header),
        original_consumer_allowed=_strings(sim, "original_consumer_allowed", "sim"),
        routing_history_header=_str(
            sim, "routing_history_header", "sim", defaults.routing_history_header
        ),
        connect_timeout_s=_number(sim, "connect_timeout_s", "sim", defaults.connect_timeout_s),
        read_timeout_s=_number(sim, "read_timeout_s", "sim", defaults.read_timeout_s),
        retry_pause_s=_number(sim, "retry_pause_s", "sim", defaults.retry_pause_s),
        load_mocks=load_mocks,
        mock_delay_s=_number(sim, "mock_delay_s", "sim", defaults.mock_delay_s),
        max_body_bytes=max_body,
        platform_hsaid=_str(sim, "platform_hsaid", "sim", defaults.platform_hsaid),
        platform_hsaid_header=_str(sim, "platform_hsaid_header", "sim", ""),
        tls_client_cert=_str(sim, "tls_client_cert", "sim", ""),
        tls_client_key=_str(sim, "tls_client_key", "sim", ""),
        tls_ca_bundle=_str(sim, "tls_ca_bundle", "sim", ""),
    )
    validate_sim_config(config)
    return config


def validate_sim_config(config: SimConfig) -> None:
    """Fail loudly on values that would only surface as odd behaviour at call time."""
    if not config.instance_id or "," in config.instance_id:
        # The id is written into the comma-separated routing history.
        raise SimConfigError("sim.instance_id: must be non-empty and contain no comma")
    for entry in config.ip_allow_list:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SimConfigError(f"sim.ip_allow_list: not an address or CIDR: {entry!r}") from None
    timeouts = [config.connect_timeout_s, config.read_timeout_s]
    timeouts += [r.timeout_s for r in config.routes if r.timeout_s is not None]
    if any(t <= 0 for t in timeouts):
        # requests treats 0 as "fail at once", never what an operator meant.
        raise SimConfigError("timeouts (connect_timeout_s, read_timeout_s, timeout_s) must be > 0")
    if bool(config.tls_client_cert) != bool(config.tls_client_key):
        raise SimConfigError("sim.tls_client_cert and sim.tls_client_key go together")


def load_sim_config(path: pathlib.Path) -> SimConfig:
    """Read a simulator configuration from the TOML file at ``path``."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return sim_config_from_mapping(data)


def default_sim_config(
    *,
    hub_url: str | None = None,
    hub_lan_codes: Iterable[str] = (),
    mock_lan_codes: Iterable[str] | None = None,
    consumer_hsaids: Iterable[str] = (ANY,),
    contract: str = RESPONDER_NS,
    instance_id: str = "NTjP SIM",
    **overrides: Any,
) -> SimConfig:
    """Return a ready-to-use configuration for demos and tests.

    ``hub_lan_codes`` route to ``hub_url`` (the hub's producer endpoint); ``mock_lan_codes`` (by
    default every other län code) route to the in-process mock. Each of ``consumer_hsaids`` is
    authorised for every address (logical address ``SE``) of ``contract``. ``overrides`` set any
    other :class:`SimConfig` field, e.g. ``retry_pause_s=0.05``.
    """
    hub_codes = tuple(hub_lan_codes)
    if hub_codes and not hub_url:
        raise SimConfigError("hub_url is required when hub_lan_codes are given")
    mock_codes = (
        tuple(c for c in LAN_CODES if c not in hub_codes)
        if mock_lan_codes is None
        else tuple(mock_lan_codes)
    )
    routes = [Route(code, contract, hub_url or "") for code in hub_codes]
    routes += [Route(code, contract, MOCK_SCHEME) for code in mock_codes]
    auths = [Authorisation(c, contract, "SE") for c in consumer_hsaids]
    config = SimConfig(instance_id=instance_id, routes=tuple(routes), authorisations=tuple(auths))
    if overrides:
        config = dataclasses.replace(config, **overrides)
    validate_sim_config(config)
    return config


__all__ = [
    "ANY",
    "LAN_CODES",
    "LOAD_MOCKS",
    "MOCK_SCHEME",
    "Authorisation",
    "Route",
    "SimConfig",
    "SimConfigError",
    "default_sim_config",
    "load_sim_config",
    "sim_config_from_mapping",
    "validate_sim_config",
]
