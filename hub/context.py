"""The hub's long-lived services, built once per process from the settings."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field

from hub.config import ConfigError, Settings, load_settings
from hub.contract.codes import DEFAULT_CODE_LISTS, CodeLists, load_code_lists
from hub.db import Database
from hub.db.engines import make_private_dir
from hub.inbound.groupcommit import GroupCommit
from hub.logs import configure_logging
from hub.tenancy.keys import KeyStore, load_master_key
from hub.tenancy.routing import Router


@dataclass
class Hub:
    """Settings, databases, region keys, code lists and routing: what every service needs."""

    settings: Settings
    db: Database
    keys: KeyStore
    codes: CodeLists
    router: Router = field(init=False)
    inbound: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        self.router = Router(self.db)
        self.inbound = GroupCommit(self.db)

    def close(self) -> None:
        """Finish queued inbound writes, then release database pools."""
        self.inbound.close()
        self.db.dispose()


def build_hub(settings: Settings | None = None) -> Hub:
    """Build the hub's services; reads the environment when no settings are given."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    make_private_dir(settings.data_dir)  # 0700 where the hub makes it: its files are its own
    codes = DEFAULT_CODE_LISTS
    if settings.code_lists_path:
        try:
            codes = load_code_lists(settings.code_lists_path)
        except OSError as exc:
            raise ConfigError(
                f"AGENTHUB_CODE_LISTS: cannot read {settings.code_lists_path}: {exc.strerror}"
            ) from None
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"AGENTHUB_CODE_LISTS: {exc}") from None
    hub = Hub(
        settings=settings,
        db=Database(settings),
        keys=KeyStore(load_master_key(settings)),
        codes=codes,
    )
    logging.getLogger(__name__).debug("hub built for env %s", settings.env)
    return hub
