"""Benchmark: deliver stored messages to a folder drop and to an SFTP drop, against baselines.

    .venv/bin/python bench/drops.py            # 50,000 messages per drop (a few minutes)
    .venv/bin/python bench/drops.py --quick    # 2,000 messages per drop
    .venv/bin/python bench/drops.py -n 10000 --database-url postgresql+psycopg2://…/db

What is measured, in one run on this machine:

* **hub → folder**: :func:`hub.delivery.run.deliver_region` — the worker's own code path: claim
  batches in the database, decrypt, cut the element out of the envelope, render the XML file
  and its JSON sidecar, write both atomically and durably (temporary name, fsync, link, directory
  fsync), mark the batch delivered with one access-log line per message.
* **hub → SFTP**: the same against a real OpenSSH server on loopback (``tests/sshd.py``
  starts one; needs root and ``/usr/sbin/sshd``).
* **baselines**, writing exactly the same files (same names, same bytes, read back from the
  drop the hub just wrote): plain Python ``open(...).write(...)`` into a folder, the same with
  the atomic + durable steps a drop must take (temporary file, fsync, rename), and a bare
  paramiko loop (``sftp.open(name, "wb").write(data)``) on one connection to the same server.

Hub and baselines run in interleaved rounds (``--rounds``, default 10): each round seeds a slice
of the messages (untimed), delivers it, then writes the same files with the baselines. On a
machine whose load changes during a long run, that keeps the ratio honest.

The ratio is hub messages/s divided by baseline messages/s (two files per message each way);
the target is >= 0.5. Settings: ``AGENTHUB_WORKER_LANES`` (default 4) drop connections per
region, as in production; ``--lanes`` overrides it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import paramiko

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.config import load_settings  # noqa: E402
from hub.context import Hub, build_hub  # noqa: E402
from hub.db.migrate import upgrade_hub  # noqa: E402
from hub.delivery.run import deliver_region, pending_counts  # noqa: E402
from hub.drops.base import RECEIVED  # noqa: E402
from hub.inbound.seed import seed_messages  # noqa: E402
from hub.jobs.config import load_job_settings  # noqa: E402
from hub.tenancy.access import system_actor  # noqa: E402
from hub.tenancy.registry import MemberRegion, save_region  # noqa: E402


@dataclass
class Row:
    """One line of the result table."""

    what: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds else float("inf")


def active(lan: str, hsa: str, name: str, url: str, settings: dict[str, object]) -> MemberRegion:
    """A member region with an active agreement and the given drop."""
    start = date.today() - timedelta(days=30)
    return MemberRegion(
        lan_code=lan,
        hsa_id=hsa,
        name=name,
        drop_url=url,
        drop_settings=settings,
        agreement_signed=start,
        platform_confirmed=start,
        active_from=start,
    )


def deliver_everything(hub: Hub, region: MemberRegion, lanes: int) -> float:
    """Run deliveries until nothing is pending; return the wall time."""
    settings = load_job_settings().with_overrides(lanes=lanes, run_budget_s=3600)
    started = time.perf_counter()
    while True:
        report = deliver_region(hub, region, settings, "bench")
        if report.drop_error or report.skipped:
            raise SystemExit(f"delivery to {region.lan_code} failed: {report}")
        if report.delivered == 0 and report.failed == 0:
            break
    elapsed = time.perf_counter() - started
    left = pending_counts(hub, [region.lan_code])[region.lan_code]
    if left:
        raise SystemExit(f"{left} messages still pending in {region.lan_code}")
    return elapsed


def plain_folder(files: list[tuple[str, bytes]], target: Path) -> float:
    """Baseline: plain open/write/close of every file."""
    target.mkdir(parents=True)
    started = time.perf_counter()
    for name, data in files:
        with open(target / name, "wb") as handle:
            handle.write(data)
    return time.perf_counter() - started


def durable_folder(files: list[tuple[str, bytes]], target: Path) -> float:
    """Baseline: what any correct drop writer must do (temp file, fsync, rename, dir fsync)."""
    target.mkdir(parents=True)
    started = time.perf_counter()
    directory = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name, data in files:
            tmp = target / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, target / name)
            os.fsync(directory)
    finally:
        os.close(directory)
    return time.perf_counter() - started


def bare_sftp(files: list[tuple[str, bytes]], server: object, base: str) -> float:
    """Baseline: one paramiko connection, open/write/close per file, nothing else."""
    transport = paramiko.Transport((server.host, server.port))  # type: ignore[attr-defined]
    transport.connect(
        username=server.username,  # type: ignore[attr-defined]
        password=server.password,  # type: ignore[attr-defined]
    )
    transport.sock.setsockopt(6, 1, 1)  # type: ignore[union-attr]  # TCP_NODELAY, as the hub sets it
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None
    try:
        started = time.perf_counter()
        for name, data in files:
            with sftp.open(f"{base}/{name}", "wb") as handle:
                handle.write(data)
        return time.perf_counter() - started
    finally:
        sftp.close()
        transport.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=50_000, help="messages per drop")
    parser.add_argument("--quick", action="store_true", help="2,000 messages per drop")
    parser.add_argument("--database-url", help="default: SQLite files in a temporary folder")
    parser.add_argument("--lanes", type=int, help="drop connections (default: worker setting)")
    parser.add_argument("--no-sftp", action="store_true", help="folder drop only")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved hub/baseline rounds")
    args = parser.parse_args(argv)
    count = 2_000 if args.quick else args.messages
    lanes = args.lanes or load_job_settings().lanes

    work = Path(tempfile.mkdtemp(prefix="agenthub-bench-"))
    env = {
        "AGENTHUB_ENV": "test",
        "AGENTHUB_DATA_DIR": str(work / "data"),
        "AGENTHUB_LOG_LEVEL": "warning",
    }
    if args.database_url:
        env["AGENTHUB_DATABASE_URL"] = args.database_url
    hub = build_hub(load_settings(env))
    upgrade_hub(hub.db)
    server = None
    sshd_dir = None
    sftp_disk = work / "unused"
    rounds = max(1, min(args.rounds, count))
    try:
        folder_region = active("14", "SE2321000131", "Bench folder", str(work / "folder-drop"), {})
        save_region(hub.db, hub.keys, folder_region, system_actor("bench"), create=True)
        regions = [folder_region]
        if not args.no_sftp:
            from tests.sshd import _start_server

            sshd_dir = Path(tempfile.mkdtemp(prefix="agenthub-bench-sshd-", dir="/run"))
            server = _start_server(sshd_dir)
            base, sftp_disk = server.new_base("hub")
            password_file = work / "sftp-password"
            password_file.write_text(server.password)
            sftp_region = active(
                "01",
                "SE2321000016",
                "Bench SFTP",
                f"sftp://{server.username}@{server.host}:{server.port}{base}",
                {"password_file": str(password_file), "host_key": server.host_key_line},
            )
            save_region(hub.db, hub.keys, sftp_region, system_actor("bench"), create=True)
            regions.append(sftp_region)

        # Interleaved rounds: each round seeds a slice (untimed), delivers it through the hub and
        # writes the very same files with the baseline, so both see the same machine load (this
        # benchmark often shares its disk and CPUs with other work).
        chunks = [count // rounds + (1 if i < count % rounds else 0) for i in range(rounds)]
        load_before = os.getloadavg()[0]
        results: list[tuple[Row, list[Row]]] = []
        for region in regions:
            is_sftp = region.drop_url is not None and region.drop_url.startswith("sftp://")
            disk = sftp_disk if is_sftp else work / "folder-drop"
            seen: set[str] = set()
            hub_s = 0.0
            base_s: dict[str, float] = {}
            what = "SFTP" if is_sftp else "folder"
            print(f"{what} drop: {rounds} rounds, {lanes} lanes…")
            for index, chunk in enumerate(chunks):
                seed_messages(hub, region.lan_code, chunk)
                hub_s += deliver_everything(hub, region, lanes)
                received = disk / RECEIVED
                files = sorted(
                    (p.name, p.read_bytes()) for p in received.iterdir() if p.name not in seen
                )
                seen.update(name for name, _ in files)
                assert len(files) == 2 * chunk, (len(files), chunk)
                if is_sftp:
                    assert server is not None
                    bare_base, bare_disk = server.new_base(f"bare{index}")
                    base_s["bare paramiko loop"] = base_s.get("bare paramiko loop", 0.0) + (
                        bare_sftp(files, server, bare_base)
                    )
                    shutil.rmtree(bare_disk, ignore_errors=True)
                else:
                    for label, fn in (
                        ("plain open/write", plain_folder),
                        ("temp+fsync+rename", durable_folder),
                    ):
                        target = work / f"baseline-{index}"
                        base_s[label] = base_s.get(label, 0.0) + fn(files, target)
                        shutil.rmtree(target, ignore_errors=True)
            results.append(
                (
                    Row(f"hub → {what} drop", count, hub_s),
                    [Row(label, count, seconds) for label, seconds in base_s.items()],
                )
            )
        load_after = os.getloadavg()[0]

        print()
        print(
            f"{'measured':<20} {'msgs':>7} {'s':>8} {'msg/s':>9}   "
            f"{'baseline (same files)':<22} {'msg/s':>9} {'ratio':>6}"
        )
        for hub_row, base_rows in results:
            for index, base_row in enumerate(base_rows):
                left = (
                    f"{hub_row.what:<20} {hub_row.messages:>7} {hub_row.seconds:>8.2f} "
                    f"{hub_row.rate:>9.0f}"
                    if index == 0
                    else " " * 47
                )
                ratio = hub_row.rate / base_row.rate
                flag = "" if ratio >= 0.5 else "  < 0.5"
                print(f"{left}   {base_row.what:<22} {base_row.rate:>9.0f} {ratio:>6.2f}{flag}")
        print(
            f"\n(2 files per message; {lanes} drop lanes; {rounds} interleaved rounds; "
            f"{os.cpu_count()} CPUs; load average {load_before:.1f} → {load_after:.1f})"
        )
    finally:
        hub.close()
        if server is not None:
            server.stop()
        if sshd_dir is not None:
            shutil.rmtree(sshd_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
