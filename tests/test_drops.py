"""Drops: the same behaviour on a local folder and on a real OpenSSH SFTP server."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.drops import (
    ARCHIVE,
    EXTRACTS,
    FOLDERS,
    RECEIPTS,
    RECEIVED,
    REJECTED,
    Drop,
    DropError,
    DropFileExists,
    DropFileNotFound,
    DropFileTooLarge,
    DropUnavailable,
    HostKeyMismatch,
    InvalidDropPath,
    LocalDrop,
    SftpDrop,
    SftpSettings,
    open_drop,
)
from hub.drops.sftp import fingerprint, parse_host_key_pins
from tests.sshd import SftpServer, generate_key

# The sftp_server fixture comes from tests/sshd.py, loaded as a plugin by tests/conftest.py.

# A name as the hub makes them: time first (so names sort chronologically), then the message id.
MESSAGE_NAME = "20250301T101500Z_6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44.xml"
SWEDISH = '<kvinna namn="Åsa Öberg">Västra Götaland, Malmö - ÅÄÖ åäö</kvinna>\n'


@dataclass
class Env:
    """A drop under test plus the same folder on disk, to check what really landed there."""

    drop: Drop
    disk: Path
    owner: tuple[int, int] | None  # who region-made files should belong to (SFTP user)

    def region_put(self, folder: str, name: str, data: bytes) -> Path:
        """Put a file into the drop the way a region would (directly, not through the hub)."""
        path = self.disk / folder / name
        path.write_bytes(data)
        if self.owner is not None:
            os.chown(path, *self.owner)
        return path

    def names_on_disk(self, folder: str) -> list[str]:
        return sorted(p.name for p in (self.disk / folder).iterdir())


def sftp_settings(server: SftpServer, **overrides: object) -> SftpSettings:
    values: dict[str, object] = {
        "password": server.password,
        "host_key": server.host_key_line,
        "connect_timeout": 5.0,
        "read_timeout": 10.0,
    }
    values.update(overrides)
    return SftpSettings(**values)  # type: ignore[arg-type]


def sftp_drop(server: SftpServer, base_path: str, **overrides: object) -> SftpDrop:
    return SftpDrop(
        server.host, server.port, server.username, base_path, sftp_settings(server, **overrides)
    )


@pytest.fixture(params=["local", "sftp"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if request.param == "local":
        root = tmp_path / "drop"
        drop: Drop = LocalDrop(root)
        disk, owner = root, None
    else:
        server: SftpServer = request.getfixturevalue("sftp_server")
        base_path, disk = server.new_base()
        drop = sftp_drop(server, base_path)
        owner = (server.uid, server.gid)
    with drop:
        drop.ensure_layout()
        yield Env(drop, disk, owner)


# -- behaviour shared by both kinds of drop ---------------------------------------------------


def test_ensure_layout_creates_folders_and_is_idempotent(env: Env) -> None:
    env.drop.ensure_layout()
    for folder in FOLDERS:
        assert (env.disk / folder).is_dir()
    assert sorted(p.name for p in env.disk.iterdir()) == sorted(
        [EXTRACTS, RECEIVED, RECEIPTS, REJECTED]
    )
    assert (env.disk / ARCHIVE).parent == env.disk / EXTRACTS
    env.drop.check()


def test_write_atomic_keeps_swedish_content_byte_for_byte(env: Env) -> None:
    data = SWEDISH.encode("utf-8") + SWEDISH.encode("iso-8859-1") + bytes(range(256))
    assert env.drop.write_atomic(RECEIVED, MESSAGE_NAME, data) is True
    assert (env.disk / RECEIVED / MESSAGE_NAME).read_bytes() == data
    assert env.drop.read(RECEIVED, MESSAGE_NAME) == data
    # Nothing else is left behind: the temp file was renamed, not copied.
    assert env.names_on_disk(RECEIVED) == [MESSAGE_NAME]


def test_write_atomic_never_overwrites(env: Env) -> None:
    assert env.drop.write_atomic(RECEIPTS, MESSAGE_NAME, b"first") is True
    assert env.drop.write_atomic(RECEIPTS, MESSAGE_NAME, b"second") is False
    assert (env.disk / RECEIPTS / MESSAGE_NAME).read_bytes() == b"first"
    assert env.names_on_disk(RECEIPTS) == [MESSAGE_NAME]


def test_write_atomic_does_not_replace_a_region_file(env: Env) -> None:
    env.region_put(RECEIVED, "taken.xml", b"the region's")
    assert env.drop.write_atomic(RECEIVED, "taken.xml", b"the hub's") is False
    assert (env.disk / RECEIVED / "taken.xml").read_bytes() == b"the region's"


def test_write_atomic_of_empty_and_large_files(env: Env) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)  # several SFTP packets and write chunks
    assert env.drop.write_atomic(REJECTED, "empty.txt", b"")
    assert env.drop.write_atomic(REJECTED, "big.bin", big)
    assert env.drop.read(REJECTED, "empty.txt") == b""
    assert env.drop.read(REJECTED, "big.bin") == big


def test_list_files_ignores_temp_files_dot_files_and_folders(env: Env) -> None:
    env.region_put(EXTRACTS, "utdrag-1.csv", b"a;b\n")
    env.region_put(EXTRACTS, ".utdrag-2.csv.tmp-0123abcd", b"half a fi")
    env.region_put(EXTRACTS, ".hidden", b"x")
    (env.disk / EXTRACTS / "a-folder").mkdir()
    files = env.drop.list_files(EXTRACTS)
    assert [f.name for f in files] == ["utdrag-1.csv"]
    assert files[0].size == 4
    assert files[0].mtime.tzinfo is not None
    assert abs(files[0].mtime.timestamp() - time.time()) < 60


def test_list_files_is_sorted_and_keeps_swedish_names(env: Env) -> None:
    names = ["Utdrag_Västra_Götaland_åäö.csv", "20250302T080000Z_b.xml", MESSAGE_NAME]
    for name in names:
        assert env.drop.write_atomic(RECEIVED, name, name.encode())
    listed = env.drop.list_files(RECEIVED)
    assert [f.name for f in listed] == sorted(names)
    assert {f.name: f.size for f in listed} == {n: len(n.encode()) for n in names}
    assert env.drop.read(RECEIVED, names[0]) == names[0].encode()
    assert (env.disk / RECEIVED / names[0]).exists()


def test_read_refuses_files_over_the_cap(env: Env) -> None:
    env.region_put(EXTRACTS, "utdrag.csv", b"x" * 100)
    assert env.drop.read(EXTRACTS, "utdrag.csv", max_bytes=100) == b"x" * 100
    with pytest.raises(DropFileTooLarge) as caught:
        env.drop.read(EXTRACTS, "utdrag.csv", max_bytes=99)
    assert caught.value.permanent


def test_read_missing_file(env: Env) -> None:
    with pytest.raises(DropFileNotFound):
        env.drop.read(EXTRACTS, "nope.csv")


def test_exists(env: Env) -> None:
    assert not env.drop.exists(RECEIVED, MESSAGE_NAME)
    env.drop.write_atomic(RECEIVED, MESSAGE_NAME, b"x")
    assert env.drop.exists(RECEIVED, MESSAGE_NAME)


def test_move_to_archive_hides_the_extract_from_listing(env: Env) -> None:
    env.region_put(EXTRACTS, "utdrag.csv", SWEDISH.encode())
    env.drop.move(EXTRACTS, "utdrag.csv", ARCHIVE)
    assert env.drop.list_files(EXTRACTS) == []
    assert [f.name for f in env.drop.list_files(ARCHIVE)] == ["utdrag.csv"]
    assert (env.disk / ARCHIVE / "utdrag.csv").read_bytes() == SWEDISH.encode()
    # A second hub node trying the same pick-up loses cleanly.
    with pytest.raises(DropFileNotFound):
        env.drop.move(EXTRACTS, "utdrag.csv", ARCHIVE)


def test_move_with_a_new_name(env: Env) -> None:
    env.region_put(EXTRACTS, "utdrag.csv", b"1")
    env.drop.move(EXTRACTS, "utdrag.csv", REJECTED, "20250301T101500Z_utdrag.csv")
    assert env.names_on_disk(REJECTED) == ["20250301T101500Z_utdrag.csv"]


def test_move_never_replaces_the_target(env: Env) -> None:
    env.region_put(EXTRACTS, "utdrag.csv", b"new")
    env.region_put(ARCHIVE, "utdrag.csv", b"old")
    with pytest.raises(DropFileExists):
        env.drop.move(EXTRACTS, "utdrag.csv", ARCHIVE)
    assert (env.disk / ARCHIVE / "utdrag.csv").read_bytes() == b"old"
    assert (env.disk / EXTRACTS / "utdrag.csv").read_bytes() == b"new"


def test_remove_is_idempotent(env: Env) -> None:
    env.drop.write_atomic(RECEIPTS, "k.xml", b"x")
    env.drop.remove(RECEIPTS, "k.xml")
    env.drop.remove(RECEIPTS, "k.xml")
    assert env.names_on_disk(RECEIPTS) == []


BAD_NAMES = [
    "",
    ".",
    "..",
    "../escape.xml",
    "../../etc/passwd",
    "sub/file.xml",
    "/etc/passwd",
    "a\\b.xml",
    ".hidden.xml",
    "nul\x00byte.xml",
    "new\nline.xml",
    "x" * 201,
]
BAD_FOLDERS = [
    "",
    ".",
    "..",
    "../extracts",
    "extracts/..",
    "/etc",
    "tmp",
    "extracts/sub",
    "Extracts",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused(env: Env, name: str) -> None:
    before = sorted(str(p) for p in env.disk.parent.rglob("*"))
    with pytest.raises(InvalidDropPath) as caught:
        env.drop.write_atomic(RECEIVED, name, b"x")
    assert caught.value.permanent
    assert isinstance(caught.value, ValueError)
    for call in (
        lambda: env.drop.read(EXTRACTS, name),
        lambda: env.drop.exists(EXTRACTS, name),
        lambda: env.drop.remove(EXTRACTS, name),
        lambda: env.drop.move(EXTRACTS, "ok.csv", ARCHIVE, name),
        lambda: env.drop.move(EXTRACTS, name, ARCHIVE, "ok.csv"),
    ):
        with pytest.raises(InvalidDropPath):
            call()
    assert sorted(str(p) for p in env.disk.parent.rglob("*")) == before


@pytest.mark.parametrize("folder", BAD_FOLDERS)
def test_unknown_folders_are_refused(env: Env, folder: str) -> None:
    with pytest.raises(InvalidDropPath):
        env.drop.write_atomic(folder, "ok.xml", b"x")
    with pytest.raises(InvalidDropPath):
        env.drop.list_files(folder)
    with pytest.raises(InvalidDropPath):
        env.drop.move(EXTRACTS, "ok.xml", folder)


# -- symbolic links in place of folders (issue 17) ----------------------------------------------


def _elsewhere(env: Env) -> Path:
    """Another region's folder next to this drop, with a file in it (what a link points at)."""
    other = env.disk.parent / (env.disk.name + "-other")
    other.mkdir(exist_ok=True)
    (other / "kvinna.xml").write_text(SWEDISH, encoding="utf-8")
    if env.owner is not None:
        os.chown(other, *env.owner)
        os.chown(other / "kvinna.xml", *env.owner)
    return other


