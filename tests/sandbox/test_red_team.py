"""One test per probe of issue 3, run through the sandboxed launcher directly (real processes).

Every probe asserts the terminal state of the run and, where the run starts processes, that
none of the slot's uid is left afterwards. Bounds are generous: the machine is noisy.
Network probes only ever target loopback, or a documentation address that must fail as
unreachable before any packet is sent.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from common.languages import LANGUAGES, TOOLCHAIN_PATH, Language
from executor.launcher import LimitExceeded, Limits, StageOutcome
from executor.process import UnconfinedLauncher
from executor.sandbox import SandboxUnavailable, select_launcher, workspace
from executor.sandbox.bwrap import INIT
from executor.sandbox.confined import WORKSPACE_BYTES, SandboxLauncher
from executor.sandbox.detect import detect
from executor.sandbox.prespawn import cgroup_name, slot_of_cgroup
from executor.settings import ExecutorConfig
from tests.c_programs import ENDING_C, PID_1_PROBE_C

ENV = {"PATH": TOOLCHAIN_PATH}
LIMITS = Limits(wall_time_ms=5000, cpu_time_ms=3000, memory_mb=256)
COMPILE_LIMITS = Limits(wall_time_ms=30_000, cpu_time_ms=30_000, memory_mb=1024)


@pytest.fixture(scope="module")
def work_root() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is 0700 root, which the slot uids could not traverse.
    root = Path(f"/tmp/lce-redteam-{uuid.uuid4().hex[:8]}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def launcher(work_root: Path) -> Iterator[SandboxLauncher]:
    # LCE_SANDBOX picks the mode under test ("auto": the one the executor would pick here).
    launcher = detect(ExecutorConfig.from_env().sandbox_mode, work_root)
    yield launcher
    launcher.close()


def processes_of(uid: int) -> list[int]:
    """The live processes of a uid. A zombie is not one: it runs nothing and holds nothing but its pid,
    and the kernel reaps those of a torn-down pid namespace on its own, a moment later under load."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and _state(entry) != "Z":
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def _state(process: Path) -> str:
    # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces, so split after its ")".
    return (process / "stat").read_text().rsplit(")", 1)[1].split()[0]


class Sandboxed:
    """One execution: a workspace, files in it, runs in it, and the slot uid to look for leftovers."""

    def __init__(self, launcher: SandboxLauncher, workdir: Path) -> None:
        self.launcher = launcher
        self.workdir = workdir
        self.uid = workdir.stat().st_uid
        self.elapsed_s = 0.0

    def write(self, name: str, text: str) -> None:
        (self.workdir / name).write_text(text)
        os.chown(self.workdir / name, self.uid, self.uid)

    def run(self, argv: list[str], limits: Limits = LIMITS, env: Mapping[str, str] = ENV) -> StageOutcome:
        started = time.monotonic()
        outcome = self.launcher.run(argv, workdir=self.workdir, env=env, limits=limits)
        self.elapsed_s = time.monotonic() - started
        assert processes_of(self.uid) == [], "a process of the run survived it"
        return outcome

    def python(self, source: str, limits: Limits = LIMITS) -> StageOutcome:
        self.write("main.py", source)
        return self.run(["python3", "-B", "main.py"], limits)

    def c(self, source: str, limits: Limits = LIMITS, flags: tuple[str, ...] = ()) -> StageOutcome:
        self.build_c(source, flags)
        return self.run(["./main"], limits)

    def build_c(self, source: str, flags: tuple[str, ...] = ()) -> None:
        """Compiles source into ./main."""
        self.write("main.c", source)
        built = self.run(["gcc", "-O1", "-o", "main", "main.c", *flags], COMPILE_LIMITS)
        assert built.exit_code == 0, built.stderr


@pytest.fixture
def box(launcher: SandboxLauncher) -> Iterator[Sandboxed]:
    with launcher.workspace() as workdir:
        yield Sandboxed(launcher, workdir)


def lines(outcome: StageOutcome) -> list[str]:
    return outcome.stdout.decode().splitlines()


# --- network -------------------------------------------------------------------------------------

CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("connected")
except OSError as exc:
    print("failed", exc.errno)
