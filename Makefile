# LCE: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
PROTOS := $(shell find protos -name '*.proto')
STUBS_STAMP := lce/.generated
PLAYGROUND_STAMP := playground/dist/.built
PLAYGROUND_SOURCES := $(shell find playground/src -type f) playground/package.json playground/package-lock.json playground/build.mjs

.PHONY: run test bench protos lint system-deps clean

# Brings up the whole system in the foreground (gateway on http://127.0.0.1:8080); Ctrl-C stops it.
run: $(STUBS_STAMP) system-deps packages $(PLAYGROUND_STAMP)
	$(PY) -m devstack

# A private CA, a certificate per service, the service tokens and compose's store passwords, into
# data/certs (gitignored); what exists is kept (README "Security model"). For docker-compose.yml, as
# root: `make certs CERTS_OWNER=10001` (the images' user).
.PHONY: certs run-secure
certs:
	@bash scripts/gen-certs.sh data/certs $(CERTS_OWNER)

# `make run` with mTLS and tokens between every service.
run-secure: $(STUBS_STAMP) system-deps packages $(PLAYGROUND_STAMP) certs
	LCE_CERTS_DIR=data/certs $(PY) -m devstack

# Lint, then the whole suite: unit, contract, sandbox red team, integration (real services as processes).
test: $(STUBS_STAMP) system-deps packages $(PLAYGROUND_STAMP) browser-deps
	$(VENV)/bin/ruff check .
	LCE_TEST_POSTGRES_URL="$$(PY=$(PY) bash scripts/ensure-test-postgres.sh)" $(PY) -m pytest

# The benchmark of issues 5 and 15 (not a test): own stack, two executors; writes bench/results/<UTC time>-<label>.json
# and the summary table bench/results/latest.md.
# LCE_BENCH_LABEL names the step, LCE_BENCH_URL targets a running deployment, LCE_BENCH_ROUNDS repeats.
# Then the capacity measure (docs/capacity.md; own stack only): <UTC time>-<label>-capacity.json.
bench: $(STUBS_STAMP) packages
	@bash scripts/install-system-deps.sh --bench
	$(PY) -m bench
	$(PY) -m bench.capacity

# Python dependencies into a venv, and the project in editable mode (.venv/bin/lce runs lce_client from
# this tree); reinstalled when pyproject.toml changes.
$(DEPS_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# Python stubs generated from protos/ into lce/ (gitignored, never edited by hand).
$(STUBS_STAMP): $(PROTOS) $(DEPS_STAMP)
	rm -rf lce
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	@touch $@

protos: $(STUBS_STAMP)

# The playground page and /docs' Swagger UI (gateway/playground.py): npm packages at their locked versions,
# bundled into playground/dist (gitignored); built again when a source changes. Install scripts stay off:
# the build needs none.
.PHONY: playground browser-deps
$(PLAYGROUND_STAMP): $(PLAYGROUND_SOURCES) | system-deps
	cd playground && npm ci --ignore-scripts --no-audit --no-fund && npm run build
	@touch $@

playground: $(PLAYGROUND_STAMP)

# Debian's chromium, which tests/browser drives.
browser-deps:
	@bash scripts/install-system-deps.sh --browser

# As root on Debian: the toolchains of the eight languages, bubblewrap, Redis, PostgreSQL when missing.
system-deps:
	@bash scripts/install-system-deps.sh

# The libraries runs may use (executor/packages.toml), into read-only trees under LCE_PACKAGES_DIR
# (default /var/lib/lce/packages), and the compile aids under LCE_COMPILE_AIDS_DIR (default
# /var/lib/lce/compile-aids); what is already installed is kept.
.PHONY: packages
packages: $(DEPS_STAMP) system-deps
	$(PY) -m executor.packages install
	$(PY) -m executor.compile_aids install

lint: $(STUBS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf lce $(VENV) data playground/dist playground/node_modules