def _link_folder(env: Env, folder: str, target: Path) -> None:
    """Put a link where ``folder`` is, as a region with write access to its drop could."""
    path = env.disk / folder
    shutil.rmtree(path)
    # A relative target, so that it points at the same place on disk and inside sshd's chroot.
    path.symlink_to(os.path.relpath(target, path.parent))


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_link_in_place_of_a_layout_folder_is_refused_by_every_operation(
    env: Env, folder: str
) -> None:
    other = _elsewhere(env)
    if folder == EXTRACTS:
        shutil.rmtree(env.disk / ARCHIVE)
    _link_folder(env, folder, other)
    before = sorted(p.name for p in other.iterdir())
    calls = [
        lambda: env.drop.list_files(folder),
        lambda: env.drop.read(folder, "kvinna.xml"),
        lambda: env.drop.write_atomic(folder, MESSAGE_NAME, b"<x/>"),
        lambda: env.drop.exists(folder, "kvinna.xml"),
        lambda: env.drop.remove(folder, "kvinna.xml"),
        lambda: env.drop.ensure_layout(),
    ]
    if folder != EXTRACTS:
        calls.append(lambda: env.drop.move(folder, "kvinna.xml", REJECTED))
    for call in calls:
        with pytest.raises(DropError, match="symbolic link") as caught:
            call()
        assert caught.value.permanent
    # Nothing of the other folder was read, moved, removed or added.
    assert sorted(p.name for p in other.iterdir()) == before
    assert (other / "kvinna.xml").read_text(encoding="utf-8") == SWEDISH


