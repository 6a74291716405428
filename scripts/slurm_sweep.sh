#!/bin/bash
# A landscape_dist sweep as a SLURM batch job: a Ray head on the first node, Ray workers on the
# others, the sweep's driver on the head. Submit with
#
#     sbatch scripts/slurm_sweep.sh configs/digits.yaml out/digits [KEY=VALUE ...]
#
# Adjust the #SBATCH lines (nodes, CPUs, GPUs, time, partition) to your site. The output directory
# must be on a file system every node sees only if data.source is a file; results are written by
# the driver alone. Rerunning the same job after a time-out resumes the sweep.
#SBATCH --job-name=landscape
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
##SBATCH --gpus-per-task=4        # uncomment on GPU nodes
##SBATCH --partition=YOUR_PARTITION

set -euo pipefail

CONFIG=${1:?usage: sbatch slurm_sweep.sh CONFIG OUT [KEY=VALUE ...]}
OUT=${2:?usage: sbatch slurm_sweep.sh CONFIG OUT [KEY=VALUE ...]}
shift 2
PORT=${RAY_PORT:-6379}
CPUS=${SLURM_CPUS_PER_TASK:-1}
GPUS=${SLURM_GPUS_PER_TASK:-0}

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD=${NODES[0]}
HEAD_IP=$(srun --nodes=1 --ntasks=1 -w "$HEAD" hostname --ip-address | awk '{print $1}')
ADDRESS="$HEAD_IP:$PORT"
echo "Ray head on $HEAD ($ADDRESS), ${#NODES[@]} nodes, $CPUS CPUs and $GPUS GPUs each"

srun --nodes=1 --ntasks=1 -w "$HEAD" \
    ray start --head --node-ip-address="$HEAD_IP" --port="$PORT" \
    --num-cpus="$CPUS" --num-gpus="$GPUS" --block &
sleep 15

for node in "${NODES[@]:1}"; do
    srun --nodes=1 --ntasks=1 -w "$node" \
        ray start --address="$ADDRESS" --num-cpus="$CPUS" --num-gpus="$GPUS" --block &
done
sleep 15

# cluster.num_workers is left automatic: one actor per GPU, or one per CPU on CPU nodes.
landscape-dist sweep "$CONFIG" --out "$OUT" --address "$ADDRESS" --no-progress "$@"
landscape-dist plot "$OUT/surface.h5"

ray stop
