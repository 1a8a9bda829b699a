"""The compile cache: what a successful compile left in the work dir, kept by content.

A key is the sha256 of everything a compile's output depends on: the language, the installed
toolchain's version, the compile command and environment as the language table declares them,
the artifacts it declares, the full source, and every other file of the program (name and
content, compiled or not: a header counts). The same key therefore means the same compile,
whoever asked for it; one user can only ever fill the entry of their own exact program, with
what compiling that program produces.

Why no user can poison it:
- Artifacts are copied out right after a successful compile stage and before the run stage:
  the compile's processes are all dead by then (Launcher.run), and the user's program, which
  could rewrite its work dir, has not started yet.
- The work dir belongs to the sandbox's uid, so anything in it may be planted: only files
  matching the language's declared artifacts are taken, each reached and opened without
  following links and kept only if it is a regular file with one link and of bounded size;
  anything else means "do not cache".
- The store is a directory only the executor's user can reach (0700), outside every work dir,
  so no sandbox sees it; its ancestors must not be writable by others, so no one can swap it.
- Entries are written to a temp file and renamed into place: a reader sees a whole entry or
  none, also when several executors on the host share the directory. Each entry carries a
  digest of its contents; a damaged one (a crash before the data reached the disk) is a miss.

Only successful compiles are cached. A failed one may have failed for a reason other than the
source (its time or memory limit on a loaded host), and a user who sees a compile error edits
the source rather than resubmitting it unchanged, so caching failures would buy little and
could pin a transient failure on a source.

The size is bounded by evicting the least recently used entries (by mtime, which a hit renews)
once the known total passes the budget; the directory is scanned at the first store of a
process and then only every budget/16 bytes of stores or when the budget is passed, never on
a hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from common.job import SourceFile
from common.languages import LANGUAGES, Language, detect_version, matches
from executor.compile_aids import current_trees
from executor.packages import installed_sets
from executor.settings import ExecutorConfig

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"LCE-COMPILE-CACHE-1\n"
MIB = 1024 * 1024
MAX_ENTRY_BYTES = 64 * MIB  # the largest file a run may write (Limits.max_file_bytes)
MAX_FILES = 256
MAX_FOLDERS = 256  # searched for artifacts of "**/" patterns
_DIGEST_BYTES = 32
_LENGTH_BYTES = 4
TEMP_PREFIX = ".tmp-"
# A temp file this old belongs to a writer that died mid-store.
STALE_TEMP_S = 600
# A hit renews its entry's mtime (the LRU clock) at most this often: not one write per run.
TOUCH_AFTER_S = 60
EVICT_TO_SHARE = 0.9
RESCAN_SHARE = 16
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
EXECUTABLE = 0o755
PLAIN = 0o644


class NotCacheable(Exception):
    """What the compile left must not be (or need not be) cached; the run goes on without it."""


class CorruptEntry(Exception):
    """A cache entry that is not what this module writes."""


class UnsafeCacheDir(Exception):
    """The cache directory could be written by someone other than the executor."""


@dataclass(frozen=True)
class Artifact:
    """A file of a work dir: a compile's artifact, or one of the program's own files (executor/jobs.py)."""

    name: str  # relative to the work dir: "main", "util/Helper.class"
    mode: int  # EXECUTABLE or PLAIN
    data: bytes


def cache_key(
    language: Language,
    toolchain_version: str,
    source: bytes,
    files: Sequence[SourceFile] = (),
    libraries: str = "",
    aids: str = "",
) -> str:
    """The content address of one compile: equal keys mean the same compile of the same program.

    `libraries` is the digest of the language's installed library set (executor/packages.py), if any;
    `aids` the digest of its compile aids (executor/compile_aids.py), if any: the compile reads both."""
    declared: dict[str, object] = {
        "format": FORMAT,
        "machine": os.uname().machine,
        "language": language.name,
        "toolchain_version": toolchain_version,
        "file_name": language.file_name,
        # As it runs: a program without files has the command, and so the key, it had before files.
        "compile": list(language.compile_command(file.name for file in files)),
        "env": language.env,
        "artifacts": list(language.artifacts),
    }
    if libraries:
        declared["libraries"] = libraries
    if aids:
        declared["aids"] = aids
    if files:
        # Inside the length-prefixed header, so no source can pass for a shorter one plus files.
        declared["files"] = sorted([file.name, hashlib.sha256(file.content.encode()).hexdigest()] for file in files)
    header = json.dumps(declared, sort_keys=True).encode()
    digest = hashlib.sha256(len(header).to_bytes(8, "big"))
    digest.update(header)
    digest.update(source)
    return digest.hexdigest()


def is_key(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def is_relative_path(name: object) -> bool:
    """A path that stays in the work dir as long as no link is followed: no root, no "" "." ".." segment."""
    return isinstance(name, str) and "\0" not in name and all(s not in ("", ".", "..") for s in name.split("/"))


def _open_folder(dir_fd: int, folder: str, owner: os.stat_result | None = None) -> int:
    """An fd of a folder below dir_fd ("" is dir_fd's own), reached without following any link;
    with owner, missing folders are made, owned like it (as a compile would have made them)."""
    fd = os.dup(dir_fd)
    try:
        for segment in filter(None, folder.split("/")):
            if owner is not None:
                with suppress(FileExistsError):
                    os.mkdir(segment, 0o755, dir_fd=fd)
            inner = os.open(segment, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
            if owner is not None:
                os.fchown(fd, owner.st_uid, owner.st_gid)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --- taking artifacts out of a work dir the sandbox controls ---


def collect(workdir: Path, patterns: Sequence[str], max_bytes: int = MAX_ENTRY_BYTES) -> tuple[Artifact, ...]:
    """The declared artifacts of a finished compile; NotCacheable when any is not a plain, bounded file."""
    dir_fd = os.open(workdir, _DIR_FLAGS)
    try:
        names = _matching_files(dir_fd, patterns)
        if not names:
            raise NotCacheable("the compile left none of its declared artifacts")
        if len(names) > MAX_FILES:
            raise NotCacheable(f"{len(names)} artifacts, more than {MAX_FILES}")
        artifacts: list[Artifact] = []
        room = max_bytes
        for name in names:
            artifact = _read_regular(dir_fd, name, room)
            room -= len(artifact.data)
            artifacts.append(artifact)
        return tuple(artifacts)
    finally:
        os.close(dir_fd)


def _matching_files(dir_fd: int, patterns: Sequence[str]) -> list[str]:
    """The work dir's paths that match, sorted; sub-folders (never a link) are searched only for "**/" patterns."""
    deep = any(pattern.startswith("**/") for pattern in patterns)
    found: list[str] = []
    folders, searched = [""], 0
    while folders:
        folder = folders.pop()
        searched += 1
        if searched > MAX_FOLDERS:
            raise NotCacheable(f"more than {MAX_FOLDERS} folders to search for artifacts")
        fd = _open_folder(dir_fd, folder)
        try:
            with os.scandir(fd) as listing:
                for entry in listing:
                    path = f"{folder}{entry.name}"
                    if deep and entry.is_dir(follow_symlinks=False):
                        folders.append(f"{path}/")
                    elif matches(path, patterns):
                        found.append(path)
        finally:
            os.close(fd)
    return sorted(found)


def _read_regular(dir_fd: int, name: str, max_bytes: int) -> Artifact:
    folder, _, leaf = name.rpartition("/")
    try:
        parent = _open_folder(dir_fd, folder)
    except OSError as exc:
        raise NotCacheable(f"{folder}: {exc.strerror}") from exc
    try:
        # lstat first: a device or FIFO is refused before open() could run a driver or block.
        before = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        _check_plain(name, before, max_bytes)
        try:
            fd = os.open(leaf, _READ_FLAGS, dir_fd=parent)  # O_NOFOLLOW: a link swapped in since fails (ELOOP)
        except OSError as exc:
            raise NotCacheable(f"{name}: {exc.strerror}") from exc
    finally:
        os.close(parent)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise NotCacheable(f"{name} was replaced while it was read")
        _check_plain(name, opened, max_bytes)
        data = _read_exactly(fd, opened.st_size)
    finally:
        os.close(fd)
    mode = EXECUTABLE if opened.st_mode & stat.S_IXUSR else PLAIN
    return Artifact(name, mode, data)


def _check_plain(name: str, info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise NotCacheable(f"{name} is not a regular file")
    # A hard link could name a file of someone else's (on a work dir that is not its own file system).
    if info.st_nlink != 1:
        raise NotCacheable(f"{name} has {info.st_nlink} links")
    if info.st_size > max_bytes:
        raise NotCacheable(f"{name} is over the cache's size bound")


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size + 1  # one byte more than expected reveals a file that grew
    while left > 0:
        chunk = os.read(fd, min(left, MIB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) != size:
        raise NotCacheable("an artifact changed size while it was read")
    return data


# --- putting artifacts into a fresh work dir ---


def place(artifacts: Sequence[Artifact], workdir: Path) -> None:
    """Writes the files into the work dir, folders made as needed, owned like the work dir (the slot uid),
    as a compile would have. A name that could leave the work dir is refused before anything is written."""
    unsafe = [artifact.name for artifact in artifacts if not is_relative_path(artifact.name)]
    if unsafe:
        raise ValueError(f"not paths inside the work dir: {unsafe}")
    dir_fd = os.open(workdir, _DIR_FLAGS)
    written: list[str] = []
    try:
        owner = os.fstat(dir_fd)
        for artifact in artifacts:
            folder, _, leaf = artifact.name.rpartition("/")
            parent = _open_folder(dir_fd, folder, owner)
            try:
                # O_EXCL | O_NOFOLLOW: never write through anything already there.
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(leaf, flags, 0o600, dir_fd=parent)
            finally:
                os.close(parent)
            written.append(artifact.name)
            try:
                _write_all(fd, artifact.data)
                os.fchown(fd, owner.st_uid, owner.st_gid)
                os.fchmod(fd, artifact.mode)
            finally:
                os.close(fd)
    except BaseException:
        # A half-placed build must not meet the compile that now runs instead.
        for name in written:
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
        raise
    finally:
        os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- the entry format: MAGIC, sha256 of the body, body = header length, JSON header, contents ---


def encode(artifacts: Sequence[Artifact]) -> bytes:
    header = json.dumps([[a.name, a.mode, len(a.data)] for a in artifacts]).encode()
    body = len(header).to_bytes(_LENGTH_BYTES, "big") + header + b"".join(a.data for a in artifacts)
    return MAGIC + hashlib.sha256(body).digest() + body


def decode(blob: bytes) -> tuple[Artifact, ...]:
    if not blob.startswith(MAGIC):
        raise CorruptEntry("not a compile cache entry")
    digest, body = blob[len(MAGIC) : len(MAGIC) + _DIGEST_BYTES], blob[len(MAGIC) + _DIGEST_BYTES :]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptEntry("the entry's digest does not match its contents")
    length = int.from_bytes(body[:_LENGTH_BYTES], "big")
    try:
        header = json.loads(body[_LENGTH_BYTES : _LENGTH_BYTES + length])
    except ValueError as exc:
        raise CorruptEntry("unreadable header") from exc
    payload = memoryview(body)[_LENGTH_BYTES + length :]
    artifacts: list[Artifact] = []
    offset = 0
    for name, mode, size in header:
        if not is_relative_path(name):
            raise CorruptEntry(f"unsafe artifact name {name!r}")
        if mode not in (EXECUTABLE, PLAIN):
            raise CorruptEntry(f"unexpected mode {mode!r}")
        if not isinstance(size, int) or size < 0:
            raise CorruptEntry(f"unexpected size {size!r}")
        artifacts.append(Artifact(name, mode, bytes(payload[offset : offset + size])))
        offset += size
    if offset != len(payload):
        raise CorruptEntry("the header does not account for the contents")
    return tuple(artifacts)


# --- the store ---


def prepare_root(root: Path) -> None:
    """Creates the cache dir 0700, refusing one that someone else could write or swap."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeCacheDir(f"{root} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeCacheDir(f"{root} belongs to uid {info.st_uid}, not to this executor: it may hold planted entries")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(root, 0o700)
    for parent in root.resolve().parents:
        _check_ancestor(parent)


def _check_ancestor(path: Path) -> None:
    info = os.stat(path)
    shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    # In a writable, non-sticky directory anyone could rename the cache away and put theirs in.
    if shared and not info.st_mode & stat.S_ISVTX:
        raise UnsafeCacheDir(f"{path} is writable by others: the cache dir beneath it could be replaced")
    if info.st_uid not in (0, os.geteuid()):
        raise UnsafeCacheDir(f"{path} belongs to uid {info.st_uid}")


class CompileCache:
    def __init__(
        self,
        root: Path,
        budget_bytes: int,
        libraries: Mapping[str, str] | None = None,
        aids: Mapping[str, str] | None = None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError("a compile cache needs a positive size budget")
        prepare_root(root)
        self.root = root
        self.budget_bytes = budget_bytes
        # Each language's installed library set digest: a compile may read those libraries.
        self.libraries = dict(libraries or {})
        # Each language's compile aids digest, for the same reason.
        self.aids = dict(aids or {})
        self.max_entry_bytes = min(MAX_ENTRY_BYTES, budget_bytes)
        self._known_bytes: int | None = None  # the total at the last scan plus this process's stores since
        self._stored_since_scan = 0

    @classmethod
    def from_config(cls, config: ExecutorConfig) -> CompileCache | None:
        """The executor's cache, or None (compile every time) when it is off or its directory is unsafe."""
        if config.compile_cache_mb == 0:
            log.info("compile cache off (LCE_COMPILE_CACHE_MB=0)")
            return None
        try:
            libraries = {name: found.digest for name, found in installed_sets(config.packages_dir).items()}
            aids = {name: digest for name, (digest, _) in current_trees(config.compile_aids_dir).items()}
            cache = cls(config.compile_cache_dir, config.compile_cache_mb * MIB, libraries, aids)
        except (OSError, UnsafeCacheDir) as exc:
            log.error("compile cache off: %s", exc)
            return None
        cache.warm()
        log.info("compile cache", extra={"dir": str(cache.root), "budget_mb": config.compile_cache_mb})
        return cache

    @staticmethod
    def warm() -> None:
        """Asks each compiler its version now, so the first job of each language does not wait for it."""
        for language in LANGUAGES:
            if language.compile and language.artifacts:
                detect_version(language)

    def key_for(self, language: Language, source: bytes, files: Sequence[SourceFile] = ()) -> str | None:
        """The entry's key, or None when this language's compiles are not cacheable here."""
        if not language.compile or not language.artifacts:
            return None
        version = detect_version(language)
        if version == "unavailable":
            return None
        name = language.name
        return cache_key(language, version, source, files, self.libraries.get(name, ""), self.aids.get(name, ""))

    def load(self, key: str, workdir: Path) -> bool:
        """Places a cached build into the work dir; False on a miss (or any trouble: then compile)."""
        try:
            blob = self._read_entry(key)
            if blob is None:
                return False
            try:
                artifacts = decode(blob)
            except (CorruptEntry, ValueError, TypeError) as exc:
                log.warning("dropping a damaged compile cache entry", extra={"key": key, "error": str(exc)})
                with suppress(FileNotFoundError):
                    os.unlink(self.root / key)
                return False
            place(artifacts, workdir)
            return True
        except OSError:
            log.exception("compile cache lookup failed; compiling instead", extra={"key": key})
            return False

    def store(self, key: str, workdir: Path, patterns: Sequence[str]) -> bool:
        """Keeps the artifacts of a successful compile; False when they are not cacheable (or any trouble)."""
        try:
            artifacts = collect(workdir, patterns, self.max_entry_bytes)
        except NotCacheable as exc:
            log.warning("not caching this compile", extra={"key": key, "why": str(exc)})
            return False
        except OSError:
            log.exception("could not read the compile's artifacts", extra={"key": key})
            return False
        blob = encode(artifacts)
        try:
            self._write_entry(key, blob)
            self._account(len(blob))
        except OSError:
            log.exception("could not store a compile cache entry", extra={"key": key})
            return False
        return True

    def _read_entry(self, key: str) -> bytes | None:
        if not is_key(key):
            raise ValueError(f"not a cache key: {key!r}")
        try:
            fd = os.open(self.root / key, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > self.max_entry_bytes + MIB:
                raise OSError(f"{self.root / key} is not an entry of this cache")
            blob = _read_all(fd, info.st_size)
            if time.time() - info.st_mtime > TOUCH_AFTER_S:
                os.utime(fd)  # the LRU clock: a used entry is the last to be evicted
            return blob
        finally:
            os.close(fd)

    def _write_entry(self, key: str, blob: bytes) -> None:
        # A temp name in the same directory, then rename(2): atomic, so no reader (in this or
        # another executor) ever opens a half-written entry. No fsync: a torn entry after a
        # crash fails its digest and is a miss.
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.root)
        try:
            try:
                _write_all(fd, blob)
            finally:
                os.close(fd)
            os.replace(temp, self.root / key)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def _account(self, stored: int) -> None:
        self._stored_since_scan += stored
        if self._known_bytes is not None:
            self._known_bytes += stored
        # Other executors' stores are unseen between scans: rescan now and then, not only when full.
        if (
            self._known_bytes is None
            or self._known_bytes > self.budget_bytes
            or self._stored_since_scan >= self.budget_bytes // RESCAN_SHARE
        ):
            self._known_bytes = self.evict()
            self._stored_since_scan = 0

    def evict(self) -> int:
        """Removes the least recently used entries until the total is under the budget; returns the total."""
        entries = self._scan()
        total = sum(size for _, size, _ in entries)
        if total <= self.budget_bytes:
            return total
        target = int(self.budget_bytes * EVICT_TO_SHARE)
        for _, size, name in sorted(entries):
            if total <= target:
                break
            with suppress(FileNotFoundError):
                os.unlink(self.root / name)
            total -= size
        log.info("compile cache evicted", extra={"total_bytes": total})
        return total

    def _scan(self) -> list[tuple[float, int, str]]:
        """(mtime, size, name) of each entry; removes the temp files of writers that died."""
        now = time.time()
        entries: list[tuple[float, int, str]] = []
        with os.scandir(self.root) as listing:
            for entry in listing:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if entry.name.startswith(TEMP_PREFIX):
                    if now - info.st_mtime > STALE_TEMP_S:
                        with suppress(FileNotFoundError):
                            os.unlink(entry.path)
                elif is_key(entry.name) and stat.S_ISREG(info.st_mode):
                    entries.append((info.st_mtime, info.st_size, entry.name))
        return entries


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.read(fd, max(size, 1)):
        chunks.append(chunk)
    return b"".join(chunks)
