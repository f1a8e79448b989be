#!/usr/bin/env bash
# A single-node Slurm on this machine, to run the Slurm profile for real:
#   workflow/profiles/slurm/local-cluster.sh start    # installs Debian's slurm-wlm when missing; idempotent
#   workflow/profiles/slurm/local-cluster.sh status
#   workflow/profiles/slurm/local-cluster.sh stop
# munge, slurmctld and slurmd on loopback; one partition "local" with this machine's cores and memory
# (PRUNEBENCH_SLURM_CPUS=n declares n CPUs instead: more jobs at once than cores).
# No accounting daemon (slurmdbd): the profile polls job states with squeue, whose view of finished
# jobs lasts MinJobAge seconds (set long below), and submits without an account.
set -euo pipefail

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
STATE=/var/lib/prunebench-slurm
LOGS=/var/log/prunebench-slurm

install_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
  echo "installing Debian's slurm-wlm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm >/dev/null
}

MARKER="# Written by prunebench's workflow/profiles/slurm/local-cluster.sh: a one-node test cluster."

write_config() {
  local cpus mem_mb
  if [ -f "$CONF" ] && [ "$(head -n1 "$CONF")" != "$MARKER" ]; then
    echo "$CONF exists and was not written by this script: not touching a real Slurm's configuration" >&2
    exit 1
  fi
  cpus=${PRUNEBENCH_SLURM_CPUS:-$(nproc)}
  # Leave 1 GiB to the daemons and the submitting Snakemake.
  mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  $SUDO mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS"
  $SUDO tee "$CONF.new" >/dev/null <<EOF
$MARKER
ClusterName=prunebench
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No cgroups in a container: track processes by parent id, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# The declared CPUs win over the detected ones (PRUNEBENCH_SLURM_CPUS).
SlurmdParameters=config_overrides
# squeue reports a finished job for this long: the status polls need it without sacct.
MinJobAge=3600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  if [ -f "$CONF" ] && cmp -s "$CONF.new" "$CONF"; then
    $SUDO rm "$CONF.new"
  else
    stop  # the daemons read the configuration at start
    $SUDO mv "$CONF.new" "$CONF"
  fi
}

running() { pgrep -x "$1" >/dev/null; }

launch_daemons() {
  if ! running munged; then
    $SUDO mkdir -p /run/munge && $SUDO chown munge:munge /run/munge
    $SUDO runuser -u munge -- /usr/sbin/munged
  fi
  running slurmctld || $SUDO slurmctld
  running slurmd || $SUDO slurmd -N "$NODE"
}

# Waits up to $1 seconds for the node to take jobs; true when it does.
node_up() {
  local state
  for _ in $(seq "$1"); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$state" in
      idle|mixed|allocated|completing) return 0 ;;  # responding (no '*'); busy with an earlier DAG's jobs is up too
      drain*|inval*|down) $SUDO scontrol update NodeName="$NODE" State=RESUME ;;  # left so by an earlier config or crash
    esac
    running slurmd || $SUDO slurmd -N "$NODE"  # exited before the controller answered: start it again
    sleep 1
  done
  return 1
}

diagnose() {
  echo "the local Slurm did not come up; node state: '$(sinfo -h -n "$NODE" -o '%T %E' 2>&1)'" >&2
  for daemon in munged slurmctld slurmd; do running "$daemon" || echo "$daemon is not running" >&2; done
  for log in "$LOGS/slurmctld.log" "$LOGS/slurmd.log"; do
    echo "--- last lines of $log" >&2
    $SUDO tail -n 25 "$log" >&2 || true
  done
}

start() {
  install_slurm
  write_config
  launch_daemons
  node_up 60 && { sinfo; return; }
  echo "not up after 60 s: restarting the daemons once" >&2
  stop
  launch_daemons
  node_up 60 && { sinfo; return; }
  diagnose
  exit 1
}

stop() {
  for daemon in slurmd slurmctld munged; do
    if running "$daemon"; then $SUDO pkill -x "$daemon"; fi
  done
  for _ in $(seq 20); do
    running slurmd || running slurmctld || return 0
    sleep 0.5
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo && squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
