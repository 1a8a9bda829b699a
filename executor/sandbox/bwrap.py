"""The bubblewrap command line: what a run can see, and who it is.

Two modes, both ending with the program as the slot's uid, no capability, no-new-privs:

- "bwrap-userns": bwrap runs as the slot uid (switched by setpriv in front of it) and builds the
  sandbox in a new user namespace, which maps only that uid; no process of the run ever holds a
  capability on the host.
- "bwrap-root-capdrop": for hosts without unprivileged user namespaces. bwrap runs as root
  without a user namespace, keeps only what setpriv needs to switch to the slot uid, and setpriv
  then drops the rest. Without that switch the program would be real root (SANDBOX.md).

In both, pid 1 is our own init (init.c), as the slot uid and out of the program's reach: how the
program ended is what it tells, never bwrap's exit code.

The file system is built from nothing: read-only binds of /usr (its /usr/local hidden), the
few /etc entries the eight runtimes need (measured: linker cache, Debian alternatives, the JDK's and PHP's config)
and the declared libraries' and compile aids' trees (executor/packages.py, compile_aids.py), a fresh
/proc and minimal /dev, small private tmpfs /tmp and /dev/shm, and the work dir bound read-write at
the same absolute path as on the host (the language table's {workdir} relies on it). Everything else,
/etc/passwd and /etc/shadow included, does not exist inside.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BWRAP = "/usr/bin/bwrap"


@dataclass(frozen=True)
class ReadOnlyTree:
    """A host directory every sandbox sees read-only at `inside` (the declared libraries: executor/packages.py)."""

    host: Path
    inside: str


SETPRIV = "/usr/bin/setpriv"
_SH = "/bin/sh"
# Where the sandbox sees its init (init.c); its basename is pid 1's process name.
INIT = "/lce-init"
USERNS = "bwrap-userns"
ROOT_CAPDROP = "bwrap-root-capdrop"
MODES = (USERNS, ROOT_CAPDROP)

TMP_BYTES = 16 * 1024 * 1024
_MERGED_USR_LINKS = ("/bin", "/lib", "/lib64", "/sbin")
_HOST_LOCAL = "/usr/local"
_ETC_ENTRIES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/java-17-openjdk", "/etc/php")
_ULIMIT_BLOCK = 512
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# /proc entries no program needs, masked as container runtimes do (Docker's and podman's lists and
# more): they describe the host (boot line, kernel build, symbols and modules, memory, devices,
# interrupts, timers), show other uids' keys, or control the machine. Files become /dev/null, as runc
# masks them: reads are empty, writes discarded (bound with --dev-bind: a read-only bind is also nodev,
# and opening the device would fail). Directories become empty and read-only. Entries this kernel
# lacks are left out: bwrap cannot create them in /proc.
_MASKED_PROC_FILES = (
    "cmdline",
    "config.gz",
    "kallsyms",
    "modules",
    "kcore",
    "kmsg",
    "keys",
    "key-users",
    "meminfo",
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "slabinfo",
    "vmallocinfo",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "iomem",
    "ioports",
    "interrupts",
    "softirqs",
    "devices",
    "partitions",
    "diskstats",
    "swaps",
    "dma",
    "mtrr",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "latency_stats",
    "sysrq-trigger",
)
_MASKED_PROC_DIRS = ("acpi", "asound", "bus", "driver", "fs", "irq", "scsi")
# The waiting shell ($0: the work dir). Root without CAP_DAC_OVERRIDE (root-capdrop mode) could not
# enter the slot's 0700 work dir, so the shell changes into it as the slot uid; dash then exports PWD
# (kept: the program sees its work dir, as bwrap --chdir would show it) and OLDPWD (dropped). It reads
# the script, one line (command_script), from its stdin with the builtin read (opening /dev/stdin, a
# root-owned pipe, is refused to the slot uid) and runs it; the program execed there reads the rest
# of that pipe as its own stdin. $nl stands for a newline inside the script's quoted words.
WAITING_SHELL = 'cd -- "$0" && unset OLDPWD && nl=\'\n\' && IFS= read -r script && eval "$script"'


def sandbox_argv(
    mode: str,
    *,
    workdir: Path,
    uid: int,
    info_fd: int,
    seccomp_fd: int,
    init: Path,
    status_fd: int,
    read_only_trees: Sequence[ReadOnlyTree] = (),
) -> list[str]:
    """The argv of a sandbox that waits for its command, from a root process that already joined the cgroup.

    Everything is set up before the command is known: namespaces, mounts, the slot uid. Inside,
    a shell changes into the work dir and waits for `command_script` on its stdin. bwrap writes
    the host pid of the sandbox's init to info_fd as JSON ({"child-pid": N}). It reads the seccomp
    filter from seccomp_fd (executor/sandbox/seccomp.py) and loads it just before it execs the
    command (in the root-capdrop mode: setpriv, which needs none of the syscalls it denies).

    pid 1 is our own init (`init`, built from init.c, bound read-only), started as the slot uid
    with the shell as its child; bwrap adds no init of its own (--as-pid-1). Only the init holds
    status_fd: it writes there the shell's wait status, which is the program's (the shell execs it).
    """
    drop_to_uid = [
        SETPRIV,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]
    own_init = ["--ro-bind", str(init), INIT, "--as-pid-1"]
    wait_for_command = [INIT, str(status_fd), _SH, "-c", WAITING_SHELL, str(workdir)]
    sandbox = _common(workdir, info_fd, seccomp_fd, read_only_trees)
    if mode == USERNS:
        # --disable-userns: the program cannot nest a user namespace to regain (namespaced) capabilities.
        isolation = ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        return [*drop_to_uid, BWRAP, *isolation, *own_init, *sandbox, "--", *wait_for_command]
    if mode == ROOT_CAPDROP:
        isolation = ["--cap-drop", "ALL"]
        for needed in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):  # for setpriv's switch, then gone
            isolation += ["--cap-add", needed]
        return [BWRAP, *isolation, *own_init, *sandbox, "--", *drop_to_uid, *wait_for_command]
    raise ValueError(f"unknown sandbox mode {mode!r}")


def command_script(
    command: Sequence[str], env: Mapping[str, str], *, cpu_seconds: int | None, file_bytes: int | None
) -> bytes:
    """What the waiting sandbox's shell runs: the rlimits, exactly env, then exec of command.

    The rlimits are set here, inside, because they belong to the job and the sandbox was started
    before it; lowering them needs no privilege. A warm start (warm.py) runs this before its job is
    known: it leaves the CPU and file size limits (None) to its release. The script is one line, so
    the shell reads it in time linear in its length and nothing in an argument can end it early: a
    newline in a quoted word is written as "$nl". What follows the line is the program's stdin (the
    shell's `read` takes one byte at a time from a pipe, so it leaves the rest to the program).
    """
    bad = [name for name in env if not _ENV_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"not environment variable names: {bad}")
    if any("\0" in word for word in (*command, *env.values())):
        raise ValueError("a NUL cannot reach a program's argv or environment")
    steps = ["ulimit -c 0"]
    if cpu_seconds is not None:
        steps.append(f"ulimit -t {cpu_seconds}")
    if file_bytes is not None:
        steps.append(f"ulimit -f {file_size_limit(file_bytes) // _ULIMIT_BLOCK}")
    if env:
        steps.append("export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items()))
    steps.append("exec " + " ".join(shlex.quote(arg) for arg in command))
    # Newlines appear only inside single-quoted words: close the quote, expand $nl, reopen it.
    return (" && ".join(steps).replace("\n", "'\"$nl\"'") + "\n").encode()


def file_size_limit(file_bytes: int) -> int:
    """RLIMIT_FSIZE as the command script sets it: dash's ulimit -f counts 512-byte blocks."""
    return math.ceil(file_bytes / _ULIMIT_BLOCK) * _ULIMIT_BLOCK