"""


@pytest.mark.parametrize("port", [6379, 5432, 8080], ids=["redis", "postgres", "gateway"])
def test_tcp_to_loopback_services_fails(box: Sandboxed, port: int) -> None:
    box.write("main.py", CONNECT)
    outcome = box.run(["python3", "-B", "main.py", str(port)])
    assert lines(outcome) == [f"failed {errno.ECONNREFUSED}"]


def test_tcp_to_a_port_listening_on_the_host_loopback_fails(box: Sandboxed) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from the host
        box.write("main.py", CONNECT)
        outcome = box.run(["python3", "-B", "main.py", str(port)])
    assert lines(outcome) == [f"failed {errno.ECONNREFUSED}"]


def test_no_route_beyond_loopback(box: Sandboxed) -> None:
    # connect() on UDP only picks a route: it fails before any packet could leave.
    outcome = box.python(
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n"
        "    s.connect(('192.0.2.1', 9))\n"
        "    print('routed')\n"
        "except OSError as exc:\n"
        "    print('failed', exc.errno)\n"
        "print(open('/proc/net/dev').read().count(':'))\n"
    )
    assert lines(outcome) == [f"failed {errno.ENETUNREACH}", "1"]  # one device: loopback


# --- files ---------------------------------------------------------------------------------------


def test_etc_shadow_is_not_there(box: Sandboxed) -> None:
    outcome = box.run(["cat", "/etc/shadow"])
    assert outcome.exit_code != 0
    assert outcome.stdout == b""
    assert b"No such file" in outcome.stderr


def test_proc_1_environ_holds_no_service_secret(box: Sandboxed, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"postgresql://lce:{uuid.uuid4().hex}@127.0.0.1/lce"
    monkeypatch.setenv("LCE_DATABASE_URL", secret)
    outcome = box.run(["sh", "-c", "cat /proc/1/comm; cat /proc/*/environ | tr '\\0' '\\n'"])
    assert lines(outcome)[0] == Path(INIT).name  # pid 1 is the sandbox's own init, not the host's
    assert secret.encode() not in outcome.stdout
    assert b"LCE_" not in outcome.stdout


def test_the_hosts_own_installs_under_usr_local_are_hidden(box: Sandboxed) -> None:
    # The host's /usr/local holds its own tools (here CUDA and docker; in the image, the services' Python).
    probe = "ls -A /usr/local 2>/dev/null | wc -l; touch /usr/local/x 2>/dev/null || echo refused"
    outcome = box.run(["sh", "-c", probe])
    assert lines(outcome) == ["0", "refused"]


@pytest.mark.parametrize("directory", ["/", "/usr", "/usr/local", "/etc"])
def test_system_is_read_only(box: Sandboxed, directory: str) -> None:
    name = f"lce-probe-{uuid.uuid4().hex}"
    outcome = box.python(
        f"try:\n    open('{directory.rstrip('/')}/{name}', 'w')\n    print('written')\n"
        "except OSError as exc:\n    print('failed', exc.errno)\n"
    )
    assert lines(outcome)[0] in (f"failed {errno.EROFS}", f"failed {errno.EACCES}")
    assert not (Path(directory) / name).exists()


def test_host_tmp_is_invisible(box: Sandboxed) -> None:
    marker = Path(f"/tmp/lce-marker-{uuid.uuid4().hex}")
    marker.write_text("host secret")
    marker.chmod(0o644)
    try:
        outcome = box.run(["sh", "-c", f"ls -a /tmp; cat {marker}"])
    finally:
        marker.unlink()
    assert marker.name.encode() not in outcome.stdout
    assert b"host secret" not in outcome.stdout
    # Only the path down to the work dir exists in the sandbox's own /tmp.
    assert set(lines(outcome)) == {".", "..", box.workdir.parent.name}


def test_file_left_by_one_run_is_not_visible_to_the_next(launcher: SandboxLauncher) -> None:
    leave = "echo left > left.txt && echo left > /tmp/left.txt && echo left > /dev/shm/left.txt"
    with launcher.workspace() as workdir:
        first = Sandboxed(launcher, workdir)
        assert first.run(["sh", "-c", leave]).exit_code == 0
        # Within one execution the work dir is shared (compile, then run); /tmp is not.
        outcome = first.run(["sh", "-c", "cat left.txt; ls -A /tmp /dev/shm"])
        assert lines(outcome) == ["left", "/dev/shm:", "", "/tmp:", workdir.parent.name]
    with launcher.workspace() as workdir:
        outcome = Sandboxed(launcher, workdir).run(["sh", "-c", "ls -A . /dev/shm; ls -A /tmp/*/*"])
    assert outcome.stdout == b".:\n\n/dev/shm:\n"  # nothing left, and only this run's work dir under /tmp


def test_work_dir_root_is_closed_to_other_slots(box: Sandboxed) -> None:
    assert box.workdir.stat().st_mode & 0o777 == 0o700
    assert box.workdir.parent.stat().st_mode & 0o777 == 0o711


# --- environment and processes -------------------------------------------------------------------


def test_environment_is_exactly_what_the_run_was_given(box: Sandboxed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCE_DATABASE_URL", "postgresql://lce:hunter2@127.0.0.1/lce")
    outcome = box.run(["env"], env={"PATH": TOOLCHAIN_PATH, "GIVEN": "yes"})
    variables = dict(line.split("=", 1) for line in lines(outcome))
    assert b"hunter2" not in outcome.stdout
    # bwrap adds PWD (the work dir) after changing into it; nothing else reaches the program.
    assert variables == {"PATH": TOOLCHAIN_PATH, "GIVEN": "yes", "PWD": str(box.workdir)}


def test_only_the_runs_own_processes_are_visible(box: Sandboxed) -> None:
    outcome = box.python("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n")
    assert lines(outcome) == ["[1, 2]"]  # the sandbox's init and the program


def test_kill_minus_one_hurts_only_the_run(box: Sandboxed) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        # kill(-1) spares the caller itself: the run's own background sleep is the proof that it hit.
        outcome = box.run(["sh", "-c", "sleep 30 & kill -9 -1; wait $!; echo sleep ended $?"])
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    assert lines(outcome) == [f"sleep ended {128 + signal.SIGKILL}"]
    assert box.elapsed_s < 10


def test_python_fork_bomb_is_contained(box: Sandboxed) -> None:
    outcome = box.python(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        Limits(wall_time_ms=2000, cpu_time_ms=10_000, memory_mb=256, max_processes=32),
    )
    assert outcome.limit_exceeded in (LimitExceeded.WALL_TIME, LimitExceeded.CPU_TIME)
    assert box.elapsed_s < 15


def test_c_fork_bomb_is_contained(box: Sandboxed) -> None:
    outcome = box.c(
        "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n",
        Limits(wall_time_ms=2000, cpu_time_ms=10_000, memory_mb=256, max_processes=32),
    )
    assert outcome.limit_exceeded in (LimitExceeded.WALL_TIME, LimitExceeded.CPU_TIME)
    assert box.elapsed_s < 15


# --- seccomp (executor/sandbox/seccomp.py) -------------------------------------------------------

SYSCALL = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(number, *args):
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(arg) for arg in args))
    print(number, result, ctypes.get_errno() if result == -1 else 0, flush=True)
"""
# x86_64 syscall numbers
ADD_KEY, KEYCTL, IO_URING_SETUP, UNSHARE, CLONE = 248, 250, 425, 272, 56
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
KEYCTL_JOIN_SESSION_KEYRING, KEY_SPEC_USER_KEYRING = 1, -4


