#!/bin/bash
# Starts a single-node test cluster (munged, slurmctld, slurmd) from slurm.conf.test; prints the PIDs.
# Root only; installs the config as /etc/slurm/slurm.conf. Stop it with stop-test-slurm.sh.
set -euo pipefail
exec </dev/null   # daemons must not inherit a closed stdin: slurmd then fails every launch
HERE=$(cd "$(dirname "$0")" && pwd)
CONF=${SLURM_TEST_CONF:-$HERE/slurm.conf.test}
fail() { echo "start-test-slurm: $*" >&2; tail -n 20 /var/log/slurm/*.log /var/log/munge/munged.log 2>/dev/null >&2; exit 1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# a daemon writes its pid file shortly after forking: missing for up to 10 s is not death
dead() {
  if [ -s "$1" ]; then kill -0 "$(cat "$1")" 2>/dev/null && return 1; return 0; fi
  [ "$(date +%s)" -ge $((t_start + 10)) ]
}
for pf in /run/munge/munged.pid /run/slurm/slurmctld.pid /run/slurm/slurmd.pid; do
  alive "$pf" && fail "already running ($pf: $(cat "$pf")); stop it first with stop-test-slurm.sh"
done
[ "$(id -u)" -eq 0 ] || fail "must run as root"
rm -f /run/munge/munged.pid /run/slurm/slurmctld.pid /run/slurm/slurmd.pid   # stale ones (after a crash)
mkdir -p /etc/slurm
# the node line takes this machine's CPU layout (slurmd -C) so the node does not drain
layout=$(/usr/sbin/slurmd -C 2>/dev/null | sed -n 's/^NodeName=[^ ]* \(CPUs=.*\) RealMemory=.*/\1/p' || true)
if [ -n "$layout" ]; then
  sed "s/^NodeName=localhost .*/NodeName=localhost NodeAddr=127.0.0.1 $layout RealMemory=1000 State=UNKNOWN/" "$CONF" > /etc/slurm/slurm.conf
else
  install -m 644 "$CONF" /etc/slurm/slurm.conf
fi
chmod 644 /etc/slurm/slurm.conf
mkdir -p /run/munge /run/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge; chmod 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge; /usr/sbin/mungekey --create --force
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
t0=$(date +%s.%N)
runuser -u munge -- /usr/sbin/munged >/dev/null 2>&1 || fail "munged did not start"
for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
munge -n | unmunge >/dev/null || fail "munge round-trip failed"
/usr/sbin/slurmctld -c >/dev/null 2>&1 || fail "slurmctld exited"   # -c: forget jobs of earlier runs
/usr/sbin/slurmd -N localhost >/dev/null 2>&1 || fail "slurmd exited" # NodeName is localhost, not the hostname
t_start=$(date +%s); deadline=$((t_start + 60)); st=
while :; do
  ! dead /run/slurm/slurmctld.pid || fail "slurmctld died"
  ! dead /run/slurm/slurmd.pid    || fail "slurmd died"
  st=$(timeout 5 sinfo -h -N -n localhost -o '%t' 2>/dev/null || true)
  [ "$st" = idle ] && break
  [ "$(date +%s)" -lt "$deadline" ] || fail "node not idle after 60 s (state '$st')"
  sleep 0.1
done
timeout 60 srun -N1 -n1 true || fail "probe 'srun true' failed"   # end-to-end launch probe
t1=$(date +%s.%N)
echo "slurm up: node $st, probe ok, after $(echo "$t1 - $t0" | bc) s"
echo "munged=$(cat /run/munge/munged.pid) slurmctld=$(cat /run/slurm/slurmctld.pid) slurmd=$(cat /run/slurm/slurmd.pid)"
