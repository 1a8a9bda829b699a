#!/usr/bin/env bash
# Prints the admin URL of a PostgreSQL server the tests may create their own databases on.
# Uses LCE_TEST_POSTGRES_URL (default: the local server, user postgres) when it answers; otherwise,
# as root on Debian, installs and starts a local PostgreSQL and gives the postgres user a password.
set -euo pipefail
PY=${PY:-.venv/bin/python}
url=${LCE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}

answers() {
  "$PY" -c 'import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=3).close()' "$1" 2>/dev/null
}

if answers "$url"; then
  echo "$url"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "no PostgreSQL answers at $url; set LCE_TEST_POSTGRES_URL to an admin URL of one" >&2
  exit 1
fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "installing PostgreSQL for the tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
for _ in $(seq 50); do
  su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'lce-tests'\"" >&2
url=postgresql://postgres:lce-tests@127.0.0.1:5432/postgres
answers "$url" || { echo "PostgreSQL started but does not answer at $url" >&2; exit 1; }
echo "$url"
