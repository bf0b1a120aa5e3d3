#!/bin/sh
# magpie.conf.example must be exactly what the config table generates (run `make update-example`).
set -e
if ! "$MAGPIE_CONFIG_BIN" example | diff -u "$EXAMPLE" -; then
    echo "magpie.conf.example differs from shared/config_table.c: run 'make update-example'" >&2
    exit 1
fi
echo "magpie.conf.example matches the config table"
