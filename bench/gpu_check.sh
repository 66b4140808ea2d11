#!/usr/bin/env bash
# The whole GPU measurement in one script of at most 6 minutes, for a lent GPU machine (bench/RESULTS.md
# says what to do with its output). It runs with that machine's own python3 (torch, CuPy, h5py, Pillow,
# tqdm and pytest are there; it has no network): no pip install, the project from its tree.
#
#     bash bench/gpu_check.sh            # results under $OUT, or ./gpu_out
#
# Every step runs under `timeout`, within what is left of the budget, and writes its log under the
# output folder as it goes (steps.txt: each step's exit status and seconds), so that a step that hangs
# or fails costs only its own share and the rest still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-./gpu_out}
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_SECONDS:-360}
mkdir -p "$OUT"
START=$(date +%s)
: > "$OUT/steps.txt"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS (and what the budget has left)
step() {
    local name=$1 cap=$2 t0 rc limit
    shift 2
    limit=$(left)
    (( limit > cap )) && limit=$cap
    if (( limit < 5 )); then
        echo "$name skipped: the budget is spent" | tee -a "$OUT/steps.txt"
        return
    fi
    echo "== $name (at most ${limit}s)"
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/steps.txt"
    tail -n 5 "$OUT/$name.log"
}

# compute-sanitizer, where the machine has it and it takes the device (some runtimes refuse it).
sanitize() {
    local tool=$1
    if ! command -v compute-sanitizer > /dev/null; then
        echo "compute-sanitizer is not installed here: $tool skipped"
        return 0
    fi
    compute-sanitizer --tool "$tool" --error-exitcode 3 "$PY" bench/sanitize_cases.py
    local rc=$?
    if (( rc != 0 )) && grep -qiE "not supported|error 999|unable to" "$OUT/sanitize-$tool.log" 2>/dev/null; then
        echo "compute-sanitizer refused this device: $tool skipped (rc $rc)"
        return 0
    fi
    return $rc
}

export -f sanitize
export OUT PY

step env 30 "$PY" bench/gpu_env.py --out "$OUT/env.json"
step pytest-gpu 90 env MICROST_CUDA_SYNC=1 "$PY" -m pytest -m gpu -q -x -p no:cacheprovider
step sanitize-memcheck 40 bash -c 'sanitize memcheck'
step sanitize-racecheck 40 bash -c 'sanitize racecheck'
step lab 60 "$PY" bench/lab_all.py --device cuda --out "$OUT/lab.json"
step compare-torch 150 "$PY" bench/compare_torch.py --device cuda --repeats 10 --out "$OUT/results.json"
echo "== done in $(( $(date +%s) - START ))s; results under $OUT"
cat "$OUT/steps.txt"
