"""A local stand-in for the national platform NTjP (SKLTP VP) — for demos, tests and rehearsals.

It routes SOAP calls for any contract by logical address and contract namespace, checks the caller
and its authorisation, and answers with the platform's VP faults exactly as NTjP formats them. The
logical address ``LOAD-MOCKS`` and routes to ``mock:`` reach a built-in mock producer of
ProcessCervixScreeningInformation whose magic personnummer force delays, faults, ERROR and INFO
(see :mod:`hub.sim.mock`). Configuration: :mod:`hub.sim.config` and ``routes.example.toml``.
"""

from hub.sim.app import SimApp, create_sim_app
from hub.sim.config import (
    LOAD_MOCKS,
    Authorisation,
    Route,
    SimConfig,
    SimConfigError,
    default_sim_config,
    load_sim_config,
)
from hub.sim.faults import VpCode
from hub.sim.mock import (
    MOCK_PATH,
    MOCK_PNR_DELAY,
    MOCK_PNR_ERROR,
    MOCK_PNR_FAULT,
    MOCK_PNR_INFO,
)
from hub.sim.server import RunningSim, run_sim, serve_sim_in_thread

__all__ = [
    "LOAD_MOCKS",
    "MOCK_PATH",
    "MOCK_PNR_DELAY",
    "MOCK_PNR_ERROR",
    "MOCK_PNR_FAULT",
    "MOCK_PNR_INFO",
    "Authorisation",
    "Route",
    "RunningSim",
    "SimApp",
    "SimConfig",
    "SimConfigError",
    "VpCode",
    "create_sim_app",
    "default_sim_config",
    "load_sim_config",
    "run_sim",
    "serve_sim_in_thread",
]
