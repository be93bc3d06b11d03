#!/usr/bin/env bash
# The README's first command: run the reference system demo with embedded defaults.
EXTRAS=all
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec sysdesign-kit demo "$@"
