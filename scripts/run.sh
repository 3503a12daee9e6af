#!/usr/bin/env bash
# run.sh is `make run`: weir on the embedded AWS emulator, with a demo job
# of simulated workers, watched until Ctrl-C. It builds the binaries,
# starts the emulator (unless one already answers on its port), creates the
# stack's resources from template.yaml, starts the controller (process
# launcher running simworker), the local config API and the local stand-in
# for EventBridge Scheduler, creates the demo job with weirctl and shows
# `weirctl watch`. Ctrl-C (or SIGTERM) stops everything it started, and only
# that, by process id: an emulator that was already running is left alone.
#
# Settings (environment):
#   EMULATOR_PORT     the emulator's port (4566)
#   WEIR_API_PORT     the local config API's port (8080)
#   WEIR_HEALTH_PORT  the controller's /healthz and /readyz port (8081)
#   WEIR_STACK        the stack name that prefixes every table and queue (weir-local)
#   WEIR_DEMO_JOB     the job file created at start (cmd/weirctl/examples/demo-job.yaml)
#   WEIR_RUN_DIR      logs, pid list and worker state (.run/API_PORT)
#   WEIR_BIN_DIR      where the binaries are built (bin)
#   WEIR_WORKER       the worker command the process launcher runs
#                     (simworker -committing sink, matching the demo job)
#   WEIR_RUN_FOR      stop by itself after this long, e.g. 90s (default: until Ctrl-C)
#   WEIR_EMULATOR     embedded (default) or external: use AWS_ENDPOINT_URL as
#                     given, e.g. LocalStack's http://127.0.0.1:4566
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

emulator_port="${EMULATOR_PORT:-4566}"
api_port="${WEIR_API_PORT:-8080}"
health_port="${WEIR_HEALTH_PORT:-8081}"
stack="${WEIR_STACK:-weir-local}"
demo_job="${WEIR_DEMO_JOB:-cmd/weirctl/examples/demo-job.yaml}"
run_dir="${WEIR_RUN_DIR:-$root/.run/$api_port}"
bin="${WEIR_BIN_DIR:-$root/bin}"
run_for="${WEIR_RUN_FOR:-}"
# simworker is told which operators commit in two phases; the demo job's
# sink does.
worker_command="${WEIR_WORKER:-simworker -committing sink}"
emulator_mode="${WEIR_EMULATOR:-embedded}"

say() { printf 'run: %s\n' "$*" >&2; }
die() {
	printf 'run: %s\n' "$*" >&2
	exit 1
}

# --- what this run started, so that it stops exactly that -----------------

pids_file="$run_dir/pids"
started_emulator=""
children=()

# "python3 -c $own_group CMD ARGS" runs CMD in a process group of its own
# under the same pid (python3 is there for the emulator anyway): Ctrl-C
# then reaches only this script, which stops the children in order, each
# with all it started. (Not a shell function: a function run with & is a
# subshell, and $! would name the subshell, not CMD.)
own_group='import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])'

# track records a child this script started; its pid is also its process
# group, which is stopped as a whole.
track() {
	children+=("$1:$2")
	printf '%s %s\n' "$1" "$2" >>"$pids_file"
}

alive() { kill -0 "$1" 2>/dev/null; }

# stop_group sends SIGTERM to a process group this script started and
# SIGKILL if it has not ended after $2 seconds.
stop_group() {
	local pid="$1" grace="$2" i
	alive "$pid" || return 0
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < grace * 10; i++)); do
		alive "$pid" || return 0
		sleep 0.1
	done
	say "$3 did not stop within ${grace}s; killing it"
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# proc_start is a process's start time (field 22 of /proc/PID/stat), which
# tells a worker from another process that was given its pid later.
proc_start() {
	[ -r "/proc/$1/stat" ] || return 0
	sed 's/.*) //' "/proc/$1/stat" | awk '{print $20}'
}

