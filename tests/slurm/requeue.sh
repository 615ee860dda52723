#!/usr/bin/env bash
# slurm/zfold-1node.sbatch on a single-node test cluster: interrupt the job with USR1 to its batch shell
# (as --signal=B:USR1@T does before a time limit), check that it stops with exit 3, requeues itself and the
# requeued job resumes, and that its shards are byte-identical to a direct 2-rank mpirun run.
# Needs root and slurm-wlm + munge (scripts/install-deps.sh); starts and stops the daemons itself.
set -uo pipefail   # no -e: every check reports instead of ending the test
exec </dev/null
source "$(dirname "$0")/../lib.sh"
zfold_in=$zfold
abort() { bad "$*"; finish; exit 1; }
t0=$SECONDS
elapsed() { echo "$((SECONDS - t0)) s"; }

for tool in sbatch scontrol squeue scancel munged slurmctld slurmd; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || abort "$tool not installed (run scripts/install-deps.sh)"
done
[ "$(id -u)" -eq 0 ] || abort "needs root (starts munged, slurmctld, slurmd)"

# one test cluster per machine at a time; the lock is not passed on to the daemons (9>&-)
exec 9>/tmp/zfold-slurm-test.lock
flock -w 300 9 || abort "another slurm test holds /tmp/zfold-slurm-test.lock"
for pf in /run/munge/munged.pid /run/slurm/slurmctld.pid /run/slurm/slurmd.pid; do
  if [ -s "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; then
    abort "a cluster is already running ($pf); stop it with slurm/stop-test-slurm.sh"
  fi
done
cleanup() {
  bash "$root/slurm/stop-test-slurm.sh" 9>&- || echo "warning: stop-test-slurm.sh failed"
  rm -rf "$work"
}
trap cleanup EXIT
bash "$root/slurm/start-test-slurm.sh" 9>&- || abort "test cluster did not start"

# a private copy of the binary: a concurrent rebuild cannot change it between the two runs
cp "$zfold_in" "$work/zfold" || abort "cannot copy $zfold_in"
zfold=$work/zfold
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
# 96 windows: ~2 s a block on 2 cores, time to interrupt between blocks
run_yaml "$fixtures/stories260k" 96 512 > "$work/run.yaml"

# reference: the same quantization launched directly
# (into the same output path: the shards record it; then moved aside)
mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/ref.log" 2>&1 \
  || abort "reference run: $(tail -3 "$work/ref.log")"
mv "$work/out" "$work/ref" || abort "no reference output"
ok "direct mpirun -np 2 reference run ($(elapsed))"

# job state helpers: scontrol can hang when slurmctld is in trouble, hence timeout
field() { timeout 10 scontrol show job "$1" 2>/dev/null | grep -oE "(^|[[:space:]])$2=[^[:space:]]*" | head -1 | sed 's/.*=//' || true; }
blocks_done() { grep -o '"block":' "$work/out/manifest.json" 2>/dev/null | wc -l; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds or the deadline passes
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || { echo "  timed out after $limit s waiting for $what"; return 1; }
    sleep 0.2
  done
}

mkdir -p "$work/logs"   # slurm does not create the --output directory (the job would fail)
job=$(timeout 30 sbatch --parsable --ntasks=2 --time=00:10:00 --chdir="$work" --output="$work/logs/job-%j.out" \
  --export="ALL,ZFOLD=$zfold,CONFIG=$work/run.yaml,ZFOLD_SLURM_DIR=$root/slurm" \
  "$root/slurm/zfold-1node.sbatch" 2>"$work/sbatch.err")
job=${job%%;*}
[ -n "$job" ] || abort "sbatch failed: $(cat "$work/sbatch.err")"
log=$work/logs/job-$job.out
echo "submitted job $job"
show_job() { echo "  job $job: $(timeout 10 scontrol show job "$job" 2>/dev/null | grep -oE '(JobState|Reason|Restarts|ExitCode)=[^[:space:]]*' | tr '\n' ' ')"; }
finished() { case $(field "$job" JobState) in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) return 0;; esac; return 1; }

started() { [ "$(blocks_done)" -ge 1 ] || finished; }
if wait_for 120 "the first finished block" started; then
  n=$(blocks_done)
  if [ "$n" -ge 5 ] || finished; then
    bad "job finished before it could be interrupted ($n blocks)"
  else
    ok "job running, $n block(s) done ($(elapsed))"
  fi
else
  show_job; tail -5 "$log" 2>/dev/null; abort "no block finished"
fi

# USR1 to the batch shell only, like --signal=B:USR1@T; its trap forwards it to the job step
timeout 30 scancel --signal=USR1 --batch "$job" || bad "scancel --signal=USR1 --batch failed"
requeued() { [ "$(field "$job" Restarts)" = 1 ] && [ "$(field "$job" JobState)" = PENDING ]; }
if wait_for 60 "the requeue (Restarts=1, PENDING)" requeued; then
  ok "job requeued itself: Restarts=1 ($(elapsed))"
  # skip the requeue back-off (cred_expire), but not within the second of the requeue: a launch in that
  # second fails with "Job credential revoked" (slurmctld.log), which ends the job
  sleep 2
  wait_for 20 "StartTime=now to be accepted" timeout 10 scontrol update JobId="$job" StartTime=now >/dev/null 2>&1 \
    || echo "  (could not skip the back-off; waiting for it)"
else
  show_job; bad "job not requeued"
fi

done_ok() { [ "$(field "$job" JobState)" = COMPLETED ]; }
if wait_for 150 "the requeued job to complete" finished && done_ok; then
  ok "requeued job completed: $(field "$job" JobState) ExitCode=$(field "$job" ExitCode) Restarts=$(field "$job" Restarts) ($(elapsed))"
else
  show_job; bad "job did not complete"
fi

# the log (appended across the restart) shows the interruption, the exit 3, the requeue and the resume
if [ -f "$log" ]; then
  check_log() { grep -qE -- "$1" "$log" && ok "log: $2" || bad "log lacks $2 ('$1')"; }
  check_log 'batch shell got SIGUSR1' "the forwarded USR1"
  check_log 'stopped by a signal after block [0-9]+ of 5' "zfold's stop after a block"
  check_log 'step exited with code 3' "exit code 3"
  check_log 'requeueing job' "the requeue"
  check_log "job $job .*restart 1" "the restarted job (SLURM_RESTART_COUNT=1)"
  check_log 'resuming .*: [1-4] of 5 blocks already done' "the resume"
  check_log 'step exited with code 0' "the final exit code 0"
else
  bad "no job log $log"
fi

out=$(timeout 60 "$zfold" compare "$work/ref" "$work/out" 2>&1)
echo "$out" | grep -q "byte-identical blocks: 5 of 5" && ok "all 5 shards byte-identical to the direct run" \
  || bad "shards differ from the direct run:"$'\n'"$out"
cmp -s "$work/ref/unquantized.h5" "$work/out/unquantized.h5" && ok "unquantized.h5 identical" \
  || bad "unquantized.h5 differs"

if [ "$failed" -ne 0 ]; then
  [ -f "$log" ] && { echo "--- job log"; cat "$log"; }
  echo "--- slurmctld.log on job $job"; grep -E "JobId=$job( |$)" /var/log/slurm/slurmctld.log | tail -20
fi
echo "total $(elapsed)"
finish