def test_kernel_keyring_is_denied(box: Sandboxed) -> None:
    # The user keyring (@u) belongs to the slot uid, not the run: it would carry data to the next run.
    outcome = box.python(
        SYSCALL
        + "key_type, description, payload = b'user\\0', b'lce-left\\0', b'secret'\n"
        + f"call({ADD_KEY}, ctypes.cast(key_type, ctypes.c_void_p).value,"
        " ctypes.cast(description, ctypes.c_void_p).value,"
        f" ctypes.cast(payload, ctypes.c_void_p).value, len(payload), {KEY_SPEC_USER_KEYRING})\n"
        + f"call({KEYCTL}, {KEYCTL_JOIN_SESSION_KEYRING}, 0)\n"
    )
    assert lines(outcome) == [f"{ADD_KEY} -1 {errno.EPERM}", f"{KEYCTL} -1 {errno.EPERM}"]


def test_io_uring_is_denied(box: Sandboxed) -> None:
    outcome = box.python(
        SYSCALL + f"params = ctypes.create_string_buffer(120)\ncall({IO_URING_SETUP}, 1, ctypes.addressof(params))\n"
    )
    assert lines(outcome) == [f"{IO_URING_SETUP} -1 {errno.EPERM}"]


def test_new_namespaces_are_denied(box: Sandboxed) -> None:
    # clone with a namespace flag is refused before a child exists; clone3 hides its flags, so it is ENOSYS.
    outcome = box.python(
        SYSCALL
        + f"call({UNSHARE}, {CLONE_NEWUSER})\ncall({UNSHARE}, {CLONE_NEWNET})\n"
        + f"call({CLONE}, {CLONE_NEWUSER} | 17, 0, 0, 0, 0)\n"
        + "call(435, 0, 0)\n"
        + "print(open('/proc/self/status').read().count('Seccomp:\\t2'))\n"
    )
    assert lines(outcome) == [
        f"{UNSHARE} -1 {errno.EPERM}",
        f"{UNSHARE} -1 {errno.EPERM}",
        f"{CLONE} -1 {errno.EPERM}",
        f"435 -1 {errno.ENOSYS}",
        "1",
    ]


def test_32_bit_syscall_abi_is_killed(box: Sandboxed) -> None:
    # int 0x80 enters the i386 ABI, which the filter does not list: libseccomp's bad-arch action kills.
    outcome = box.c(
        "#include <stdio.h>\n"
        "int main(void) {\n"
        '    puts("before"); fflush(stdout);\n'
        '    long pid; __asm__ volatile ("int $0x80" : "=a"(pid) : "a"(20L) : "memory");\n'
        '    printf("after %ld\\n", pid);\n'
        "}\n"
    )
    assert lines(outcome) == ["before"]
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGSYS)