def _common(workdir: Path, info_fd: int, seccomp_fd: int, read_only_trees: Sequence[ReadOnlyTree]) -> list[str]:
    argv = [
        "--info-fd",
        str(info_fd),
        "--seccomp",
        str(seccomp_fd),
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",  # no controlling terminal to inject input into (TIOCSTI)
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    if os.path.isdir(_HOST_LOCAL):
        # The host's own installs (in the container image: the services' Python and their packages)
        # are no toolchain's: an empty, read-only directory stands in for them.
        argv += _empty_read_only_dir(_HOST_LOCAL)
    for link in _MERGED_USR_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    # Root-mode bwrap would create /etc 0700, hiding the entries below from the slot uid.
    argv += ["--perms", "0755", "--dir", "/etc"]
    for entry in _ETC_ENTRIES:
        argv += ["--ro-bind-try", entry, entry]
    argv += _read_only_trees(read_only_trees)
    argv += ["--proc", "/proc", *_proc_masks(), "--dev", "/dev"]
    for tmp in ("/tmp", "/dev/shm"):
        argv += ["--size", str(TMP_BYTES), "--perms", "1777", "--tmpfs", tmp]
    # bwrap would create the work dir's missing parents 0700 as root in the root-capdrop mode.
    for parent in reversed(workdir.parents[:-1]):
        if str(parent) not in ("/tmp", "/dev/shm"):
            argv += ["--perms", "0711", "--dir", str(parent)]
    # The shell gets no environment: the command's is exactly what command_script exports.
    argv += ["--bind", str(workdir), str(workdir), "--remount-ro", "/", "--clearenv"]
    return argv


def _read_only_trees(trees: Sequence[ReadOnlyTree]) -> list[str]:
    argv = []
    made: set[str] = set()
    for tree in trees:
        # Parents made 0755 first: root-mode bwrap would create them 0700.
        for parent in reversed(Path(tree.inside).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", str(tree.host), tree.inside]
    return argv


def _proc_masks() -> list[str]:
    """Empty stand-ins over the _MASKED_PROC_ entries this kernel has (the host's /proc shows the same ones)."""
    argv = []
    for name in _MASKED_PROC_FILES:
        if os.path.exists(f"/proc/{name}"):
            argv += ["--dev-bind", "/dev/null", f"/proc/{name}"]
    for name in _MASKED_PROC_DIRS:
        if os.path.isdir(f"/proc/{name}"):
            argv += _empty_read_only_dir(f"/proc/{name}")
    return argv


def _empty_read_only_dir(path: str) -> list[str]:
    return ["--size", "4096", "--perms", "0755", "--tmpfs", path, "--remount-ro", path]
