#!/usr/bin/env bash
# Starts and stops the embedded local AWS emulator: moto in server mode
# (through localstack/moto_serial.py, see there),
# installed from localstack/requirements.txt into .venv/emulator. It listens
# on 127.0.0.1:${EMULATOR_PORT:-4566}, the port LocalStack uses, so the same
# AWS_ENDPOINT_URL works with either.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${EMULATOR_PORT:-4566}"
venv="$root/.venv/emulator"
state="$root/.emulator"
pidfile="$state/moto-$port.pid"
log="$state/moto-$port.log"
reqs="$root/localstack/requirements.txt"

install() {
	if [ -x "$venv/bin/moto_server" ] && cmp -s "$reqs" "$venv/.requirements"; then
		return
	fi
	echo "emulator: installing pinned moto into $venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
	cp "$reqs" "$venv/.requirements"
}

running() {
	[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

up() {
	install
	mkdir -p "$state"
	if running; then
		echo "emulator: already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
		return
	fi
	if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then
		echo "emulator: something already answers on 127.0.0.1:$port; using it"
		return
	fi
	# moto_serial.py is moto's server with DynamoDB requests serialised, so
	# conditional writes are atomic under concurrency as on DynamoDB.
	nohup "$venv/bin/python" "$root/localstack/moto_serial.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
	echo $! >"$pidfile"
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then
			echo "emulator: moto listening on 127.0.0.1:$port (pid $(cat "$pidfile"), log $log)"
			return
		fi
		if ! running; then
			echo "emulator: moto exited during start-up; its log:" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.2
	done
	echo "emulator: moto did not answer on 127.0.0.1:$port within 20 s; see $log" >&2
	exit 1
}

down() {
	if running; then
		kill "$(cat "$pidfile")" 2>/dev/null || true
		for _ in $(seq 1 50); do running || break; sleep 0.1; done
		running && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
		echo "emulator: stopped"
	fi
	rm -f "$pidfile"
}

reset() {
	curl -fsS -X POST "http://127.0.0.1:$port/moto-api/reset" >/dev/null
}

case "${1:-}" in
up) up ;;
down) down ;;
reset) reset ;;
install) install ;;
*)
	echo "usage: $0 up|down|reset|install" >&2
	exit 2
	;;
esac
