#!/bin/bash
# Stops the test cluster of start-test-slurm.sh by the PIDs in its pid files (never by name).
exec </dev/null
if [ -s /run/slurm/slurmctld.pid ] && kill -0 "$(cat /run/slurm/slurmctld.pid)" 2>/dev/null; then
  timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
  deadline=$(( $(date +%s) + 15 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ -z "$(timeout 5 squeue -h 2>/dev/null || echo busy)" ] && break
    sleep 0.2
  done
fi
rc=0
for pf in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$pf" ] || continue
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # a slurmd whose controller is gone may ignore TERM for a long time
    if kill -0 "$pid" 2>/dev/null; then echo "pid $pid ($pf) did not stop; sending KILL"; kill -KILL "$pid" || rc=1; fi
    echo "stopped $pf ($pid)"
  fi
  rm -f "$pf"
done
exit $rc
