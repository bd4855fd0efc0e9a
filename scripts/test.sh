#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run pytest.
#   - Debian packages: postgresql (the PostgreSQL store tests), chromium + chromium-driver
#     (the browser tests of the HTML reports), fonts-noto-cjk (Chinese in the report charts,
#     and Chinese pages drawn with Chinese glyphs, not boxes: a browser test checks it),
#     openjdk-17-jre-headless (the Spark engine's tests); installed only when missing.
#   - a virtual environment in .venv with the package and its test extras.
#   - a local PostgreSQL cluster with a test role and database.
# Extra arguments are passed to pytest (e.g. scripts/test.sh -k ingest).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need_pkgs=()
command -v pg_ctlcluster >/dev/null || need_pkgs+=(postgresql)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
# CJK fonts: Chinese in the report charts and pages (the browser tests check the glyphs)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need_pkgs+=(fonts-noto-cjk)
command -v java >/dev/null || need_pkgs+=(openjdk-17-jre-headless)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,spark]'

# PostgreSQL: start the default cluster and make a test role/database (idempotent).
if command -v pg_ctlcluster >/dev/null; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_lsclusters -h 2>/dev/null | grep -q .; then $SUDO pg_createcluster "$ver" main >/dev/null; fi
  cluster=$(pg_lsclusters -h | head -1 | awk '{print $1" "$2}')
  $SUDO pg_ctlcluster $cluster start 2>/dev/null || true
  port=$(pg_lsclusters -h | head -1 | awk '{print $3}')
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 1; done
  as_pg() { if [ "$(id -u)" = "0" ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
  as_pg "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='emraudit'\"" | grep -q 1 \
    || as_pg "psql -p $port -qc \"CREATE ROLE emraudit LOGIN SUPERUSER PASSWORD 'emraudit'\""
  as_pg "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname='emraudit_test'\"" | grep -q 1 \
    || as_pg "psql -p $port -qc 'CREATE DATABASE emraudit_test OWNER emraudit'"
  export EMRAUDIT_TEST_PG_URL="postgresql+psycopg://emraudit:emraudit@127.0.0.1:${port}/emraudit_test"
fi

# loadgroup: the Spark tests share one worker, hence one Spark session per run
exec .venv/bin/python -m pytest -n 2 --dist loadgroup -q "$@"
