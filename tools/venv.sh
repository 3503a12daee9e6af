#!/usr/bin/env bash
# Installs a pinned requirements file into a venv of its own, once: it does
# nothing when the venv already holds exactly those requirements.
#
#   tools/venv.sh NAME REQUIREMENTS   ->  .venv/NAME
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
name="$1"
reqs="$root/$2"
venv="$root/.venv/$name"
if [ -x "$venv/bin/python" ] && cmp -s "$reqs" "$venv/.requirements"; then
	exit 0
fi
echo "tools: installing $2 into .venv/$name" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
cp "$reqs" "$venv/.requirements"
