"""The declared libraries (executor/packages.toml) inside the sandbox, through the whole system: each
language's set imports and works under the default limits, and the trees stay read-only and unchanged
whatever a run does. `make test` installs the sets before the tests (the `packages` target)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from executor import packages
from executor.settings import packages_dir
from tests.integration.conftest import new_session, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def installed() -> dict[str, packages.InstalledSet]:
    stale = packages.stale_or_missing(packages_dir(), packages.declared_sets())
    assert not stale, f"declared libraries not installed for {stale}: run make packages"
    return packages.installed_sets(packages_dir())


def completed(api: httpx.Client, languages: dict[str, dict[str, Any]], name: str, source: str) -> dict[str, Any]:
    result = run(api, new_session(api, languages[name]["id"], source))
    assert result["status"] == "COMPLETED", result
    return result


def test_numpy_computes_under_the_default_limits(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    source = (
        "import numpy as np\n"
        "a = np.arange(1, 1001, dtype=np.float64).reshape(10, 100)\n"
        "m = a @ a.T\n"
        "print(np.__version__, int(m.trace()), round(float(np.linalg.norm(a)), 3))\n"
    )
    result = completed(api, languages, "python", source)
    expected_version = packages.declared_sets()["python"]["numpy"]
    assert result["stdout"] == f"{expected_version} 333833500 18271.111\n"
    # The default limits held: the default memory limit, and the import took well under the time limit.
    assert result["memory_kb"] < languages["python"]["default_memory_mb"] * 1024


def test_each_language_lists_its_libraries(
    api: httpx.Client, languages: dict[str, dict[str, Any]], installed: dict[str, packages.InstalledSet]
) -> None:
    """GET /languages/{id}: what the live executors announce they installed, dependencies included."""
    for name, found in installed.items():
        assert languages[name]["packages"] == dict(found.packages)
    assert languages["python"]["packages"]["numpy"] == packages.declared_sets()["python"]["numpy"]
    assert languages["c"]["packages"] == {}


def test_lodash_from_javascript(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    source = "const _ = require('lodash');\nconsole.log(JSON.stringify(_.chunk([1, 2, 3, 4, 5], 2)), _.VERSION);\n"
    result = completed(api, languages, "javascript", source)
    assert result["stdout"] == f"[[1,2],[3,4],[5]] {packages.declared_sets()['javascript']['lodash']}\n"


def test_a_gem_from_ruby_beside_the_bundled_ones(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    # Rainbow colours only terminals unless told to.
    source = (
        'require "rainbow"\nrequire "prime"\nRainbow.enabled = true\n'
        'puts Rainbow("ok").red.inspect\nputs Prime.first(4).inspect\n'
    )
    result = completed(api, languages, "ruby", source)
    assert result["stdout"] == '"\\e[31mok\\e[0m"\n[2, 3, 5, 7]\n'


def test_the_trees_are_read_only_and_nothing_a_run_does_persists(
    api: httpx.Client, languages: dict[str, dict[str, Any]], installed: dict[str, packages.InstalledSet]
) -> None:
    attack = (
        "import os, pathlib\n"
        "root = pathlib.Path('/opt/lce/packages/python')\n"
        "for target in (root / 'numpy' / '__init__.py', root / 'planted.py', root / 'lce-packages.json'):\n"
        "    try:\n"
        "        target.write_text('import os; os.system(\"id\")')\n"
        "        print('WROTE', target)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        "try:\n"
        "    os.rename(root / 'numpy', root / 'numpy2')\n"
        "    print('RENAMED')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    before = {
        language: sorted(str(p.relative_to(found.tree)) for p in found.tree.rglob("*"))
        for language, found in installed.items()
    }
    result = completed(api, languages, "python", attack)
    assert "WROTE" not in result["stdout"] and "RENAMED" not in result["stdout"], result["stdout"]
    assert result["stdout"].count("refused 30") == 4  # EROFS: the bind is read-only
    after = {
        language: sorted(str(p.relative_to(found.tree)) for p in found.tree.rglob("*"))
        for language, found in installed.items()
    }
    assert after == before
    # The next run sees the library as it was installed.
    check = "import numpy, pathlib\nprint(pathlib.Path('/opt/lce/packages/python/planted.py').exists(), numpy.__name__)"
    assert completed(api, languages, "python", check)["stdout"] == "False numpy\n"