def test_x32_syscall_abi_is_killed(box: Sandboxed) -> None:
    # x32 numbers (bit 30 set) come in under the x86_64 architecture; libseccomp treats them as a bad arch too.
    outcome = box.python(SYSCALL + "print('before', flush=True)\ncall(0x40000000 + 39)\n")
    assert lines(outcome) == ["before"]
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGSYS)


# --- limits --------------------------------------------------------------------------------------


def test_2_gib_allocation_under_128_mb_is_a_memory_kill(box: Sandboxed) -> None:
    outcome = box.python(
        "x = bytearray(b'x') * (2 << 30)\nprint('allocated')\n",
        Limits(wall_time_ms=10_000, cpu_time_ms=10_000, memory_mb=128),
    )
    assert outcome.limit_exceeded == LimitExceeded.MEMORY
    assert outcome.stdout == b""
    assert outcome.memory_kb <= 128 * 1024


def test_1_gib_file_is_stopped_at_the_file_size_limit(box: Sandboxed) -> None:
    limits = Limits(wall_time_ms=20_000, cpu_time_ms=20_000, memory_mb=256, max_file_bytes=16 * 1024 * 1024)
    outcome = box.python(
        "chunk = b'x' * (1 << 20)\nwith open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(chunk)\n",
        limits,
    )
    assert outcome.exit_code != 0
    assert b"File too large" in outcome.stderr  # Python ignores SIGXFSZ, so it sees EFBIG
    assert (box.workdir / "big").stat().st_size <= limits.max_file_bytes


def test_many_files_cannot_outgrow_the_work_dir(box: Sandboxed) -> None:
    outcome = box.python(
        "import os\nchunk = b'x' * (1 << 20)\nn = 0\n"
        "try:\n    while True:\n        with open(f'f{n}', 'wb') as f:\n            f.write(chunk)\n        n += 1\n"
        "except OSError as exc:\n    print('failed', exc.errno, n)\n",
        Limits(wall_time_ms=20_000, cpu_time_ms=20_000, memory_mb=512),
    )
    failed, code, count = lines(outcome)[0].split()
    assert (failed, int(code)) == ("failed", errno.ENOSPC)
    assert int(count) * (1 << 20) <= WORKSPACE_BYTES
    assert shutil.disk_usage(box.workdir).total <= WORKSPACE_BYTES


def test_100_mb_stdout_flood_is_cut_at_the_output_cap(box: Sandboxed) -> None:
    limits = Limits(wall_time_ms=20_000, cpu_time_ms=20_000, memory_mb=256, output_limit_bytes=64 * 1024)
    outcome = box.python(
        "import sys\nchunk = b'y' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.buffer.write(chunk)\n", limits
    )
    assert outcome.limit_exceeded == LimitExceeded.OUTPUT
    assert outcome.stdout_truncated
    assert outcome.stdout == b"y" * limits.output_limit_bytes
    assert box.elapsed_s < 5


def test_sleep_past_the_wall_limit_with_a_setsid_child_leaves_nothing(box: Sandboxed) -> None:
    outcome = box.python(
        "import os, subprocess, time\n"
        "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
        "os.setsid()\n"
        "time.sleep(1000)\n",
        Limits(wall_time_ms=1000, cpu_time_ms=5000, memory_mb=256),
    )
    assert outcome.limit_exceeded == LimitExceeded.WALL_TIME
    assert 1 <= box.elapsed_s < 10  # Sandboxed.run also asserted no process of the slot uid is left


def test_busy_loop_in_4_threads_hits_the_cpu_limit(box: Sandboxed) -> None:
    outcome = box.c(
        "#include <pthread.h>\n"
        "static void *spin(void *arg) { for (volatile unsigned long i = 0;; i++) {} return arg; }\n"
        "int main(void) {\n"
        "    pthread_t t[4];\n"
        "    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, spin, 0);\n"
        "    pthread_join(t[0], 0);\n"
        "}\n",
        Limits(wall_time_ms=20_000, cpu_time_ms=1000, memory_mb=256),
        flags=("-pthread",),
    )
    assert outcome.limit_exceeded == LimitExceeded.CPU_TIME
    assert outcome.cpu_time_ms >= 1000
    assert box.elapsed_s < 5  # well before the 20 s wall limit