# stop_workers ends the workers the controller started for this run: each
# is a process group named by a pid file of the process launcher. The
# controller leaves them running when it stops (a new leader adopts them),
# so they are stopped here.
stop_workers() {
	local f pid start now
	[ -d "$run_dir/workers" ] || return 0
	while IFS= read -r -d '' f; do
		pid="$(sed -n 's/.*"pid":\([0-9][0-9]*\).*/\1/p' "$f")"
		start="$(sed -n 's/.*"start":"\([0-9][0-9]*\)".*/\1/p' "$f")"
		[ -n "$pid" ] || continue
		now="$(proc_start "$pid")"
		if [ -n "$start" ] && [ -n "$now" ] && [ "$start" != "$now" ]; then
			continue # the pid belongs to another process now
		fi
		stop_group "$pid" 5 "worker $pid"
		rm -f "$f"
	done < <(find "$run_dir/workers" -name '*.pid' -print0 2>/dev/null)
}

# stop_named stops the child this script recorded under a name.
stop_named() {
	local entry
	[ "${#children[@]}" -gt 0 ] || return 0
	for entry in "${children[@]}"; do
		[ "${entry%%:*}" = "$1" ] && stop_group "${entry##*:}" 5 "$1"
	done
	return 0
}

cleaning=""
cleanup() {
	local status=$?
	[ -z "$cleaning" ] || return 0
	cleaning=1
	trap '' INT TERM
	say "stopping what this run started"
	# weirctl first, so that the view stops redrawing; the controller next,
	# so that it stops acting on the jobs; then the workers it leaves
	# behind; then the API and the scheduler stand-in; the emulator last.
	stop_named weirctl
	stop_named controller
	stop_workers
	stop_named api
	stop_named scheduler
	if [ -n "$started_emulator" ]; then
		EMULATOR_PORT="$emulator_port" localstack/emulator.sh down >&2 || true
	fi
	# Reap the children so no zombie outlives the run.
	wait 2>/dev/null || true
	say "stopped; logs are in $run_dir/logs"
	exit "$status"
}

# --- checks before anything starts ----------------------------------------

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

command -v go >/dev/null || die "Go is not installed: install Go 1.26 or later (https://go.dev/dl/), then run make run again"
command -v python3 >/dev/null || die "python3 is not installed: install Python 3.11 or later (the emulator runs on it), then run make run again"
command -v curl >/dev/null || die "curl is not installed: install it (apt-get install curl, brew install curl), then run make run again"
for p in "$api_port:WEIR_API_PORT" "$health_port:WEIR_HEALTH_PORT"; do
	if port_busy "${p%%:*}"; then
		die "port ${p%%:*} on 127.0.0.1 is in use: stop what listens there, or pick another port with ${p##*:}=PORT"
	fi
done
[ -f "$demo_job" ] || die "the demo job file $demo_job does not exist: set WEIR_DEMO_JOB to a job file"

mkdir -p "$run_dir/logs" "$run_dir/workers" "$bin"
: >"$pids_file"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ------------------------------------------------------------------

say "building weir into $bin (Go modules are downloaded on first use)"
go build -o "$bin/" ./cmd/weirctl ./cmd/weir-resources ./cmd/weir-controller ./cmd/weir-api ./cmd/weir-localscheduler ./cmd/simworker

# --- the emulator -----------------------------------------------------------

export AWS_REGION="${AWS_REGION:-us-east-1}"
case "$emulator_mode" in
embedded)
	# Everything goes to the emulator: never to an AWS account by accident.
	export AWS_ENDPOINT_URL="http://127.0.0.1:$emulator_port"
	export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
	unset AWS_SESSION_TOKEN AWS_PROFILE
	if curl -fsS -o /dev/null "$AWS_ENDPOINT_URL/moto-api/" 2>/dev/null; then
		say "using the emulator already running on port $emulator_port; it is left running at the end"
	else
		# In a group of its own, the emulator outlives a Ctrl-C until the
		# end of the clean-up, which stops it.
		EMULATOR_PORT="$emulator_port" python3 -c "$own_group" localstack/emulator.sh up >&2
		started_emulator=1
		if [ -f ".emulator/moto-$emulator_port.pid" ]; then
			printf 'emulator %s\n' "$(cat ".emulator/moto-$emulator_port.pid")" >>"$pids_file"
		fi
	fi
	;;
