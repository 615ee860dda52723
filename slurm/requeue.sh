# Shared by the zfold-*.sbatch templates (sourced): run a job step, forward the warning signal to it,
# and requeue the job when zfold stopped resumably (exit 3), so the requeued job resumes the run.
#
# `#SBATCH --signal=B:USR1@T` signals only the batch shell, so the shell traps USR1 (and TERM: time limit,
# scancel) and sends USR1 to the launcher (srun and mpirun both pass USR1 on to the ranks); zfold then
# finishes the block in progress, writes its shard and exits 3. Exit 3 requeues the job unless the shell got
# SIGTERM: that is scancel (stop for good) or preemption/the hard limit (Slurm decides; with --requeue a
# preempted job is requeued by Slurm). ZF_REQUEUE=0 turns the requeue off.

zf_step_pid=
zf_nsig=0
zf_got_term=
zf_requeued=

zf_log() { echo "zfold-slurm: $(date '+%F %T') $*"; }

zf_forward() {  # trap handler: $1 is the signal the batch shell got
  zf_nsig=$((zf_nsig + 1))
  [ "$1" != TERM ] || zf_got_term=1
  [ -z "$zf_requeued" ] || return 0
  zf_log "batch shell got SIG$1; asking the step to stop after the current block (SIGUSR1 to pid $zf_step_pid)"
  if [ -n "$zf_step_pid" ]; then kill -USR1 "$zf_step_pid" 2>/dev/null || true; fi
}

# zf_run COMMAND...: runs the step, exits the batch script with its exit code (after a requeue: 3)
zf_run() {
  zf_log "job ${SLURM_JOB_ID:-?} on ${SLURM_JOB_NODELIST:-?}, restart ${SLURM_RESTART_COUNT:-0}: $*"
  trap 'zf_forward USR1' USR1
  trap 'zf_forward TERM' TERM
  "$@" &
  zf_step_pid=$!
  local n rc r
  while :; do
    n=$zf_nsig rc=0
    wait "$zf_step_pid" || rc=$?
    # wait returns >128 when a trapped signal interrupts it: the step may still be running
    if [ "$zf_nsig" -ne "$n" ] && [ "$rc" -gt 128 ]; then
      kill -0 "$zf_step_pid" 2>/dev/null && continue
      r=0; wait "$zf_step_pid" || r=$?     # already reaped: its status, or 127 if rc was already it
      [ "$r" -eq 127 ] || rc=$r
    fi
    break
  done
  zf_log "step exited with code $rc"
  if [ "$rc" -eq 3 ] && [ -n "$zf_got_term" ]; then
    zf_log "interrupted by SIGTERM (scancel, preemption or time limit): not requeueing; submit again to resume"
  elif [ "$rc" -eq 3 ] && [ "${ZF_REQUEUE:-1}" != 0 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    zf_requeued=1
    zf_log "interrupted, resumable (exit 3): requeueing job $SLURM_JOB_ID; the requeued job resumes the run"
    # Slurm then ends this script (or it exits here first) and queues the job again
    scontrol requeue "$SLURM_JOB_ID" || zf_log "scontrol requeue failed; submit the job again to resume"
  fi
  exit "$rc"
}
