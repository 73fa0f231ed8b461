#!/usr/bin/env bash
# Create a Python virtualenv at VENV_DIR with QEMU's QMP client library (`qemu.qmp` from PyPI),
# for tests/qmp/qmp_check.py. Idempotent: does nothing when the venv already imports qemu.qmp.
#
# Usage: setup-venv.sh VENV_DIR
# Needs `python3 -m venv` (Debian: the python3-venv package) and access to PyPI.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1
# qemu.qmp is young and small; pin what the tests were written against.
spec='qemu.qmp==0.0.6'

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import qemu.qmp' 2>/dev/null; then
    exit 0
fi

if ! python3 -m venv "$venv"; then
    echo "$0: 'python3 -m venv $venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"; then
    echo "$0: 'pip install $spec' into $venv failed (is PyPI reachable?)" >&2
    exit 1
fi
"$venv/bin/python" -c 'import qemu.qmp'
