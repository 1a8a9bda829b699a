"""Hostile programs sent through the whole system (REST -> services -> real executors -> sandbox).

tests/sandbox/ probes the launcher itself; this module proves that the deployed path applies it:
each probe ends in the expected terminal state within a bound, the services stay healthy, and
no process of any sandbox slot uid is left behind. Network probes target loopback only, or a
documentation address that must fail as unreachable before any packet is sent.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from common.languages import LANGUAGES, by_name
from devstack import Stack, is_healthy
from executor.sandbox.bwrap import INIT, WAITING_SHELL
from executor.sandbox.warm import COMPILER_FIFO
from tests.integration.conftest import new_session, run

pytestmark = pytest.mark.integration

SLOT_UIDS = range(60000, 61000)
BOUND_S = 30


def parent_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces, so split after its ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descends_from(pid: int, ancestors: set[int]) -> bool:
    while pid > 1:
        if pid in ancestors:
            return True
        pid = parent_of(pid)
    return False


def slot_processes(stack: Stack) -> list[int]:
    """Processes of a sandbox slot uid under this stack's executors (they are subreapers, so a run's
    orphans would be reparented to them), but for the sandbox each executor keeps waiting for its
    next job; other test runs on the machine are not ours to judge."""
    executors = {s.process.pid for s in stack.services if s.name.startswith("executor") and s.process}
    by_uid: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
                if uid in SLOT_UIDS and descends_from(int(entry.name), executors):
                    by_uid.setdefault(uid, []).append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass  # the process ended while we looked
    return sorted(pid for pids in by_uid.values() if not is_waiting_sandbox(pids) for pid in pids)


# What waits in a prepared sandbox besides bwrap's monitor and the init: the shell waiting for its
# command (prespawn.py), a warm interpreter started with its language's exact run argv, or a warm
# compiler with its exact command and FIFO (warm.py).
WAITING = {
    "sh": [b"/bin/sh", b"-c", WAITING_SHELL.encode()],
    **{Path(lang.run[0]).name: [arg.encode() for arg in lang.run] for lang in LANGUAGES if lang.warm_start},
    **{
        Path(compiler.command[0]).name: [arg.encode() for arg in (*compiler.command, COMPILER_FIFO)]
        for compiler in (lang.warm_compiler for lang in LANGUAGES)
        if compiler is not None
    },
}


def is_waiting_sandbox(pids: list[int]) -> bool:
    """bwrap's monitor, the sandbox's init and what waits for the next job, nothing else."""
    try:
        commands = {
            Path(f"/proc/{pid}/comm").read_text().strip(): Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for pid in pids
        }
    except FileNotFoundError:
        return False
    waiting = set(commands) - {"bwrap", Path(INIT).name}
    if len(pids) != 3 or len(commands) != 3 or len(waiting) != 1:
        return False
    (name,) = waiting
    expected = WAITING.get(name)
    return expected is not None and commands[name][: len(expected)] == expected


@pytest.fixture(params=["batch", "interactive"])
def hostile(request: pytest.FixtureRequest, api: httpx.Client, languages: dict[str, dict[str, Any]], stack: Stack):
    """Runs one hostile program in a fresh session and checks the system is unharmed afterwards; each
    probe runs twice: as a plain run, and as an interactive one (its stdin fed live by the executor)."""
    mode = {"interactive": True} if request.param == "interactive" else {}

    def send(source: str, language: str = "python", **limits: Any) -> dict[str, Any]:
        started = time.monotonic()
        result = run(api, new_session(api, languages[language]["id"], source), **mode, **limits)
        assert time.monotonic() - started < BOUND_S, f"took over {BOUND_S} s"
        assert result["sandbox"] != "none"
        return result

    yield send
    assert all(is_healthy(service.health) for service in stack.services)
    deadline = time.monotonic() + 5
    while slot_processes(stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slot_processes(stack) == [], "a process of a run outlived it"


def probe_ports(ports: list[int]) -> str:
    return (
        "import socket\n"
        f"for port in {ports}:\n"
        "    s = socket.socket()\n"
        "    s.settimeout(2)\n"
        "    try:\n"
        "        s.connect(('127.0.0.1', port))\n"
        "        print('OPEN', port)\n"
        "    except OSError:\n"
        "        print('closed', port)\n"
    )


def test_loopback_services_are_unreachable(hostile, stack: Stack) -> None:
    ports = [
        urlparse(stack.config.redis_url).port or 6379,
        5432,
        stack.config.gateway_port,
        stack.config.session_port,
        stack.config.execution_port,
    ]
    result = hostile(probe_ports(ports))
    assert result["status"] == "COMPLETED", result
    assert "OPEN" not in result["stdout"]
    assert result["stdout"].count("closed") == len(ports)


def test_no_route_beyond_loopback(hostile) -> None:
    source = (
        "import socket, errno\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n"
        "    s.connect(('192.0.2.1', 9))\n"
        "    print('ROUTED')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno])\n"
    )
    assert hostile(source)["stdout"] == "ENETUNREACH\n"


def test_host_secrets_and_files_are_invisible(hostile) -> None:
    marker = Path(f"/tmp/lce-marker-{uuid.uuid4().hex}")
    marker.write_text("host")
    try:
        source = (
            "import os\n"
            "print(os.path.exists('/etc/shadow'))\n"
            "print(any(k.startswith('LCE_') for k in os.environ))\n"
            f"print(os.path.exists('{marker}'))\n"
            "try:\n"
            "    print(b'LCE_' in open('/proc/1/environ', 'rb').read())\n"
            "except PermissionError:\n"
            "    print(False)\n"
        )
        assert hostile(source)["stdout"] == "False\nFalse\nFalse\nFalse\n"
    finally:
        marker.unlink()


def test_system_is_read_only(hostile) -> None:
    source = (
        "for path in ['/x', '/usr/x', '/etc/x']:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError:\n"
        "        print('denied')\n"
    )
    assert hostile(source)["stdout"] == "denied\ndenied\ndenied\n"


def test_pids_are_private_and_kill_all_hurts_only_the_run(hostile) -> None:
    source = "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]) <= 4)\nos.kill(-1, 9)\n"
    result = hostile(source)
    assert result["stdout"].startswith("True")


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"),
        ("c", "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n"),
    ],
)
def test_fork_bombs_are_contained(hostile, language: str, source: str) -> None:
    result = hostile(source, language, time_limit_ms=2000)
    assert result["status"] in {"TIMEOUT", "FAILED"}


def test_memory_limit(hostile) -> None:
    result = hostile("x = bytearray(2 * 1024**3)\n", memory_limit_mb=128)
    assert (result["status"], result["reason"]) == ("FAILED", "memory_limit_exceeded")


def test_huge_file_and_full_work_dir(hostile) -> None:
    # Written in 1 MiB chunks: the file-size limit, not the time it takes to build 1 GiB in memory, stops it.
    big = hostile(
        "chunk = b'0' * 1024**2\nwith open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(chunk)\n"
    )
    assert big["status"] == "FAILED"
    many = hostile(
        "import os\nfor i in range(100000):\n    open(f'f{i}', 'wb').write(b'0' * 1024**2)\n", time_limit_ms=20000
    )
    assert many["status"] == "FAILED"


def test_output_flood_is_cut(hostile) -> None:
    result = hostile("import sys\nchunk = 'x' * 65536\nfor _ in range(1600):\n    sys.stdout.write(chunk)\n")
    assert (result["status"], result["reason"]) == ("FAILED", "output_limit_exceeded")
    assert result["stdout_truncated"] is True
    assert 0 < len(result["stdout"]) <= 1024 * 1024


def test_setsid_child_does_not_survive_the_wall_limit(hostile) -> None:
    source = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)\n"
    result = hostile(source, time_limit_ms=1000)
    assert (result["status"], result["reason"]) == ("TIMEOUT", "time_limit_exceeded:wall")


def test_threads_cannot_outrun_the_time_limit(hostile) -> None:
    source = (
        "#include <pthread.h>\n"
        "static void *spin(void *a) { for (;;) {} return a; }\n"
        "int main(void) { pthread_t t[4]; for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, spin, 0);\n"
        "  pthread_join(t[0], 0); }\n"
    )
    # Which clock trips first depends on the machine's load; tests/sandbox pins the CPU limit itself.
    result = hostile(source, "c", time_limit_ms=1000)
    assert result["status"] == "TIMEOUT"
    assert result["reason"] in {"time_limit_exceeded:cpu", "time_limit_exceeded:wall"}


def test_runs_do_not_see_each_other(hostile) -> None:
    token = uuid.uuid4().hex
    hostile(f"for d in ['.', '/tmp', '/dev/shm']:\n    open(d + '/left-{token}', 'w').write('x')\n")
    source = (
        "import glob, os\n"
        "places = ['.', '/tmp', '/dev/shm', os.path.dirname(os.getcwd())]\n"
        f"print([hit for place in places for hit in glob.glob(place + '/**/left-{token}', recursive=True)])\n"
    )
    assert hostile(source)["stdout"] == "[]\n"


# --- compiles (issue 18, finding 1) ------------------------------------------------------------

# A type that doubles at every level: unbounded, g++ works on it for minutes.
TEMPLATE_BOMB = """#include <tuple>
template <int N> struct Bomb { using T = std::tuple<typename Bomb<N - 1>::T, typename Bomb<N - 1>::T>; };
template <> struct Bomb<0> { using T = int; };
int main() { Bomb<24>::T value{}; return sizeof(value) > 0 ? 0 : 1; }
"""


def test_a_template_bomb_stops_at_the_compile_time_limit(hostile) -> None:
    result = hostile(TEMPLATE_BOMB, "cpp", time_limit_ms=100, memory_limit_mb=32, compile_time_limit_ms=2000)
    assert (result["status"], result["reason"]) == ("TIMEOUT", "compile_time_limit_exceeded"), result
    [compiled] = result["stages"]
    assert compiled["name"] == "compile" and compiled["cpu_time_ms"] < 4000
    assert result["compile_time_limit_ms"] == 2000


def test_an_endless_include_stops_at_the_compile_memory_limit(hostile) -> None:
    result = hostile('#include "/dev/zero"\nint main(void) { return 0; }\n', "c", compile_memory_limit_mb=64)
    assert (result["status"], result["reason"]) == ("FAILED", "compile_memory_limit_exceeded"), result
    assert result["stages"][0]["memory_kb"] <= 64 * 1024


def test_a_compile_limit_above_the_deployments_is_refused(
    api: httpx.Client, languages: dict[str, dict[str, Any]]
) -> None:
    session_id = new_session(api, languages["cpp"]["id"], TEMPLATE_BOMB)
    for body in ({"compile_time_limit_ms": 10**6}, {"compile_memory_limit_mb": 10**5}, {"encoding": "hex"}):
        refused = api.post(f"/code-sessions/{session_id}/run", json=body)
        assert refused.status_code == 400, refused.text
        assert next(iter(body)) in refused.json()["error"]


# --- output (issue 18, finding 6) --------------------------------------------------------------


def test_base64_gives_the_exact_bytes(hostile) -> None:
    source = "import sys\nsys.stdout.buffer.write(bytes(range(256)))\nsys.stderr.buffer.write(b'\\xff\\xfe')\n"
    result = hostile(source, encoding="base64")
    assert (result["status"], result["encoding"]) == ("COMPLETED", "base64")
    assert base64.b64decode(result["stdout"], validate=True) == bytes(range(256))
    assert base64.b64decode(result["stderr"], validate=True) == b"\xff\xfe"


def test_a_nul_in_the_output_is_text_and_exact_in_base64(hostile) -> None:
    """PostgreSQL text cannot hold NUL: it once failed the result's write, and the run was retried to internal_error."""
    source = "import sys\nsys.stdout.write('a\\0b')\nsys.stderr.write('\\0')\n"
    result = hostile(source)
    assert (result["status"], result["stdout"], result["stderr"]) == ("COMPLETED", "a\ufffdb", "\ufffd")
    exact = hostile(source, encoding="base64")
    assert base64.b64decode(exact["stdout"]) == b"a\0b" and base64.b64decode(exact["stderr"]) == b"\0"


def test_after_a_java_compile_only_the_prepared_sandbox_waits(hostile) -> None:
    # The executor's next sandbox may wait with javac started ahead (warm.py): that is no leftover.
    java = by_name("java")
    assert java is not None
    result = hostile(java.template_code, "java")
    assert (result["status"], result["stdout"]) == ("COMPLETED", "Hello World\n"), result