def test_a_linked_archive_keeps_the_extract_where_it_is(env: Env) -> None:
    other = _elsewhere(env)
    env.region_put(EXTRACTS, "extract.csv", b"1;2;3\n")
    _link_folder(env, ARCHIVE, other)
    with pytest.raises(DropError, match="symbolic link"):
        env.drop.move(EXTRACTS, "extract.csv", ARCHIVE, "archived.csv")
    assert env.names_on_disk(EXTRACTS) == [".archive", "extract.csv"]
    assert sorted(p.name for p in other.iterdir()) == ["kvinna.xml"]


def test_a_drop_whose_root_is_a_link_is_refused(env: Env) -> None:
    other = _elsewhere(env)
    for folder in FOLDERS[:1] + FOLDERS[2:]:
        (other / folder).mkdir(exist_ok=True)
        if env.owner is not None:
            os.chown(other / folder, *env.owner)
    linked = env.disk.parent / (env.disk.name + "-linked")
    linked.symlink_to(os.path.relpath(other, linked.parent))
    if isinstance(env.drop, LocalDrop):
        drop: Drop = LocalDrop(linked)
    else:
        assert isinstance(env.drop, SftpDrop)
        base = env.drop.base_path.rsplit("/", 1)[0] + "/" + linked.name
        drop = SftpDrop(env.drop.host, env.drop.port, env.drop.username, base, env.drop.settings)
    with drop:
        for call in (drop.check, drop.ensure_layout, lambda: drop.list_files(RECEIVED)):
            with pytest.raises(DropError, match="symbolic link") as caught:
                call()
            assert caught.value.permanent
    assert sorted(p.name for p in (other / RECEIVED).iterdir()) == []


