"""Finding, at start, a confinement mode that works on this machine, proven by a probe run.

A mode "works" only if a real run under it shows what the sandbox promises: the program is not
root, holds no capability, has no-new-privs and a seccomp filter, sees only its own processes,
no network device but loopback and no /etc/shadow. Anything less (bwrap missing, user namespaces disabled, no
writable cgroup tree, no mount capability) and the mode is rejected with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from executor.launcher import Limits
from executor.sandbox.bwrap import INIT, MODES, ReadOnlyTree
from executor.sandbox.cgroups import CgroupTree
from executor.sandbox.confined import SandboxLauncher
from executor.sandbox.slots import SlotPool


class SandboxUnavailable(RuntimeError):
    """No confinement mode works here; untrusted code must not run."""


_PROBE_SCRIPT = (
    'grep -E "^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status;'
    ' echo "pid1: $(cat /proc/1/comm)";'
    ' echo "netdevs: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" " ")";'
    ' test -e /etc/shadow && echo "shadow: visible"; true'
)
_PROBE_LIMITS = Limits(wall_time_ms=10_000, cpu_time_ms=5_000, memory_mb=64)


def detect(
    requested: str, work_root: Path, read_only_trees: Sequence[ReadOnlyTree] = (), *, warm_runtimes: bool = True
) -> SandboxLauncher:
    """The first mode of `requested` ("auto": all, most confined first) whose probe passes."""
    modes = MODES if requested == "auto" else (requested,)
    if requested != "auto" and requested not in MODES:
        raise SandboxUnavailable(f"unknown sandbox mode {requested!r}; known: auto, {', '.join(MODES)}")
    try:
        cgroups = CgroupTree.discover()
    except (OSError, RuntimeError) as exc:
        raise SandboxUnavailable(f"no usable cgroup tree: {exc}") from exc
    failures = []
    for mode in modes:
        launcher = SandboxLauncher(
            mode,
            work_root,
            cgroups=cgroups,
            slots=SlotPool(),
            read_only_trees=read_only_trees,
            warm_runtimes=warm_runtimes,
        )
        try:
            problem = _probe(launcher)
        except (OSError, RuntimeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            launcher.sweep_leftovers()
            launcher.prepare_ahead()
            return launcher
        failures.append(f"{mode}: {problem}")
    raise SandboxUnavailable("no sandbox mode works here: " + "; ".join(failures))


def _probe(launcher: SandboxLauncher) -> str | None:
    """What is wrong with a probe run under the launcher; None when it is confined as promised."""
    with launcher.workspace() as workdir:
        outcome = launcher.run(
            ["/bin/sh", "-c", _PROBE_SCRIPT], workdir=workdir, env={"PATH": "/usr/bin:/bin"}, limits=_PROBE_LIMITS
        )
    report = outcome.stdout.decode(errors="replace")
    if outcome.exit_code != 0:
        return f"probe exited {outcome.exit_code} (signal {outcome.signal}): {outcome.stderr.decode(errors='replace')}"
    facts = dict(line.split(":", 1) for line in report.splitlines() if ":" in line)
    facts = {key: value.split() for key, value in facts.items()}
    expected = {
        "Uid": lambda v: "0" not in v,
        "CapEff": lambda v: v == ["0000000000000000"],
        "CapBnd": lambda v: v == ["0000000000000000"],
        "NoNewPrivs": lambda v: v == ["1"],
        "Seccomp": lambda v: v == ["2"],  # a filter (executor/sandbox/seccomp.py) is loaded
        "pid1": lambda v: v == [Path(INIT).name],  # its own pid namespace, with our init (init.c) as pid 1
        "netdevs": lambda v: v in ([], ["lo"]),
    }
    wrong = [key for key, holds in expected.items() if key not in facts or not holds(facts[key])]
    if "shadow" in facts:
        wrong.append("shadow")
    return f"not confined ({', '.join(wrong)}): {report!r}" if wrong else None
