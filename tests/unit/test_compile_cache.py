"""The compile cache on real files: key derivation, the entry format, atomic stores, eviction,
and refusing whatever a sandboxed compile could plant in its work dir."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from common.config import ConfigError
from common.languages import by_name, detect_version
from executor import compile_cache
from executor.compile_cache import Artifact, CompileCache, NotCacheable, UnsafeCacheDir, cache_key
from executor.settings import ExecutorConfig

C = by_name("c")
JAVA = by_name("java")
assert C is not None and JAVA is not None
SOURCE = C.template_code.encode()
MIB = 1024 * 1024


@pytest.fixture
def cache(tmp_path: Path) -> CompileCache:
    return CompileCache(tmp_path / "cache", 64 * MIB)


def workdir_with(tmp_path: Path, name: str = "work", **files: bytes) -> Path:
    workdir = tmp_path / name
    workdir.mkdir(mode=0o700)
    for file_name, data in files.items():
        (workdir / file_name).write_bytes(data)
    return workdir


def entries(cache: CompileCache) -> list[str]:
    return sorted(name for name in os.listdir(cache.root) if compile_cache.is_key(name))


# --- keys ---


def test_the_same_compile_has_the_same_key() -> None:
    assert cache_key(C, "12.2.0", SOURCE) == cache_key(C, "12.2.0", bytes(SOURCE))
    assert compile_cache.is_key(cache_key(C, "12.2.0", SOURCE))


@pytest.mark.parametrize("position", [0, len(SOURCE) // 2, len(SOURCE) - 1])
def test_a_one_byte_change_of_the_source_changes_the_key(position: int) -> None:
    changed = bytearray(SOURCE)
    changed[position] ^= 0x01
    assert cache_key(C, "12.2.0", bytes(changed)) != cache_key(C, "12.2.0", SOURCE)
    assert cache_key(C, "12.2.0", SOURCE + b"\n") != cache_key(C, "12.2.0", SOURCE)


def test_another_toolchain_version_changes_the_key() -> None:
    assert cache_key(C, "12.2.0", SOURCE) != cache_key(C, "12.2.1", SOURCE)


@pytest.mark.parametrize(
    "change",
    [
        {"compile": ("gcc", "-O0", "-pipe", "-std=gnu17", "-o", "main", "main.c", "-lm")},
        {"compile": ("gcc", "-O2", "-pipe", "-std=gnu17", "-o", "main", "main.c")},
        {"env": {"CFLAGS": "-g"}},
        {"name": "cpp"},
        {"file_name": "other.c"},
        {"artifacts": ("main", "*.o")},
    ],
)
def test_other_flags_env_language_or_artifacts_change_the_key(change: dict[str, object]) -> None:
    assert cache_key(dataclasses.replace(C, **change), "12.2.0", SOURCE) != cache_key(C, "12.2.0", SOURCE)


def test_the_key_uses_the_installed_toolchain_version(cache: CompileCache) -> None:
    version = detect_version(C)
    assert version != "unavailable"
    assert cache.key_for(C, SOURCE) == cache_key(C, version, SOURCE)
    python = by_name("python")
    assert python is not None and cache.key_for(python, b"print(1)") is None  # nothing to compile


# --- store and load ---


def test_a_stored_build_is_placed_into_a_new_work_dir(tmp_path: Path, cache: CompileCache) -> None:
    compiled = workdir_with(tmp_path, "compiled", **{"main.c": SOURCE, "main": b"\x7fELF binary"})
    (compiled / "main").chmod(0o775)
    key = cache_key(C, "1", SOURCE)
    assert cache.store(key, compiled, C.artifacts)
    assert entries(cache) == [key]
    assert stat.S_IMODE(os.stat(cache.root / key).st_mode) == 0o600

    fresh = workdir_with(tmp_path, "fresh")
    os.chown(fresh, 60123, 60123)  # as a slot's tmpfs is
    assert cache.load(key, fresh)
    placed = os.stat(fresh / "main")
    assert (fresh / "main").read_bytes() == b"\x7fELF binary"
    assert (stat.S_IMODE(placed.st_mode), placed.st_uid, placed.st_gid) == (0o755, 60123, 60123)
    assert sorted(os.listdir(fresh)) == ["main"]  # only the artifacts, nothing else of the old work dir


def test_all_declared_artifacts_and_only_those_are_kept(tmp_path: Path, cache: CompileCache) -> None:
    compiled = workdir_with(
        tmp_path, **{"Main.java": b"src", "Main.class": b"m", "Main$1.class": b"inner", "notes.txt": b"no"}
    )
    key = cache_key(JAVA, "17", b"src")
    assert cache.store(key, compiled, JAVA.artifacts)
    fresh = workdir_with(tmp_path, "fresh")
    assert cache.load(key, fresh)
    assert sorted(os.listdir(fresh)) == ["Main$1.class", "Main.class"]
    assert (fresh / "Main$1.class").read_bytes() == b"inner"
    assert stat.S_IMODE(os.stat(fresh / "Main.class").st_mode) == 0o644


def test_an_unknown_key_is_a_miss_and_places_nothing(tmp_path: Path, cache: CompileCache) -> None:
    fresh = workdir_with(tmp_path, "fresh")
    assert not cache.load(cache_key(C, "1", SOURCE), fresh)
    assert os.listdir(fresh) == []


def test_a_compile_without_its_artifacts_is_not_cached(tmp_path: Path, cache: CompileCache) -> None:
    assert not cache.store(cache_key(C, "1", SOURCE), workdir_with(tmp_path, **{"main.c": SOURCE}), C.artifacts)
    assert entries(cache) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_entry_is_a_miss_and_is_dropped(tmp_path: Path, cache: CompileCache, damage: str) -> None:
    key = cache_key(C, "1", SOURCE)
    assert cache.store(key, workdir_with(tmp_path, main=b"x" * 1000), C.artifacts)
    blob = bytearray((cache.root / key).read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]  # what a crash before the data reached the disk leaves
    elif damage == "flip":
        blob[-1] ^= 0xFF
    else:
        blob = bytearray(b"not an entry")
    (cache.root / key).write_bytes(bytes(blob))
    fresh = workdir_with(tmp_path, "fresh")
    assert not cache.load(key, fresh)
    assert os.listdir(fresh) == []
    assert entries(cache) == []


def test_an_entry_whose_header_names_a_path_is_refused() -> None:
    evil = compile_cache.encode([Artifact("../escape", 0o755, b"x")])
    with pytest.raises(compile_cache.CorruptEntry):
        compile_cache.decode(evil)


def _store_repeatedly(root: str, key: str, size: int, rounds: int) -> None:
    cache = CompileCache(Path(root), 512 * MIB)
    for round_ in range(rounds):
        workdir = Path(root).parent / f"w-{os.getpid()}-{round_}"
        workdir.mkdir()
        # Every writer stores a different, self-consistent build: a reader must see one whole.
        (workdir / "main").write_bytes(bytes([round_ % 251 + 1]) * size)
        assert cache.store(key, workdir, ("main",))


def test_concurrent_stores_never_show_a_half_written_entry(tmp_path: Path, cache: CompileCache) -> None:
    key = cache_key(C, "1", SOURCE)
    size = 4 * MIB
    writers = [
        multiprocessing.get_context("fork").Process(target=_store_repeatedly, args=(str(cache.root), key, size, 8))
        for _ in range(3)
    ]
    for writer in writers:
        writer.start()
    hits = attempt = 0
    # Read for as long as anyone writes (forked writers may start late on a loaded machine).
    while attempt < 200 or any(writer.is_alive() for writer in writers):
        fresh = workdir_with(tmp_path, f"read-{attempt}")
        if cache.load(key, fresh):
            data = (fresh / "main").read_bytes()
            assert len(data) == size and data == data[:1] * size
            hits += 1
        attempt += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert hits > 0
    assert entries(cache) == [key]
    assert [name for name in os.listdir(cache.root) if name.startswith(compile_cache.TEMP_PREFIX)] == []


# --- what a sandboxed compile could plant ---


def test_a_symlink_to_a_host_file_is_not_cached(tmp_path: Path, cache: CompileCache) -> None:
    compiled = workdir_with(tmp_path)
    (compiled / "main").symlink_to("/etc/shadow")
    assert not cache.store(cache_key(C, "1", SOURCE), compiled, C.artifacts)
    assert entries(cache) == []
    with pytest.raises(NotCacheable, match="not a regular file"):
        compile_cache.collect(compiled, C.artifacts)


def test_a_symlink_among_java_classes_spoils_the_whole_build(tmp_path: Path, cache: CompileCache) -> None:
    compiled = workdir_with(tmp_path, **{"Main.class": b"m"})
    (compiled / "Secret.class").symlink_to(compiled / "Main.class")
    assert not cache.store(cache_key(JAVA, "17", b"src"), compiled, JAVA.artifacts)
    assert entries(cache) == []


def test_a_hard_link_is_not_cached(tmp_path: Path, cache: CompileCache) -> None:
    compiled = workdir_with(tmp_path, other=b"someone else's")
    os.link(compiled / "other", compiled / "main")
    with pytest.raises(NotCacheable, match="links"):
        compile_cache.collect(compiled, C.artifacts)
    assert not cache.store(cache_key(C, "1", SOURCE), compiled, C.artifacts)


@pytest.mark.parametrize("kind", ["char-device", "fifo", "directory"])
def test_a_device_fifo_or_directory_is_not_cached(tmp_path: Path, cache: CompileCache, kind: str) -> None:
    compiled = workdir_with(tmp_path)
    if kind == "char-device":
        os.mknod(compiled / "main", 0o666 | stat.S_IFCHR, os.makedev(1, 8))  # /dev/random's numbers
    elif kind == "fifo":
        os.mkfifo(compiled / "main")  # opening it to read would block for ever
    else:
        (compiled / "main").mkdir()
    started = time.monotonic()
    assert not cache.store(cache_key(C, "1", SOURCE), compiled, C.artifacts)
    assert time.monotonic() - started < 1
    assert entries(cache) == []


def test_an_oversized_artifact_is_not_cached(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path / "cache", 1 * MIB)
    compiled = workdir_with(tmp_path, main=b"x" * (MIB + 1))
    assert not cache.store(cache_key(C, "1", SOURCE), compiled, C.artifacts)
    assert entries(cache) == []
    compiled_ok = workdir_with(tmp_path, "ok", main=b"x" * (MIB // 2))
    assert cache.store(cache_key(C, "1", SOURCE), compiled_ok, C.artifacts)


def test_artifacts_are_bounded_together_not_only_each(tmp_path: Path) -> None:
    compiled = workdir_with(tmp_path, **{f"C{i}.class": b"x" * (MIB // 2) for i in range(3)})
    with pytest.raises(NotCacheable, match="size bound"):
        compile_cache.collect(compiled, JAVA.artifacts, max_bytes=MIB)


def test_too_many_artifacts_are_not_cached(tmp_path: Path) -> None:
    compiled = workdir_with(tmp_path, **{f"C{i}.class": b"x" for i in range(compile_cache.MAX_FILES + 1)})
    with pytest.raises(NotCacheable, match="more than"):
        compile_cache.collect(compiled, JAVA.artifacts)


def test_placing_never_writes_through_something_already_there(tmp_path: Path, cache: CompileCache) -> None:
    key = cache_key(C, "1", SOURCE)
    assert cache.store(key, workdir_with(tmp_path, main=b"binary"), C.artifacts)
    target = tmp_path / "target"
    target.write_bytes(b"untouched")
    fresh = workdir_with(tmp_path, "fresh")
    (fresh / "main").symlink_to(target)
    assert not cache.load(key, fresh)
    assert target.read_bytes() == b"untouched"


# --- eviction ---


def _store_sized(cache: CompileCache, tmp_path: Path, label: str, size: int, mtime: float) -> str:
    key = cache_key(C, "1", label.encode())
    assert cache.store(key, workdir_with(tmp_path, label, main=b"x" * size), C.artifacts)
    os.utime(cache.root / key, (mtime, mtime))
    return key


def test_the_least_recently_used_entries_are_evicted_over_the_budget(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path / "cache", 1 * MIB)
    now = time.time()
    keys = [_store_sized(cache, tmp_path, f"e{i}", 300 * 1024, now - 1000 + i) for i in range(3)]
    # The oldest one is used now: a hit renews it.
    assert cache.load(keys[0], workdir_with(tmp_path, "hit"))
    newest = _store_sized(cache, tmp_path, "e3", 300 * 1024, now)
    left = entries(cache)
    assert sum(os.stat(cache.root / key).st_size for key in left) <= cache.budget_bytes
    assert keys[1] not in left  # the least recently used
    assert keys[0] in left and newest in left


def test_stores_do_not_scan_the_directory_each_time(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path / "cache", 64 * MIB)
    _store_sized(cache, tmp_path, "first", 1024, time.time())  # the first store of a process scans once
    # An entry another executor wrote: unseen until a rescan, which small stores do not trigger.
    (cache.root / ("f" * 64)).write_bytes(b"x" * (100 * MIB))
    for i in range(10):
        _store_sized(cache, tmp_path, f"small{i}", 1024, time.time())
    assert ("f" * 64) in entries(cache)
    # Once this process has stored budget/16, it rescans, sees the total over the budget and evicts.
    _store_sized(cache, tmp_path, "big", 5 * MIB, time.time())
    assert ("f" * 64) not in entries(cache)


def test_a_dead_writers_temp_file_is_swept(tmp_path: Path, cache: CompileCache) -> None:
    stale = cache.root / f"{compile_cache.TEMP_PREFIX}dead"
    stale.write_bytes(b"half")
    old = time.time() - compile_cache.STALE_TEMP_S - 1
    os.utime(stale, (old, old))
    fresh_temp = cache.root / f"{compile_cache.TEMP_PREFIX}live"
    fresh_temp.write_bytes(b"being written")
    cache.evict()
    assert not stale.exists() and fresh_temp.exists()


# --- the directory ---


def test_the_cache_dir_is_root_only(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o755)
    CompileCache(root, MIB)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700


def test_a_cache_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    os.chown(root, 60123, 60123)
    with pytest.raises(UnsafeCacheDir, match="planted"):
        CompileCache(root, MIB)


def test_a_symlinked_cache_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "cache").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeCacheDir, match="not a directory"):
        CompileCache(tmp_path / "cache", MIB)


def test_a_cache_dir_under_a_shared_writable_dir_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeCacheDir, match="writable by others"):
        CompileCache(shared / "cache", MIB)


def test_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LCE_WORK_ROOT", str(tmp_path / "runs"))
    config = ExecutorConfig.from_env()
    assert (config.compile_cache_dir, config.compile_cache_mb) == (Path("/var/cache/lce/compile"), 512)
    monkeypatch.setenv("LCE_COMPILE_CACHE_MB", "0")
    assert CompileCache.from_config(ExecutorConfig.from_env()) is None
    monkeypatch.setenv("LCE_COMPILE_CACHE_MB", "-1")
    with pytest.raises(ConfigError):
        ExecutorConfig.from_env()


@pytest.mark.parametrize("inside", ["runs/cache", "runs", "."])
def test_the_cache_dir_must_be_outside_the_work_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, inside: str
) -> None:
    monkeypatch.setenv("LCE_WORK_ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("LCE_COMPILE_CACHE_DIR", str(tmp_path / inside))
    with pytest.raises(ConfigError, match="outside"):
        ExecutorConfig.from_env()
