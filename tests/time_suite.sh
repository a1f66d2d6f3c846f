#!/usr/bin/env bash
# Not part of the suite: times the whole suite on commit BASE and on the working tree, in turn,
# ROUNDS times (default 2), so each pair meets the same hour of a machine whose speed changes
# from hour to hour. Each run gets an empty test database (FISHOPT_TEST_PG, if set: CI starts
# from an empty one) and prints one key=value line: its time and the machine's busy and idle
# core-seconds from /proc/stat.
#
#   CI=true FISHOPT_TEST_PG=... tests/time_suite.sh BASE [ROUNDS] [extra pytest arguments]
set -eu
cd "$(dirname "$0")/.."
base=$1
rounds=${2:-2}
shift; shift || true
python=${PYTHON:-python}
old=$(mktemp -d /tmp/fishopt-base.XXXXXX)
git worktree add -q --detach "$old" "$base"
trap 'git worktree remove --force "$old"' EXIT

cpu() { head -1 /proc/stat | awk '{print $2+$3+$4+$7+$8, $5+$6}'; }
for round in $(seq "$rounds"); do
  for which in base tree; do
    dir=$PWD; [ "$which" = base ] && dir=$old
    if [ -n "${FISHOPT_TEST_PG:-}" ]; then
      admin="${FISHOPT_TEST_PG/+psycopg/}"; db=${admin##*/}
      psql -q "${admin%/*}/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    fi
    read -r busy0 idle0 < <(cpu)
    began=$(date +%s.%N)
    (cd "$dir" && PYTHONPATH=$dir "$python" -m pytest -q -n auto --dist worksteal "$@" \
      > "$old.$which.$round.log" 2>&1) || true
    ended=$(date +%s.%N)
    read -r busy1 idle1 < <(cpu)
    echo "suite round=$round code=$which seconds=$(echo "$ended - $began" | bc)" \
      "busy_core_s=$(( (busy1 - busy0) / 100 )) idle_core_s=$(( (idle1 - idle0) / 100 ))" \
      "result=\"$(tail -1 "$old.$which.$round.log")\""
  done
done