def test_a_link_further_up_inside_the_drop_is_refused_too(env: Env) -> None:
    # extracts/ is real, but a link took the place of extracts/.archive's parent on the way:
    # here the archive itself is a link into received/, the drop's own other folder.
    env.region_put(EXTRACTS, "extract.csv", b"1;2;3\n")
    _link_folder(env, ARCHIVE, env.disk / RECEIVED)
    with pytest.raises(DropError, match="symbolic link"):
        env.drop.list_files(ARCHIVE)
    with pytest.raises(DropError, match="symbolic link"):
        env.drop.move(EXTRACTS, "extract.csv", ARCHIVE)
    assert env.names_on_disk(RECEIVED) == []


@pytest.mark.parametrize("root", ["drop/../other", "drop/./../other"])
def test_a_local_drop_root_with_dot_dot_is_refused(tmp_path: Path, root: str) -> None:
    with pytest.raises(InvalidDropPath):
        LocalDrop(tmp_path / root)
    with pytest.raises(ValueError, match=r"\.\."):
        SftpDrop("127.0.0.1", 22, "u", "/drop/../other", SftpSettings(host_key=None))


# -- local folder specifics -------------------------------------------------------------------


def test_local_drop_does_not_follow_symlinks(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the region")
    drop = LocalDrop(tmp_path / "drop")
    drop.ensure_layout()
    (tmp_path / "drop" / EXTRACTS / "link.csv").symlink_to(secret)
    assert drop.list_files(EXTRACTS) == []
    with pytest.raises(DropError) as caught:
        drop.read(EXTRACTS, "link.csv")
    assert caught.value.permanent


def test_local_drop_without_hard_links_still_refuses_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported here")

    drop = LocalDrop(tmp_path)
    drop.ensure_layout()
    monkeypatch.setattr(os, "link", no_link)
    assert drop.write_atomic(RECEIVED, "a.xml", b"1") is True
    assert drop.write_atomic(RECEIVED, "a.xml", b"2") is False
    assert (tmp_path / RECEIVED / "a.xml").read_bytes() == b"1"
    drop.move(RECEIVED, "a.xml", REJECTED)
    assert sorted(p.name for p in (tmp_path / REJECTED).iterdir()) == ["a.xml"]
    assert list((tmp_path / RECEIVED).iterdir()) == []


def test_local_check_on_a_missing_folder_is_transient(tmp_path: Path) -> None:
    with pytest.raises(DropUnavailable) as caught:
        LocalDrop(tmp_path / "not-mounted").check()
    assert not caught.value.permanent


def test_local_written_files_are_not_world_readable(tmp_path: Path) -> None:
    drop = LocalDrop(tmp_path)
    drop.ensure_layout()
    drop.write_atomic(RECEIVED, "a.xml", b"1")
    assert (tmp_path / RECEIVED / "a.xml").stat().st_mode & 0o007 == 0


# -- open_drop and settings -------------------------------------------------------------------


def test_open_drop_local_forms(tmp_path: Path) -> None:
    assert isinstance(open_drop(str(tmp_path)), LocalDrop)
    drop = open_drop(f"file://{tmp_path}/M%C3%A4larda")
    assert isinstance(drop, LocalDrop)
    assert drop.root == tmp_path / "Mälarda"
    for bad in ("file://otherhost/x", "file:relative", "http://x/y", ""):
        with pytest.raises(ValueError):
            open_drop(bad)


def test_open_drop_sftp_url() -> None:
    settings = SftpSettings(password="pw", host_key="SHA256:" + "A" * 43)
    drop = open_drop("sftp://region_ab@sftp.example.se:2222/drop/V%C3%A4st", settings)
    assert isinstance(drop, SftpDrop)
    assert (drop.username, drop.host, drop.port, drop.base_path) == (
        "region_ab",
        "sftp.example.se",
        2222,
        "/drop/Väst",
    )
    assert open_drop("sftp://u@h/x", settings).port == 22  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        open_drop("sftp://u@h/x")  # no settings: no host key, refuse
    with pytest.raises(ValueError):
        open_drop("sftp://u:secret@h/x", settings)  # secrets do not belong in URLs
    with pytest.raises(ValueError):
        open_drop("sftp://h/x", settings)  # no user
    with pytest.raises(ValueError):
        open_drop("sftp://u@h/a/../b", settings)


def test_settings_hide_secrets_and_validate_the_pin(tmp_path: Path) -> None:
    text = repr(SftpSettings(password="hemligt", private_key_pem="-----BEGIN", host_key=None))
    assert "hemligt" not in text and "BEGIN" not in text
    for bad in ("garbage", "ssh-ed25519 not-base64!", "SHA256:short", "@revoked h ssh-ed25519 AA"):
        with pytest.raises(ValueError):
            SftpSettings(host_key=bad)
    _, rsa_line = generate_key(tmp_path, "k_rsa", "rsa")
    with pytest.raises(ValueError):  # type name does not match the key data
        SftpSettings(host_key="ssh-ed25519 " + rsa_line.split()[1])


def test_host_key_pin_forms_parse_to_the_same_key(tmp_path: Path) -> None:
    _, line = generate_key(tmp_path, "k")
    key_type, b64, _comment = line.split()
    (full,) = parse_host_key_pins(line)
    (known_hosts,) = parse_host_key_pins(f"[sftp.example.se]:2222 {key_type} {b64}")
    assert full == known_hosts
    assert full.blob is not None
    (fp,) = parse_host_key_pins(fingerprint(full.blob))
    assert fp.fingerprint == full.fingerprint and fp.blob is None


# -- SFTP specifics (real OpenSSH) ------------------------------------------------------------


def test_sftp_password_auth(sftp_server: SftpServer) -> None:
    base, _ = sftp_server.new_base()
    with sftp_drop(sftp_server, base) as drop:
        drop.check()


def test_sftp_key_auth_from_path_and_pem(sftp_server: SftpServer) -> None:
    base, disk = sftp_server.new_base()
    key_path = sftp_server.private_key_path
    for key in (
        {"private_key_path": key_path},
        {"private_key_pem": key_path.read_text()},
    ):
        with sftp_drop(sftp_server, base, password=None, **key) as drop:
            drop.ensure_layout()
            drop.write_atomic(RECEIVED, f"{len(key)}-{next(iter(key))}.xml", b"ok")
    assert len(list((disk / RECEIVED).iterdir())) == 2


def test_sftp_wrong_password_is_permanent(sftp_server: SftpServer) -> None:
    base, _ = sftp_server.new_base()
    with sftp_drop(sftp_server, base, password="fel-lösenord") as drop:
        with pytest.raises(DropUnavailable) as caught:
            drop.check()
    assert caught.value.permanent
    assert not isinstance(caught.value, HostKeyMismatch)


def test_sftp_wrong_key_is_permanent(sftp_server: SftpServer, tmp_path: Path) -> None:
    base, _ = sftp_server.new_base()
    stranger, _ = generate_key(tmp_path, "stranger")
    with sftp_drop(sftp_server, base, password=None, private_key_path=stranger) as drop:
        with pytest.raises(DropUnavailable) as caught:
            drop.check()
    assert caught.value.permanent


def _refused_without_logging_in(
    server: SftpServer, host_key: str | None, disk: Path, base: str
) -> HostKeyMismatch:
    logins = server.accepted_logins()
    with sftp_drop(server, base, host_key=host_key) as drop:
        with pytest.raises(HostKeyMismatch) as caught:
            drop.write_atomic(RECEIVED, MESSAGE_NAME, b"must not arrive")
    assert caught.value.permanent
    assert list(disk.iterdir()) == []  # nothing written, not even the layout
    assert server.accepted_logins() == logins  # credentials were never offered
    return caught.value


def test_sftp_unknown_host_key_is_refused(sftp_server: SftpServer) -> None:
    base, disk = sftp_server.new_base()
    _refused_without_logging_in(sftp_server, None, disk, base)


def test_sftp_changed_host_key_is_refused(
    sftp_server: SftpServer,
    tmp_path: Path,
) -> None:
    base, disk = sftp_server.new_base()
    _, other_ed25519 = generate_key(tmp_path, "other")
    error = _refused_without_logging_in(sftp_server, other_ed25519, disk, base)
    # The message tells the operator what the server presented, to verify out of band.
    assert sftp_server.host_key_line.split()[1] in str(error)
    # A pin of a type the server does not have at all is a mismatch too, not a crash.
    _, other_rsa = generate_key(tmp_path, "other_rsa", "rsa")
    _refused_without_logging_in(sftp_server, other_rsa, disk, base)


def test_sftp_pin_as_fingerprint_or_known_hosts_line(sftp_server: SftpServer) -> None:
    base, _ = sftp_server.new_base()
    key_type, b64 = sftp_server.host_key_line.split()[:2]
    (pin,) = parse_host_key_pins(sftp_server.host_key_line)
    assert pin.blob is not None
    for host_key in (
        fingerprint(pin.blob),
        f"[{sftp_server.host}]:{sftp_server.port} {key_type} {b64}",
        # A rotation in progress: old and new keys pinned side by side.
        f"# rotation\nSHA256:{'B' * 43}\n{key_type} {b64}",
    ):
        with sftp_drop(sftp_server, base, host_key=host_key) as drop:
            drop.check()


def test_sftp_server_down_is_transient_and_quick(sftp_server: SftpServer) -> None:
    base, _ = sftp_server.new_base()
    with sftp_server.stopped(), sftp_drop(sftp_server, base, connect_timeout=2.0) as drop:
        started = time.monotonic()
        with pytest.raises(DropUnavailable) as caught:
            drop.write_atomic(RECEIVED, MESSAGE_NAME, b"x")
        assert time.monotonic() - started < 2.0
    assert not caught.value.permanent
    # Back up: the same kind of drop works again.
    with sftp_drop(sftp_server, base) as drop:
        drop.check()


def test_sftp_hung_server_times_out_as_transient(
    sftp_server: SftpServer,
    silent_server: tuple[str, int],
) -> None:
    host, port = silent_server
    settings = sftp_settings(sftp_server, connect_timeout=0.5)
    started = time.monotonic()
    with SftpDrop(host, port, "u", "/drop", settings) as drop:
        with pytest.raises(DropUnavailable) as caught:
            drop.check()
    assert time.monotonic() - started < 3.0
    assert not caught.value.permanent


def test_sftp_connection_is_reused_within_a_run(sftp_server: SftpServer) -> None:
    base, disk = sftp_server.new_base()
    logins = sftp_server.accepted_logins()
    with sftp_drop(sftp_server, base) as drop:
        drop.ensure_layout()
        transport = drop._transport
        assert transport is not None
        for i in range(5):
            assert drop.write_atomic(RECEIPTS, f"kvitto-{i}.xml", b"x")
        assert len(drop.list_files(RECEIPTS)) == 5
        assert drop._transport is transport
        # The server side agrees: one login for the whole run.
        assert sftp_server.accepted_logins() == logins + 1
        # fsync@openssh.com was accepted by OpenSSH, so writes are durable on the server.
        assert drop._fsync_supported
    assert drop._transport is None  # closed on leaving the block
    assert len(list((disk / RECEIPTS).iterdir())) == 5


def test_sftp_reconnects_after_the_connection_dies(sftp_server: SftpServer) -> None:
    base, _ = sftp_server.new_base()
    with sftp_drop(sftp_server, base) as drop:
        drop.ensure_layout()
        assert drop._transport is not None
        drop._transport.close()  # as if the server or a firewall dropped an idle connection
        assert drop.write_atomic(RECEIVED, MESSAGE_NAME, b"x")


def test_sftp_missing_base_path_is_permanent(sftp_server: SftpServer) -> None:
    with sftp_drop(sftp_server, "/drop/finns-inte") as drop:
        with pytest.raises(DropUnavailable) as caught:
            drop.ensure_layout()
    assert caught.value.permanent


def test_sftp_permission_denied_is_permanent(sftp_server: SftpServer) -> None:
    # The chroot root is root-owned: the SFTP user may look but not write.
    with sftp_drop(sftp_server, "/") as drop:
        with pytest.raises(DropError) as caught:
            drop.ensure_layout()
    assert caught.value.permanent


def test_sftp_hung_session_times_out_as_transient_and_reconnects(
    sftp_server: SftpServer,
) -> None:
    base, _ = sftp_server.new_base()
    with sftp_drop(sftp_server, base, read_timeout=0.5) as drop:
        drop.ensure_layout()
        frozen = sftp_server.session_pids()
        assert frozen
        for pid in frozen:  # the server side of our session stops answering
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DropUnavailable) as caught:
                drop.list_files(RECEIVED)
            assert time.monotonic() - started < 3.0
            assert not caught.value.permanent
            assert drop._transport is None  # the stuck connection was dropped
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert drop.list_files(RECEIVED) == []  # a fresh connection
