"""The kernel-enforced sandbox: bubblewrap namespaces, a cgroup and a tmpfs work dir per run.

`select_launcher` is the executor's one entry point: it finds a confinement mode that works on
this machine (detect), or refuses to run untrusted code unless the unconfined development
override is set. Modules: bwrap (the command line), cgroups (v1 and v2 limits, metrics, kill),
workspace (the tmpfs work dir), slots (a uid per concurrent execution), prespawn (one stage's
sandbox, spawned before its command), warm (its interpreter started before the program),
prepared (the next execution, made ready on a thread), confined (the launcher), detect (the start-up probe).
"""

from __future__ import annotations

import logging
from pathlib import Path

from executor import compile_aids, packages
from executor.launcher import Launcher
from executor.process import UnconfinedLauncher
from executor.sandbox.bwrap import ReadOnlyTree
from executor.sandbox.detect import SandboxUnavailable, detect
from executor.settings import ExecutorConfig

__all__ = ["SandboxUnavailable", "select_launcher"]

log = logging.getLogger(__name__)


def library_trees(packages_dir: Path) -> list[ReadOnlyTree]:
    """The declared libraries' current trees, each shown read-only at its language's folder in every sandbox."""
    stale = packages.stale_or_missing(packages_dir, packages.declared_sets())
    if stale:
        log.warning(
            "declared libraries not installed (runs go without them); run python -m executor.packages install",
            extra={"languages": stale, "packages_dir": str(packages_dir)},
        )
    return [ReadOnlyTree(found.tree, found.sandbox_path) for found in packages.installed_sets(packages_dir).values()]


def aid_trees(aids_dir: Path) -> list[ReadOnlyTree]:
    """The compile aids that match today's toolchains, each shown read-only at its language's folder."""
    current = compile_aids.current_trees(aids_dir)
    missing = sorted(set(compile_aids.BUILDERS) - set(current))
    if missing:
        log.warning(
            "compile aids not built (those compiles are slower); run python -m executor.compile_aids install",
            extra={"languages": missing, "compile_aids_dir": str(aids_dir)},
        )
    return [ReadOnlyTree(tree, compile_aids.tree_in_sandbox(name)) for name, (_, tree) in current.items()]


def select_launcher(config: ExecutorConfig) -> Launcher:
    """The launcher every compile and run goes through; raises SandboxUnavailable when none is safe."""
    if config.sandbox_mode != "none":
        try:
            launcher = detect(
                config.sandbox_mode,
                config.work_root,
                [*library_trees(config.packages_dir), *aid_trees(config.compile_aids_dir)],
                warm_runtimes=config.warm_runtimes,
            )
        except SandboxUnavailable as exc:
            if not config.allow_unconfined:
                raise
            log.critical("%s; running UNCONFINED because LCE_SANDBOX_ALLOW_UNCONFINED is set", exc)
        else:
            log.info("sandbox mode %s", launcher.mode)
            return launcher
    elif not config.allow_unconfined:
        raise SandboxUnavailable("LCE_SANDBOX=none needs LCE_SANDBOX_ALLOW_UNCONFINED=1 (development only)")
    log.critical(
        "UNCONFINED EXECUTION: user code runs as a plain child of the executor, with its network, "
        "files and privileges. Development only; never expose this executor to untrusted users."
    )
    return UnconfinedLauncher(config.work_root)