def test_leftovers_of_a_killed_executor_are_swept(launcher: SandboxLauncher) -> None:
    slot = launcher.slots.acquire()
    workdir = workspace.create(launcher.work_root, slot.uid, 1024 * 1024)
    group = launcher.cgroups.create(cgroup_name(slot.uid, 0))
    group.limit(memory_bytes=64 << 20, max_processes=8)
    joins = " && ".join(f"echo 0 > {path}" for path in group.join_files)
    survivor = subprocess.Popen(["sh", "-c", f"{joins} && echo in && exec setsid sleep 60"], stdout=subprocess.PIPE)
    assert survivor.stdout is not None and survivor.stdout.readline() == b"in\n"
    launcher.slots.release(slot)  # the executor died: its lock is gone, its run is not
    try:
        launcher.sweep_leftovers()
        assert survivor.wait(timeout=10) == -signal.SIGKILL
    finally:
        survivor.kill()
        survivor.wait()
        survivor.stdout.close()
    assert cgroup_name(slot.uid, 0) not in launcher.cgroups.names()
    assert not workdir.exists()


def compile_before_a_run(box: Sandboxed, source: str) -> StageOutcome:
    """Compiles main.c as an execution's first stage, telling the launcher its run follows."""
    box.write("main.c", source)
    return box.launcher.run(
        ["gcc", "-O1", "-o", "main", "main.c"],
        workdir=box.workdir,
        env=ENV,
        limits=COMPILE_LIMITS,
        another_stage_follows=True,
    )


def cgroups_of(launcher: SandboxLauncher, uid: int) -> list[str]:
    return [name for name in launcher.cgroups.names() if slot_of_cgroup(name) == uid]


def test_a_compile_sets_up_the_sandbox_of_the_run_that_follows(launcher: SandboxLauncher, box: Sandboxed) -> None:
    built = compile_before_a_run(box, '#include <stdio.h>\nint main(void) { puts("Hello World"); return 0; }\n')
    assert built.exit_code == 0, built.stderr
    # The compile's cgroup is gone; the run's, spawned while the compile ran, waits.
    assert cgroups_of(launcher, box.uid) == [cgroup_name(box.uid, 1)]
    ran = box.run(["./main"])
    assert (ran.exit_code, ran.stdout) == (0, b"Hello World\n")
    assert cgroups_of(launcher, box.uid) == []


