#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the allocation tests (CI) and for developers.
#
#   scripts/slurm.sh install   apt-get install Debian's slurmctld slurmd slurm-client munge (root)
#   scripts/slurm.sh start     start munged, slurmctld and slurmd by hand (no systemd), wait until the
#                              node is idle; prints `export SLURM_CONF=...` for your shell
#   scripts/slurm.sh stop      stop the daemons it started (by the pids it recorded)
#   scripts/slurm.sh status    exit 0 when the cluster answers
#   scripts/slurm.sh env       print `export SLURM_CONF=...`
#
# Everything lives under $HYPERLOOM_SLURM_DIR (default /tmp/hyperloom-slurm): slurm.conf, logs, pid
# files and a fresh StateSaveLocation on every start. Commands find the cluster through SLURM_CONF,
# so a system-wide /etc/slurm is never touched. Runs as root (SlurmUser=root), as CI does.
set -euo pipefail

dir="${HYPERLOOM_SLURM_DIR:-/tmp/hyperloom-slurm}"
conf="$dir/slurm.conf"
ctld_port="${HYPERLOOM_SLURM_CTLD_PORT:-6817}"
slurmd_port="${HYPERLOOM_SLURM_SLURMD_PORT:-6818}"
munge_sock="$dir/munge/munge.socket.2"

die() { echo "slurm.sh: $*" >&2; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install() {
  [ "$(id -u)" -eq 0 ] || die "install needs root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
  local cpus mem_mb
  cpus="$(nproc)"
  # RealMemory a bit under the machine's, else slurmd registers the node as invalid.
  mem_mb="$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)"
  cat >"$conf" <<EOF
ClusterName=hyperloom
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
EnforcePartLimits=ALL
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ReturnToService=2
MinJobAge=30
KillWait=10
InactiveLimit=0
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  command -v slurmctld >/dev/null || die "slurmctld not installed (scripts/slurm.sh install)"
  if status >/dev/null 2>&1; then
    echo "export SLURM_CONF=$conf"
    return 0
  fi
  stop >/dev/null 2>&1 || true
  mkdir -p "$dir"
  rm -rf "$dir/state" "$dir/spool"
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  chown munge:munge "$dir/munge"
  write_conf
  export SLURM_CONF="$conf"
  # munged: its socket and pid file in our directory; it runs as the munge user.
  runuser -u munge -- /usr/sbin/munged --socket="$munge_sock" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --force
  for _ in $(seq 50); do [ -S "$munge_sock" ] && break; sleep 0.1; done
  [ -S "$munge_sock" ] || die "munged did not start (see $dir/munge/munged.log)"
  /usr/sbin/slurmctld -f "$conf" -i
  /usr/sbin/slurmd -f "$conf" -N localhost
  for _ in $(seq 200); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "export SLURM_CONF=$conf"
      return 0
    fi
    sleep 0.2
  done
  echo "--- slurmctld.log" >&2; tail -n 20 "$dir/slurmctld.log" >&2 || true
  echo "--- slurmd.log" >&2; tail -n 20 "$dir/slurmd.log" >&2 || true
  die "the node did not become idle in 40 s"
}

stop() {
  local rc=0
  for p in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    if alive "$p"; then
      local pid
      pid="$(cat "$p")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || rc=1; fi
    fi
    rm -f "$p"
  done
  return $rc
}

status() {
  export SLURM_CONF="$conf"
  [ -f "$conf" ] && alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" && sinfo -h -o %T >/dev/null 2>&1
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) die "usage: scripts/slurm.sh install|start|stop|status|env" ;;
esac
