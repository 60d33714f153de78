#!/usr/bin/env bash
# No hang when a rank dies: a failing rank thread stops the others at once; a rank thread that
# vanishes without a word is caught by --dist-timeout; a worker process killed with SIGKILL under
# the --gpus launcher (CPU workers over TCP) fails the whole run, naming the rank, and a worker
# that fails has its message repeated by the launcher; a rendezvous at
# a closed port, or with a rank that never comes, fails within the timeout naming the address.
set -u
. "$(dirname "$0")/common.sh"

# expect_fail NAME MAX_SECONDS PATTERN LOG cmd...: exits non-zero within MAX_SECONDS, LOG matches.
expect_fail() {
  local name=$1 max=$2 pat=$3 log=$4; shift 4
  local t0=$(date +%s.%N)
  "$@" >/dev/null 2>"$log"; local rc=$?
  local dt=$(echo "$(date +%s.%N) - $t0" | bc)
  if [ $rc -eq 0 ]; then echo "FAIL $name: exit 0, want an error"; fail=1; return; fi
  if [ "$(echo "$dt > $max" | bc)" = 1 ]; then echo "FAIL $name: took ${dt}s, want under ${max}s"; fail=1; fi
  grep -q -- "$pat" "$log" || { echo "FAIL $name: no \"$pat\" in:"; cat "$log"; fail=1; }
}

QUARRY_TEST_FAULT=fail-rank-at-step:1:2 expect_fail "failing rank thread" 20 "rank 1 failed: step 2: test fault" "$W/fail.log" \
  train "$W/fail" full --ranks 3 --zero 1
QUARRY_TEST_FAULT=vanish-rank-at-step:2:2 expect_fail "vanished rank thread" 20 "dist-timeout" "$W/vanish.log" \
  train "$W/vanish" lora --ranks 3 --zero 2 --dist-timeout 2
QUARRY_TEST_FAULT=kill-rank-after-step:1:2 expect_fail "killed worker process" 30 "rank 1 was killed by signal 9" \
  "$W/kill.log" train "$W/kill" full --gpus 2 --device cpu --zero 2 --dist-timeout 20
[ -d "$W/kill/final" ] && { echo "FAIL killed worker: the run wrote final/"; fail=1; }
QUARRY_TEST_FAULT=fail-rank-at-step:1:2 expect_fail "failing worker process" 30 \
  "the run failed on rank 1: step 2: test fault on rank 1" "$W/procfail.log" train "$W/procfail" lora --gpus 2 --device cpu

# A port nobody listens on: bind one, note it, close it.
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port expect_fail "rendezvous, closed port" 10 \
  "127.0.0.1:$port" "$W/port.log" train "$W/port" lora --dist-timeout 2
RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port expect_fail "rendezvous, missing rank" 10 \
  "only 1 of 2 ranks arrived" "$W/alone.log" train "$W/alone" lora --dist-timeout 2
# Launcher environments: Slurm's node list gives rank 0's host.
SLURM_PROCID=1 SLURM_NTASKS=2 SLURM_LOCALID=1 SLURM_STEP_ID=0 SLURM_JOB_NODELIST="nohost-q[07-09,11],gpu7" MASTER_PORT=$port \
  expect_fail "slurm node list" 20 "nohost-q07:$port" "$W/slurm.log" train "$W/slurm" lora --dist-timeout 1
[ $fail -eq 0 ] && echo "test_dist_faults: all checks passed"
exit $fail
