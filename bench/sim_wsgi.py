"""The NTjP simulator as a WSGI module, for the outbound benchmark to serve under gunicorn.

``agenthub ntjp-sim`` serves with werkzeug's development server, which opens a thread and closes
the connection for every request; gunicorn (one process, so the mock's attempt counts stay in one
place; threads; keep-alive, as the real platform keeps connections open) lets the benchmark
measure the senders rather than the development server.
"""

from __future__ import annotations

import os
import pathlib

from hub.sim import create_sim_app, load_sim_config

app = create_sim_app(load_sim_config(pathlib.Path(os.environ["AGENTHUB_SIM_CONFIG"])))
