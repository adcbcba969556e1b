#!/bin/bash
# AdiposeSeg over a cohort with a Slurm job array: each array task segments a stable share of the
# manifest (`--shard I/N`); re-running the array skips every case already done with the same input,
# model and options, so a failed or pre-empted task is simply resubmitted. After the array, one job
# merges the per-case results into OUT/summary.csv and lists missing and failed cases.
#
#   MANIFEST=/data/cohort.txt OUT=/data/results sbatch --array=0-49 docs/slurm_job_array.sh
#   sbatch --dependency=afterany:<array job id> --wrap "adiposeseg aggregate /data/results --manifest /data/cohort.txt"
#
# MANIFEST: a .txt list (one CT path or DICOM folder a line), a .csv whose first column is the path,
# or a folder tree. ADIPOSESEG: the command (default `adiposeseg` on PATH, e.g. from a venv or a
# container). ADIPOSESEG_ARGS: more options, e.g. "--model /models/mine --device cuda".
#SBATCH --job-name=adiposeseg
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=adiposeseg-%A_%a.log
set -euo pipefail
: "${MANIFEST:?set MANIFEST to the cohort list}" "${OUT:?set OUT to the results folder}"
COUNT=${SLURM_ARRAY_TASK_COUNT:-1}
INDEX=${SLURM_ARRAY_TASK_ID:-0}
# Array indices may start anywhere (--array=1-50): shard by position in the array
INDEX=$(( INDEX - ${SLURM_ARRAY_TASK_MIN:-0} ))
# shellcheck disable=SC2086
exec ${ADIPOSESEG:-adiposeseg} batch "$MANIFEST" -o "$OUT" --shard "$INDEX/$COUNT" -q ${ADIPOSESEG_ARGS:-}
