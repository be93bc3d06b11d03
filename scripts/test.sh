#!/usr/bin/env bash
# The README's second command: lint, type-check and run the whole test suite against a real
# Redis (REDIS_URL, else 127.0.0.1:6379, else a throwaway redis-server this script starts).
EXTRAS=dev
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
python scripts/need_redis_server.py --install-only
echo "== ruff check"; ruff check .
echo "== ruff format --check"; ruff format --check .
echo "== mypy --strict src"; mypy
echo "== pytest"
# Coverage (branch) is reported inside pytest's summary, so its last line stays the verdict.
exec python scripts/need_redis_server.py -- python -m pytest --cov --cov-report=term:skip-covered "$@"