external)
	[ -n "${AWS_ENDPOINT_URL:-}" ] || die "WEIR_EMULATOR=external needs AWS_ENDPOINT_URL, e.g. http://127.0.0.1:4566 for LocalStack"
	say "using the endpoint $AWS_ENDPOINT_URL"
	;;
*) die "WEIR_EMULATOR=$emulator_mode is not embedded or external" ;;
esac

# --- resources, from template.yaml ------------------------------------------

say "creating the resources of stack $stack from template.yaml"
env_text="$("$bin/weir-resources" create --stack "$stack" --template template.yaml 2>"$run_dir/logs/resources.log")" ||
	die "weir-resources could not create the stack's resources; its log: $(cat "$run_dir/logs/resources.log")"
while IFS='=' read -r name value; do
	[ -n "$name" ] || continue
	value="${value#\'}"
	export "$name=${value%\'}"
done <<<"$env_text"

# --- the processes ----------------------------------------------------------

api_url="http://127.0.0.1:$api_port"
export WEIR_API_URL="$api_url"

# The binaries are on the controller's PATH, where the process launcher
# finds the worker command.
PATH="$bin:$PATH" python3 -c "$own_group" "$bin/weir-controller" --launcher process \
	--process-command "$worker_command" \
	--process-state-dir "$run_dir/workers" \
	--health-addr "127.0.0.1:$health_port" \
	--log-format text >"$run_dir/logs/controller.log" 2>&1 </dev/null &
controller_pid=$!
track controller "$controller_pid"
python3 -c "$own_group" "$bin/weir-api" -addr "127.0.0.1:$api_port" >"$run_dir/logs/api.log" 2>&1 </dev/null &
api_pid=$!
track api "$api_pid"
python3 -c "$own_group" "$bin/weir-localscheduler" >"$run_dir/logs/scheduler.log" 2>&1 </dev/null &
track scheduler $!

# wait_for polls a URL until it answers, while the process that serves it
# is alive.
wait_for() {
	local url="$1" pid="$2" name="$3" i
	for ((i = 0; i < 300; i++)); do
		curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
		alive "$pid" || die "$name exited during start-up; its log ($run_dir/logs/$name.log):
$(tail -n 20 "$run_dir/logs/$name.log")"
		sleep 0.1
	done
	die "$name did not answer at $url within 30 s; see $run_dir/logs/$name.log"
}
wait_for "$api_url/jobs" "$api_pid" api
wait_for "http://127.0.0.1:$health_port/healthz" "$controller_pid" controller

# --- the demo job -----------------------------------------------------------

set +e
"$bin/weirctl" create -f "$demo_job" >&2
created=$?
set -e
case "$created" in
0) ;;
3) say "the demo job exists already on this emulator: watching it as it is" ;;
*) die "weirctl create failed (exit $created)" ;;
esac
job_id="$(sed -n 's/^id:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$demo_job" | head -n 1)"

cat >&2 <<EOF

weir is running on the emulator at $AWS_ENDPOINT_URL (stack $stack):
  config API         $api_url
  controller         http://127.0.0.1:$health_port/readyz
  logs               $run_dir/logs (workers: $run_dir/workers)
From a second terminal:
  export WEIR_API_URL=$api_url
  $bin/weirctl list
  $bin/weirctl get $job_id
Ctrl-C stops everything this run started.

EOF

# --- watch until Ctrl-C -----------------------------------------------------

watch_args=(watch "$job_id")
[ -z "$run_for" ] || watch_args+=(--for "$run_for")
# weirctl runs in the background and is waited for: a trapped signal
# interrupts wait at once, where a foreground child would delay it.
python3 -c "$own_group" "$bin/weirctl" "${watch_args[@]}" &
watch_pid=$!
track weirctl "$watch_pid"
wait "$watch_pid" || true
