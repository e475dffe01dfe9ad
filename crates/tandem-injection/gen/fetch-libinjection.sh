#!/usr/bin/env bash
# Fetch the libinjection 3.9.2 sources (C, data and its BSD licence) that this crate's
# data module was generated from and that `gen/oracle.sh` builds as a reference
# implementation for differential testing. Nothing fetched here is committed.
#
# The sources come from PyPI's `libinjection-python` 1.1.6 sdist, which vendors
# libinjection's src/ directory unchanged (LIBINJECTION_VERSION "3.9.2").
set -euo pipefail
dest="${1:-/tmp/libinjection-src}"
mkdir -p "$dest"
cd "$dest"
if [ ! -d libinjection-python-1.1.6 ]; then
    pip download --no-deps --no-binary :all: libinjection-python==1.1.6 >/dev/null
    tar xzf libinjection-python-1.1.6.tar.gz
fi
echo "$dest/libinjection-python-1.1.6/libinjection/src"
