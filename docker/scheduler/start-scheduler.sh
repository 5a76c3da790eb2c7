#!/bin/sh
# Entry point of the scheduler image: run the container's command on a cron schedule.
#
#   start-scheduler orchestrator nightly studies/nightly.yaml --set storage=/shared/runs/nightly
#
# NIGHTLY_SCHEDULE   five cron fields, container time (UTC unless TZ is set); default "0 2 * * *"
# SCHEDULER_METRICS  where supercronic serves Prometheus metrics (the healthcheck reads them);
#                    default 127.0.0.1:9746, inside the container only
#
# The crontab is written at start, so the schedule comes from the environment (docker/.env), and
# checked with `supercronic -test` so a bad expression stops the container at once instead of never
# firing. supercronic then runs in the foreground as PID 1: job output goes to `docker logs`, the
# environment (RAY_ADDRESS, MLFLOW_TRACKING_URI, RAY_AUTH_TOKEN, ...) reaches the job, and a run that
# is still going when the next one is due makes supercronic skip that one.
set -eu

if [ "$#" -eq 0 ]; then
    echo "start-scheduler: no job given (the container's command is the job to schedule)" >&2
    exit 2
fi

schedule="${NIGHTLY_SCHEDULE:-0 2 * * *}"
crontab="${TMPDIR:-/tmp}/vared.crontab"

# Each argument single-quoted for /bin/sh, which supercronic runs the line with.
job=""
for arg in "$@"; do
    quoted=$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")
    job="$job '$quoted'"
done

printf '%s%s\n' "$schedule" "$job" > "$crontab"
echo "start-scheduler: $(cat "$crontab")"
supercronic -test "$crontab"
exec supercronic -passthrough-logs -prometheus-listen-address "${SCHEDULER_METRICS:-127.0.0.1:9746}" "$crontab"
