#!/bin/sh
# Install (or upgrade, or remove) edged as a systemd service from this checkout.
#
#   sudo systemd/install.sh                      # = install: user, /opt/edged venv, unit, config, start
#   systemd/install.sh install --dry-run         # print every action, change nothing (no root needed)
#   sudo systemd/install.sh install --config configs/pi5-hailo.yaml
#   sudo systemd/install.sh uninstall [--purge]
#
# A thin wrapper around `edged service ...` (edged/service_install.py). That module needs only the
# standard library, so this runs with the system Python before edged is installed anywhere.
# Set PYTHON=... to use another interpreter (it is also the one the venv is created from).
set -eu

repo=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
python=${PYTHON:-/usr/bin/python3}

if [ "$#" -eq 0 ]; then
    set -- install
fi
case "$1" in
    install) shift; set -- install --python "$python" "$@" ;;
esac

PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m edged.service_install "$@"
