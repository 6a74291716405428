#!/bin/bash
# A landscape_dist sweep as a SLURM batch job: a Ray head on the first node, Ray workers on the
# others, the sweep's driver on the head. Submit with
#
#     sbatch scripts/slurm_sweep.sh configs/digits.yaml out/digits [KEY=VALUE ...]
#
# Adjust the #SBATCH lines (nodes, CPUs, GPUs, time, partition) to your site; options given to
# sbatch override them (sbatch --nodes=1 --cpus-per-task=2 ...). Every node needs the project
# installed (pip install ".[cluster]"). The output directory is written by the driver alone; a
# data.source given as a file must be readable on every node. Submitting the same job again after
# a time-out or an scancel resumes the sweep from its journal.
#
# Environment: RAY_PORT (default 6379), RAY_HEAD_IP (default: the head node's address),
# WAIT_TIMEOUT (seconds for the head and every worker to join, default 300). Each Ray node's own
# output goes to ray-<job id>-<node>.log in the folder the job was submitted from.
#SBATCH --job-name=landscape
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
##SBATCH --gpus-per-node=4        # uncomment on GPU nodes: each node's GPUs go to its Ray node
##SBATCH --partition=YOUR_PARTITION

set -euo pipefail

CONFIG=${1:?usage: sbatch slurm_sweep.sh CONFIG OUT [KEY=VALUE ...]}
OUT=${2:?usage: sbatch slurm_sweep.sh CONFIG OUT [KEY=VALUE ...]}
shift 2
PORT=${RAY_PORT:-6379}
CPUS=${SLURM_CPUS_PER_TASK:-1}
# GPUs of each node, as SLURM gives them (--gpus-per-node, --gres=gpu:N or --gpus-per-task)
GPUS=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-${SLURM_GPUS_PER_TASK:-0}}}
GPUS=${GPUS##*:}  # 'a100:4' -> 4

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD=${NODES[0]}
HEAD_IP=${RAY_HEAD_IP:-$(srun --overlap --nodes=1 --ntasks=1 -w "$HEAD" hostname --ip-address | awk '{print $1}')}
ADDRESS="$HEAD_IP:$PORT"

# One token per job for Ray's token authentication, shared with every step through the
# environment (srun passes it on): the head, the workers and the driver all need it.
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(python -c "import secrets; print(secrets.token_hex(32))")
export RAY_AUTH_TOKEN

# This job's Ray processes are the srun steps started here; stopping them stops exactly those
# (a bare 'ray stop' would end every Ray process on the node, other jobs' and users' included).
STEPS=()
stop_ray() {
    if [ ${#STEPS[@]} -gt 0 ]; then
        kill -TERM "${STEPS[@]}" 2>/dev/null || true
        wait "${STEPS[@]}" 2>/dev/null || true
        echo "stopped this job's Ray processes (${#STEPS[@]} srun steps)"
    fi
}
trap stop_ray EXIT

LOGS=${SLURM_SUBMIT_DIR:-.}/ray-${SLURM_JOB_ID:-job}
echo "Ray head on $HEAD ($ADDRESS), ${#NODES[@]} nodes, $CPUS CPUs and $GPUS GPUs each; Ray's logs: $LOGS-*.log"
srun --overlap --nodes=1 --ntasks=1 -w "$HEAD" \
    ray start --head --node-ip-address="$HEAD_IP" --port="$PORT" --include-dashboard=false \
    --num-cpus="$CPUS" --num-gpus="$GPUS" --block > "$LOGS-$HEAD.log" 2>&1 &
STEPS+=($!)
landscape-dist wait-cluster "$ADDRESS" --nodes 1 --timeout "${WAIT_TIMEOUT:-300}"

for node in "${NODES[@]:1}"; do
    srun --overlap --nodes=1 --ntasks=1 -w "$node" \
        ray start --address="$ADDRESS" --num-cpus="$CPUS" --num-gpus="$GPUS" --block \
        > "$LOGS-$node.log" 2>&1 &
    STEPS+=($!)
done
landscape-dist wait-cluster "$ADDRESS" --nodes "${#NODES[@]}" --timeout "${WAIT_TIMEOUT:-300}"

# cluster.num_workers is left automatic: one actor per GPU, or one per CPU on CPU nodes.
landscape-dist sweep "$CONFIG" --out "$OUT" --address "$ADDRESS" --no-progress "$@"
landscape-dist plot "$OUT/surface.h5"
