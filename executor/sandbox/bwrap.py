"""The bubblewrap command line: what a run can see, and who it is.

Two modes, both ending with the program as the slot's uid, no capability, no-new-privs:

- "bwrap-userns": bwrap runs as the slot uid (switched by setpriv in front of it) and builds the
  sandbox in a new user namespace, which maps only that uid; no process of the run ever holds a
  capability on the host.
- "bwrap-root-capdrop": for hosts without unprivileged user namespaces. bwrap runs as root
  without a user namespace, keeps only what setpriv needs to switch to the slot uid, and setpriv
  then drops the rest. Without that switch the program would be real root (SANDBOX.md).

The file system is built from nothing: read-only binds of /usr and the few /etc entries the
eight runtimes need (measured: linker cache, Debian alternatives, the JDK's and PHP's config),
a fresh /proc and minimal /dev, small private tmpfs /tmp and /dev/shm, and the work dir bound
read-write at the same absolute path as on the host (the language table's {workdir} relies on
it). Everything else, /etc/passwd and /etc/shadow included, does not exist inside.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
_SH = "/bin/sh"
USERNS = "bwrap-userns"
ROOT_CAPDROP = "bwrap-root-capdrop"
MODES = (USERNS, ROOT_CAPDROP)

TMP_BYTES = 16 * 1024 * 1024
_MERGED_USR_LINKS = ("/bin", "/lib", "/lib64", "/sbin")
_ETC_ENTRIES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/java-17-openjdk", "/etc/php")


def sandbox_argv(
    mode: str, command: Sequence[str], *, workdir: Path, env: Mapping[str, str], uid: int, info_fd: int
) -> list[str]:
    """The full argv that runs command confined, from a root process that already joined the cgroup.

    bwrap writes the host pid of the sandbox's init to info_fd as JSON ({"child-pid": N}).
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
    if mode == USERNS:
        # --disable-userns: the program cannot nest a user namespace to regain (namespaced) capabilities.
        isolation = ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        return [
            *drop_to_uid,
            BWRAP,
            *isolation,
            *_common(workdir, env, info_fd),
            "--chdir",
            str(workdir),
            "--",
            *command,
        ]
    if mode == ROOT_CAPDROP:
        isolation = ["--cap-drop", "ALL"]
        for needed in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):  # for setpriv's switch, then gone
            isolation += ["--cap-add", needed]
        # Root without CAP_DAC_OVERRIDE cannot enter the slot's 0700 work dir: change into it as the slot uid.
        enter_workdir = [_SH, "-c", 'cd -- "$0" && unset OLDPWD && exec "$@"', str(workdir)]
        return [BWRAP, *isolation, *_common(workdir, env, info_fd), "--", *drop_to_uid, *enter_workdir, *command]
    raise ValueError(f"unknown sandbox mode {mode!r}")


def _common(workdir: Path, env: Mapping[str, str], info_fd: int) -> list[str]:
    argv = [
        "--info-fd",
        str(info_fd),
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
    for link in _MERGED_USR_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    # Root-mode bwrap would create /etc 0700, hiding the entries below from the slot uid.
    argv += ["--perms", "0755", "--dir", "/etc"]
    for entry in _ETC_ENTRIES:
        argv += ["--ro-bind-try", entry, entry]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for tmp in ("/tmp", "/dev/shm"):
        argv += ["--size", str(TMP_BYTES), "--perms", "1777", "--tmpfs", tmp]
    # bwrap would create the work dir's missing parents 0700 as root in the root-capdrop mode.
    for parent in reversed(workdir.parents[:-1]):
        if str(parent) not in ("/tmp", "/dev/shm"):
            argv += ["--perms", "0711", "--dir", str(parent)]
    argv += ["--bind", str(workdir), str(workdir), "--remount-ro", "/", "--clearenv"]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    return argv