def test_a_compile_runs_when_the_next_sandbox_cannot_be_set_up_ahead(
    launcher: SandboxLauncher, box: Sandboxed, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn = launcher._spawn
    failed: list[int] = []

    def no_second_sandbox_once(execution: Any, workdir: Path) -> Any:
        # The execution's second sandbox is the one spawned ahead during the compile.
        if execution.stages == 1 and not failed:
            failed.append(1)
            raise OSError(errno.EAGAIN, "fork: no more processes")
        return spawn(execution, workdir)

    monkeypatch.setattr(launcher, "_spawn", no_second_sandbox_once)
    built = compile_before_a_run(box, '#include <stdio.h>\nint main(void) { puts("Hello World"); return 0; }\n')
    assert built.exit_code == 0, built.stderr
    ran = box.run(["./main"])  # spawns its own sandbox
    assert (ran.exit_code, ran.stdout, failed) == (0, b"Hello World\n", [1])


def test_the_waiting_sandbox_of_a_failed_compile_goes_with_the_workspace(launcher: SandboxLauncher) -> None:
    with launcher.workspace() as workdir:
        box = Sandboxed(launcher, workdir)
        built = compile_before_a_run(box, "int main( {\n")
        assert built.exit_code != 0
        assert cgroups_of(launcher, box.uid) == [cgroup_name(box.uid, 1)]
    assert cgroups_of(launcher, box.uid) == []
    assert processes_of(box.uid) == []
    assert not workdir.exists()


# --- languages under their default limits ---------------------------------------------------------


def _limits_for(language: Language) -> Limits:
    return Limits(wall_time_ms=10_000, cpu_time_ms=10_000, memory_mb=language.default_memory_mb)


def _run_language(box: Sandboxed, language: Language, source: str) -> StageOutcome:
    memory_mb = language.default_memory_mb
    fill = {"workdir": str(box.workdir), "heap_mb": str(memory_mb * 3 // 4)}
    env = {**ENV, **{name: value.format(**fill) for name, value in language.env.items()}}
    box.write(language.file_name, source)
    if language.compile:
        built = box.run([part.format(**fill) for part in language.compile_command(())], COMPILE_LIMITS, env)
        assert built.exit_code == 0, built.stderr
    return box.run([part.format(**fill) for part in language.run], _limits_for(language), env)


@pytest.mark.parametrize("language", LANGUAGES, ids=[language.name for language in LANGUAGES])
def test_template_compiles_and_runs(box: Sandboxed, language: Language) -> None:
    outcome = _run_language(box, language, language.template_code)
    assert (outcome.exit_code, outcome.limit_exceeded) == (0, None), outcome.stderr
    assert outcome.stdout == b"Hello World\n"
    assert 0 < outcome.memory_kb < language.default_memory_mb * 1024


def test_java_out_of_memory_is_a_memory_limit(box: Sandboxed) -> None:
    java = next(language for language in LANGUAGES if language.name == "java")
    source = (
        "import java.util.*;\npublic class Main {\n    public static void main(String[] args) {\n"
        "        List<long[]> hog = new ArrayList<>();\n        while (true) hog.add(new long[1 << 20]);\n"
        "    }\n}\n"
    )
    outcome = _run_language(box, java, source)
    assert outcome.limit_exceeded == LimitExceeded.MEMORY
    assert b"OutOfMemoryError" in outcome.stderr


# --- how a run ended, as the sandbox's init tells it (executor/sandbox/init.c) --------------------

ENDING_LIMITS = Limits(wall_time_ms=10_000, cpu_time_ms=5000, memory_mb=64, max_file_bytes=1 << 20)


def test_exit_codes_and_deaths_by_signal_are_told_apart(box: Sandboxed) -> None:
    # A shell, or bwrap's own init, reports a death by signal N as exit code 128 + N.
    box.build_c(ENDING_C)
    expected: dict[str, tuple[int | None, int | None, LimitExceeded | None]] = {
        f"exit {code}": (code, None, None) for code in range(126, 160)
    }
    expected |= {
        "segv": (None, signal.SIGSEGV, None),
        # Its own RLIMIT_CPU, lowered to 1 s of the run's 5: its own doing, not a limit of ours.
        "xcpu": (None, signal.SIGXCPU, None),
        "xfsz": (None, signal.SIGXFSZ, None),
        "oom": (None, signal.SIGKILL, LimitExceeded.MEMORY),
    }
    ended = {}
    for ending in expected:
        box.write("ending", ending)
        outcome = box.run(["./main"], ENDING_LIMITS)
        ended[ending] = (outcome.exit_code, outcome.signal, outcome.limit_exceeded)
    assert ended == expected


def test_pid_1_is_out_of_reach_and_its_report_cannot_be_forged(box: Sandboxed) -> None:
    outcome = box.c(PID_1_PROBE_C)
    assert lines(outcome) == [
        "own fds: 0 1 2",  # the init's status pipe is not among them
        "open /proc/1/mem for writing: EACCES",
        "open /proc/1/mem for reading: EACCES",
        "list /proc/1/fd: EACCES",
        "pidfd_getfd refused: 64",
        "prlimit pid 1: EPERM",
        "prlimit pid 1 in the low 32 bits: EPERM",
        "kill pid 1: ok",  # sent, and ignored: the init of a pid namespace has no handler
        "still here",
    ]
    assert (outcome.exit_code, outcome.signal, outcome.limit_exceeded) == (3, None, None)


# --- mode selection ------------------------------------------------------------------------------


def _config(work_root: Path, mode: str, allow_unconfined: bool) -> ExecutorConfig:
    return ExecutorConfig.from_env().model_copy(
        update={"work_root": work_root, "sandbox_mode": mode, "allow_unconfined": allow_unconfined}
    )


def test_select_launcher_finds_a_confined_mode(work_root: Path) -> None:
    launcher = select_launcher(_config(work_root, "auto", allow_unconfined=False))
    assert isinstance(launcher, SandboxLauncher)
    launcher.close()
    assert launcher.mode in ("bwrap-userns", "bwrap-root-capdrop")


def test_select_launcher_refuses_without_a_working_mode(work_root: Path) -> None:
    with pytest.raises(SandboxUnavailable):
        select_launcher(_config(work_root, "no-such-mode", allow_unconfined=False))
    with pytest.raises(SandboxUnavailable):
        select_launcher(_config(work_root, "none", allow_unconfined=False))


def test_unconfined_only_under_the_override(work_root: Path) -> None:
    launcher = select_launcher(_config(work_root, "no-such-mode", allow_unconfined=True))
    assert isinstance(launcher, UnconfinedLauncher)
    assert launcher.mode == "none"


# --- issue 18: socket families, /proc, personality, output flags -------------------------------------

SOCKET_FAMILIES = """
import errno, socket
ALLOWED = {socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK}
KINDS = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET)
opened, refusals = [], set()
def attempt(what, make, *args):
    try:
        made = make(*args)
    except OSError as exc:
        refusals.add(exc.errno)
        return
    opened.append(what)
    for sock in made if isinstance(made, tuple) else (made,):
        sock.close()
# AF_MAX is 46 on Linux 6.x: the numbers above it stand for families a later kernel may add.
for family in sorted(set(range(64)) - ALLOWED):
    for kind in KINDS:
        attempt(f"socket {family} {kind}", socket.socket, family, kind, 0)
        attempt(f"socketpair {family} {kind}", socket.socketpair, family, kind, 0)
for protocol in range(1, 32):  # every netlink protocol but NETLINK_ROUTE (0)
    attempt(f"netlink {protocol}", socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, protocol)
print(opened)
print(sorted(refusals))
"""
SOCKET, PERSONALITY = 41, 135  # x86_64 syscall numbers
AF_VSOCK, SOCK_STREAM = 40, 1
UPPER_HALF = 1 << 32  # set in a 64-bit register, cut off by the kernel from an int argument


def test_only_unix_ip_and_netlink_route_sockets_open(box: Sandboxed) -> None:
    # AF_VSOCK would reach past the network namespace: its port space is the VM's, shared by every run.
    outcome = box.python(SOCKET_FAMILIES)
    assert lines(outcome) == ["[]", f"[{errno.EAFNOSUPPORT}]"], outcome.stderr


def test_a_family_with_bits_above_an_int_is_refused(box: Sandboxed) -> None:
    # The filter compares all 64 bits; the kernel reads only the low 32 (here: AF_VSOCK).
    outcome = box.python(SYSCALL + f"call({SOCKET}, {UPPER_HALF | AF_VSOCK}, {SOCK_STREAM}, 0)\n")
    assert lines(outcome) == [f"{SOCKET} -1 {errno.EAFNOSUPPORT}"]


def test_the_allowed_socket_families_still_work(box: Sandboxed) -> None:
    outcome = box.python(
        "import socket\n"
        "for family, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):\n"
        "    with socket.socket(family) as server:\n"
        "        server.bind((host, 0))\n"
        "        server.listen()\n"
        "        with socket.create_connection(server.getsockname()[:2], timeout=2) as client:\n"
        "            peer, _ = server.accept()\n"
        "            client.sendall(b'tcp ' + host.encode())\n"
        "            print(peer.recv(64).decode())\n"
        "            peer.close()\n"
        "left, right = socket.socketpair()\n"
        "left.sendall(b'unix pair')\n"
        "print(right.recv(64).decode())\n"
        "socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()\n"
        "print(socket.if_nameindex())  # glibc asks NETLINK_ROUTE\n"
    )
    assert lines(outcome) == ["tcp 127.0.0.1", "tcp ::1", "unix pair", "[(1, 'lo')]"], outcome.stderr


# What describes the host (boot line, kernel build and symbols, memory, devices, timers), other uids'
# keys and the machine's controls; those this kernel has must read as empty, files and directories alike.
HOST_PROC_ENTRIES = (
    "cmdline",
    "config.gz",
    "meminfo",
    "interrupts",
    "kallsyms",
    "modules",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "kcore",
    "sysrq-trigger",
    "latency_stats",
    "iomem",
    "ioports",
    "acpi",
    "scsi",
    "bus",
)


def test_proc_entries_describing_the_host_are_empty(box: Sandboxed) -> None:
    present = [f"/proc/{name}" for name in HOST_PROC_ENTRIES if Path("/proc", name).exists()]
    assert "/proc/cmdline" in present and "/proc/meminfo" in present  # the probe has something to look at
    box.write(
        "main.py",
        "import os, sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        size = len(os.listdir(path)) if os.path.isdir(path) else len(open(path, 'rb').read())\n"
        "    except OSError as exc:\n"
        "        size = exc.strerror\n"
        "    print(path, size)\n"
        "print('/sys', os.path.exists('/sys'))\n"
        "print('self', open('/proc/self/stat').read().split()[0] == str(os.getpid()))\n",
    )
    outcome = box.run(["python3", "-B", "main.py", *present])
    assert lines(outcome) == [f"{path} 0" for path in present] + ["/sys False", "self True"], outcome.stderr


ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC = 0x40000, 0x100000, 0x200000, 0x400000
PER_LINUX, PER_LINUX32, QUERY_PERSONALITY = 0, 0x8, 0xFFFFFFFF


def test_personality_keeps_its_defaults(box: Sandboxed) -> None:
    # The flags would take effect at the program's next exec: no ASLR, executable data, page zero mapped.
    calls = [
        QUERY_PERSONALITY,
        ADDR_NO_RANDOMIZE,
        MMAP_PAGE_ZERO,
        ADDR_COMPAT_LAYOUT,
        READ_IMPLIES_EXEC,
        UPPER_HALF | ADDR_NO_RANDOMIZE,
        PER_LINUX32,
        PER_LINUX,
        QUERY_PERSONALITY,
    ]
    outcome = box.python(SYSCALL + "".join(f"call({PERSONALITY}, {value})\n" for value in calls))
    results = [line.split(" ", 1)[1] for line in lines(outcome)]
    # personality() returns the previous value; a refused call changes nothing.
    denied = f"-1 {errno.EPERM}"
    assert results == ["0 0", denied, denied, denied, denied, denied, "0 0", f"{PER_LINUX32} 0", "0 0"]


def test_both_streams_flooded_at_once_are_both_cut(box: Sandboxed) -> None:
    # The case: one stream came back exactly full, flagged as whole. Whether its next chunk was
    # read before the other stream stopped the run is a race (lost about one flood in four): repeated.
    limits = Limits(wall_time_ms=20_000, cpu_time_ms=20_000, memory_mb=256, output_limit_bytes=1 << 20)
    box.write(
        "main.py", "import os\nchunk = b'z' * (1 << 16)\nwhile True:\n    os.write(1, chunk)\n    os.write(2, chunk)\n"
    )
    for _ in range(10):
        outcome = box.run(["python3", "-B", "main.py"], limits)
        assert outcome.limit_exceeded == LimitExceeded.OUTPUT
        assert (len(outcome.stdout), len(outcome.stderr)) == (limits.output_limit_bytes, limits.output_limit_bytes)
        assert outcome.stdout_truncated and outcome.stderr_truncated


# --- issue 10: stdin and arguments ------------------------------------------------------------------

ECHO_INPUT = """
import sys
data = sys.stdin.buffer.read()
sys.stdout.buffer.write(data)
sys.stderr.write(repr(sys.argv[1:]))
"""


def test_stdin_reaches_the_program_whole(box: Sandboxed) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, the most a run may be given: far more than a pipe holds
    box.write("main.py", ECHO_INPUT)
    limits = dataclasses.replace(LIMITS, output_limit_bytes=2 * 1024 * 1024)
    outcome = box.launcher.run(["python3", "main.py"], workdir=box.workdir, env=ENV, limits=limits, stdin=data)
    assert (outcome.exit_code, outcome.limit_exceeded) == (0, None), outcome.stderr
    assert outcome.stdout == data


def test_arguments_reach_argv_exactly(box: Sandboxed) -> None:
    args = ["a b", "$(id)", "`id`", "'", '"', "\\", ";exit 3", "\nline\n", "*", "", "é", "--", "0" * 4096]
    box.write("main.py", ECHO_INPUT)
    argv = ["python3", "main.py", *args]
    outcome = box.launcher.run(argv, workdir=box.workdir, env=ENV, limits=LIMITS, stdin=b"")
    assert (outcome.exit_code, outcome.stdout) == (0, b""), outcome.stderr
    assert outcome.stderr.decode() == repr(args)


def test_arguments_of_newlines_are_read_in_linear_time(box: Sandboxed) -> None:
    """The command is one line whatever its words hold: before, each of its lines was appended to a copy of
    all before it, and 64 arguments of 4 KiB of newlines took tens of seconds before the program started."""
    args = ["\n" * 4096] * 64  # the most a run may be given
    box.write("main.py", ECHO_INPUT)
    limits = dataclasses.replace(LIMITS, wall_time_ms=20_000, cpu_time_ms=20_000)
    outcome = box.run(["python3", "main.py", *args], limits)
    assert (outcome.exit_code, outcome.limit_exceeded) == (0, None), outcome.stderr[-300:]
    assert outcome.stderr.decode() == repr(args)
    assert box.elapsed_s < 10


def test_the_init_keeps_its_scheduling(box: Sandboxed) -> None:
    """A run that starved its init (pid 1) would delay the report of its own end until a limit struck."""
    source = (
        "import os, errno\n"
        "calls = {\n"
        "    'setpriority(1)': lambda: os.setpriority(os.PRIO_PROCESS, 1, 19),\n"
        "    'setpriority(pgrp)': lambda: os.setpriority(os.PRIO_PGRP, 0, 19),\n"
        "    'setpriority(user)': lambda: os.setpriority(os.PRIO_USER, 0, 19),\n"
        "    'sched_setaffinity(1)': lambda: os.sched_setaffinity(1, {0}),\n"
        "    'sched_setscheduler(1)': lambda: os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0)),\n"
        "}\n"
        "for name, call in calls.items():\n"
        "    try:\n"
        "        call()\n"
        "        print(name, 'ok')\n"
        "    except OSError as err:\n"
        "        print(name, errno.errorcode[err.errno])\n"
        "os.setpriority(os.PRIO_PROCESS, 0, 19)\n"
        "print('self', os.getpriority(os.PRIO_PROCESS, 0))\n"
    )
    outcome = box.python(source)
    assert outcome.exit_code == 0, outcome.stderr
    assert lines(outcome) == [
        "setpriority(1) EPERM",
        "setpriority(pgrp) EPERM",
        "setpriority(user) EPERM",
        "sched_setaffinity(1) EPERM",
        "sched_setscheduler(1) EPERM",
        "self 19",
    ]


def test_without_stdin_the_program_reads_end_of_file(box: Sandboxed) -> None:
    box.write("main.py", "import sys\nprint(repr(sys.stdin.read()))\n")
    outcome = box.run(["python3", "main.py"])
    assert (outcome.exit_code, outcome.stdout) == (0, b"''\n")
