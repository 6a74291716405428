#!/usr/bin/env bash
# Runs the README's cluster recipes for real on this machine, loopback only:
#
#   1. Ray Jobs: a Ray head with its dashboard ('ray start --head'), a sweep submitted with
#      'ray job submit', its surface compared with an in-process sweep of the same config.
#   2. SLURM: a single-node cluster (munged, slurmctld, slurmd on this machine), the sweep
#      submitted with 'sbatch scripts/slurm_sweep.sh', cancelled mid-sweep with 'scancel', then
#      submitted again: the second job resumes from the journal, and its surface equals an
#      in-process sweep.
#
# Needs root for part 2 (installs Debian's slurm-wlm and munge with apt-get when missing; the
# daemons run with a configuration of their own under a temporary folder, /etc is not changed).
# Every daemon it starts is stopped by its PID at the end, whatever happens. Prints the two job
# logs' last lines; exits non-zero when a recipe fails.
#
#     scripts/check_cluster_recipes.sh [ray|slurm|all]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PART=${1:-all}
WORK=$(mktemp -d /tmp/landscape-recipes.XXXXXX)
PIDS=()
T0=$SECONDS

say() { echo "check: $*"; }
fail() { echo "check: FAILED: $*" >&2; exit 1; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    say "daemons stopped (PIDs ${PIDS[*]:-none}); $((SECONDS - T0)) s in all"
    if [ "$PASSED" = 1 ]; then
        rm -rf "$WORK"
    else
        say "logs kept in $WORK"
    fi
}
PASSED=0
trap cleanup EXIT

wait_until() {  # wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$what did not happen within $limit s"
        sleep 0.2
    done
}

python -m pip install --quiet --disable-pip-version-check -e ".[cluster]"

# A sweep long enough to cancel in the middle (400 tiles, ten seconds or so), small enough for CI.
CONFIG="$WORK/small.yaml"
cat > "$CONFIG" <<'YAML'
model: {source: parabola}
data: {source: parabola}
grid:
  x: {min: -1.0, max: 1.0, points: 320}
  y: {min: -1.0, max: 1.0, points: 320}
  tile: [16, 16]
slices:
  - {name: random, directions: {kind: random, seed: 3}}
cluster: {num_workers: 2, cpus_per_worker: 1}
plot: {formats: [png]}
YAML
landscape-dist sweep "$CONFIG" --out "$WORK/reference" --in-process --no-progress
same_surface() {  # same_surface DIR: DIR/surface.h5 equals the in-process reference
    python - "$WORK/reference/surface.h5" "$1/surface.h5" <<'PY'
import sys

import h5py
import numpy as np

with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    ref, got = a["slices/random/values/loss"][...], b["slices/random/values/loss"][...]
    assert b["slices/random/done"][...].all(), "points not done"
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    print(f"check: {sys.argv[2]} equals the in-process sweep ({ref.size} points, rtol 1e-5)")
PY
}

if [ "$PART" = ray ] || [ "$PART" = all ]; then
    say "part 1: Ray Jobs"
    # the README's recipe: a head with the dashboard; token authentication on, the token in
    # Ray's default place (~/.ray/auth_token), read by every command started with RAY_AUTH_MODE
    export RAY_AUTH_MODE=token
    ray get-auth-token --generate >/dev/null
    ray start --head --node-ip-address=127.0.0.1 --port=6390 --dashboard-host=127.0.0.1 \
        --dashboard-port=8265 --num-cpus=2 --block > "$WORK/ray_head.log" 2>&1 &
    PIDS+=($!)
    landscape-dist wait-cluster 127.0.0.1:6390 --nodes 1 --timeout 120
    ray job submit --address http://127.0.0.1:8265 --working-dir . --submission-id landscape-check -- \
        landscape-dist sweep "$CONFIG" --out "$WORK/job" --address auto --no-progress
    ray job logs --address http://127.0.0.1:8265 landscape-check > "$WORK/job.log"
    say "the Ray job's log ends:"
    tail -n 3 "$WORK/job.log"
    same_surface "$WORK/job"
    kill -TERM "${PIDS[-1]}"
    wait "${PIDS[-1]}" || true
    unset 'PIDS[-1]'
    unset RAY_AUTH_MODE
fi

if [ "$PART" = slurm ] || [ "$PART" = all ]; then
    say "part 2: SLURM"
    [ "$(id -u)" = 0 ] || fail "the SLURM part needs root (it starts munged, slurmctld, slurmd)"
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    runuser -u munge -- munged --foreground > "$WORK/munged.log" 2>&1 &
    PIDS+=($!)
    HOST=$(hostname -s)
    export SLURM_CONF="$WORK/slurm.conf"
    mkdir -p "$WORK/slurmctld" "$WORK/slurmd"
    cat > "$SLURM_CONF" <<CONF
ClusterName=check
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$WORK/slurmctld
SlurmdSpoolDir=$WORK/slurmd
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
SlurmctldPort=6917
SlurmdPort=6918
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=check Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    wait_until 30 "munged answering" munge -n
    slurmctld -D -i -f "$SLURM_CONF" > /dev/null 2>&1 &
    PIDS+=($!)
    slurmd -D -f "$SLURM_CONF" > /dev/null 2>&1 &
    PIDS+=($!)
    wait_until 60 "the SLURM node becoming idle" bash -c "sinfo -h -o %T | grep -q idle"
    export RAY_HEAD_IP=127.0.0.1 RAY_PORT=6391  # loopback only
    cd "$WORK"  # the jobs' Ray logs land where they are submitted from
    job=$(sbatch --parsable --nodes=1 --ntasks-per-node=1 --cpus-per-task=2 \
        --output="$WORK/slurm-%j.out" "$ROOT/scripts/slurm_sweep.sh" "$CONFIG" "$WORK/slurm")
    say "submitted job $job; cancelling it once some tiles are done"
    cat > "$WORK/tiles.py" <<'PY'
import os
import sys

from landscape_dist.store.journal import TileJournal

path, least = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
done = sum(r[0] == "tile" for r in TileJournal.read(path)[1]) if os.path.exists(path) else 0
print(done)
sys.exit(0 if done >= least else 1)
PY
    tiles() { python "$WORK/tiles.py" "$WORK/slurm/surface.h5.journal" "$@"; }
    wait_until 240 "the first job finishing 3 tiles" tiles 3
    scancel "$job"
    wait_until 60 "job $job ending" bash -c "! squeue -h -j $job 2>/dev/null | grep -q ."
    [ ! -e "$WORK/slurm/surface.h5" ] || fail "the cancelled job finished before it was cancelled"
    done_before=$(tiles)
    say "job $job cancelled with $done_before tiles in the journal"
    job2=$(sbatch --parsable --wait --nodes=1 --ntasks-per-node=1 --cpus-per-task=2 \
        --output="$WORK/slurm-%j.out" "$ROOT/scripts/slurm_sweep.sh" "$CONFIG" "$WORK/slurm") \
        || fail "the second job failed: $(tail -n 5 "$WORK"/slurm-*.out)"
    job2=${job2%%;*}
    say "the first job's log ends:"
    tail -n 3 "$WORK/slurm-$job.out"
    say "the second job's log ends:"
    tail -n 3 "$WORK/slurm-$job2.out"
    grep -q "tiles resumed" "$WORK/slurm-$job2.out" || fail "the second job did not resume"
    same_surface "$WORK/slurm"
    ! pgrep -f "ray start" >/dev/null || fail "Ray processes of the jobs are still running"
    cd "$ROOT"
fi
PASSED=1
say "passed"
