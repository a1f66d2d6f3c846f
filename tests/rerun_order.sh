#!/usr/bin/env bash
# Not part of the suite: runs the tests that depend on the order of events (signals, trials
# held at an epoch, workers killed, PostgreSQL stopped and started, faults injected while a
# study runs) RUNS times in a row, default 10, and prints how often each passed. A test that
# passes only on some runs is a bug.
#
#   tests/rerun_order.sh [RUNS] [extra pytest arguments]
#
# The PostgreSQL tests need FISHOPT_TEST_PG (and root with pg_ctlcluster for the restart
# ones); without it they are skipped and counted as such. PYTHON picks the interpreter.
set -u
cd "$(dirname "$0")/.."
runs=${1:-10}
shift || true
python=${PYTHON:-python}
tests=(
  "tests/search/test_worker.py::test_study_jobs_3_on_sqlite_share_one_study_exactly"
  "tests/search/test_worker.py::test_study_beside_a_worker_finishes_with_exactly_the_budget"
  "tests/search/test_worker.py::test_sigterm_once_finishes_the_trial_twice_stops_it_now"
  "tests/search/test_worker.py::test_sigkill_all_workers_then_one_retries_stale_trials_first"
  "tests/search/test_worker.py::test_study_jobs_forwards_each_ctrl_c_once_and_divides_the_cores"
  "tests/search/test_worker.py::test_worker_ctrl_c_finishes_the_trial_study_sigterm_stops_it"
  "tests/search/test_worker.py::test_a_worker_that_can_no_longer_write_its_sqlite_file_exits_75"
  "tests/cli/test_cli.py::test_ctrl_c_leaves_no_running_trial_and_the_study_resumes"
  "tests/storage/test_postgres.py"
  "tests/storage/test_pgbouncer.py::test_a_pooler_that_dies_costs_one_line_and_the_trial_is_retried"
  "tests/storage/test_chaos.py::test_chaos_on_postgresql"
  "tests/storage/test_chaos.py::test_chaos_on_sqlite"
  "tests/test_forkserver.py"
)
results=$(mktemp)
logs=$(mktemp -d /tmp/rerun_order.XXXXXX)  # a run with a failure keeps its whole output here
trap 'rm -f "$results"' EXIT
for i in $(seq "$runs"); do
  "$python" -m pytest -q -p no:cacheprovider -rA "$@" "${tests[@]}" >"$logs/run$i.log" 2>&1
  grep -E '^(PASSED|FAILED|ERROR|SKIPPED) ' "$logs/run$i.log" >>"$results"
  grep -qE '^(FAILED|ERROR) ' "$logs/run$i.log" || rm "$logs/run$i.log"
  echo "run $i of $runs: $(grep -c '^PASSED' "$results") passes so far" >&2
done
[ -n "$(ls "$logs")" ] && echo "output of the runs with a failure: $logs" || rmdir "$logs"
echo "order-dependent tests, $runs runs:"
awk '{ id = ($1 == "SKIPPED") ? $3 " (skipped)" : $2; n[id]++; if ($1 == "PASSED") p[id]++ }
     END { for (id in n) printf "%3d/%d passed  %s\n", p[id], n[id], id }' "$results" | sort -k2
