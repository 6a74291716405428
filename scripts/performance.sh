#!/usr/bin/env bash
# The rows of the README's performance tables for the driver, the models users bring, the page
# and two fidelities, in one run on one machine; each script prints its own table with the matmul
# ceiling it measured. Usage: scripts/performance.sh [OUT_DIR]   (about 40 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-performance-$(date +%Y%m%d-%H%M)}"
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=3
export LANDSCAPE_DIST_TUNING_CACHE="$out/tuning-cache"  # a cold cache: the first run tunes
run() {  # name, then the command; its table to OUT/name.md, its numbers to OUT/name.json
    local name=$1; shift
    echo "== $name: $*" | tee "$out/$name.md"
    local start=$SECONDS
    "$@" --json "$out/$name.json" 2>"$out/$name.log" | tee -a "$out/$name.md"
    echo "($((SECONDS - start)) s)" | tee -a "$out/$name.md"
}
run driver python scripts/bench_driver.py --points 1001,4001 --tile 16,64 --workers 1000 --ray 8
run models python scripts/bench_models.py ${MODELS_ARGS:-}
run page python scripts/bench_page.py --points 1001
# FIDELITY_KEEP=DIR keeps the trained workloads and full sweeps there, and uses those it finds
# (the full sweep of the ResNet-style net at 257x257 alone is about 15 minutes on 2 cores)
[ -n "${SKIP_FIDELITY:-}" ] || run fidelity python scripts/bench_fidelity.py \
    --runs digits:257:300:17 resnet:257:32:17 --resnet-inputs 128 \
    ${FIDELITY_KEEP:+--keep "$FIDELITY_KEEP"}
echo "tables in $out/*.md"
