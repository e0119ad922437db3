#!/usr/bin/env bash
# Times `harness run` with its defaults (the README's main command: arith, LoRA, sft,dpo,sft-dpo
# sharing M1, 3 rounds, the embedded SmolLM2-135M) and reports the phases and the loop's
# overhead: everything except sampling, training and SentenceBERT embedding (grading, the rest
# of the reports, model loading, bookkeeping), which should stay under 5% of the wall time.
# The run directory and its full log are kept; its size is printed.
#
#   scripts/time-default-run.sh [OUT]     # OUT default: runs/default-<unix time>
#   EXTRA="--rounds 2" scripts/time-default-run.sh   # extra flags for harness run
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/default-$(date +%s)}
cargo build --release --quiet -p harness
H=target/release/harness
mkdir -p "$(dirname "$out")"
log="$out.log"
start=$(date +%s)
# shellcheck disable=SC2086
"$H" run --out "$out" ${EXTRA:-} > "$log.stdout" 2> "$log"
end=$(date +%s)
cat "$log.stdout"
echo "== wall time of the command: $((end - start)) s (log: $log, run: $out)"
echo "== run directory: $(du -sm "$out" | cut -f1) MB ($(du -sb "$out" | cut -f1) bytes)"
line=$(grep '^time:' "$log.stdout")
overhead=$(echo "$line" | sed -E 's/.*loop overhead [0-9]+ s \(([0-9.]+)%\).*/\1/')
python3 - "$overhead" <<'PY'
import sys
share = float(sys.argv[1])
print(f"loop overhead {share:.1f}% of the wall time: {'under' if share < 5 else 'OVER'} the 5% budget")
PY
