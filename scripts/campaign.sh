#!/usr/bin/env bash
# The long fault campaign of RELIABILITY.md: ≥ 100 SIGKILLs across `topk replay`, `topk
# serve` under a retrying HTTP client and every production role on Kafka + PostgreSQL,
# a longer network partition, and a full disk; each checked against the ground truth.
# The suite (`cargo test --workspace`) runs the same tests with short defaults.
# Usage: scripts/campaign.sh [SEED]   (as root: namespaces, tc, mount; tansu installed)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/topk-target}"
seed=${1:-20261207}
report=${REPORT:-$PWD/target/campaign-$seed.txt}
mkdir -p "$(dirname "$report")" && : >"$report"
export TOPK_CAMPAIGN_REPORT=$report TOPK_CAMPAIGN_SEED=$seed
export TOPK_CRASH_SEED=$seed TOPK_CRASH_KILLS=${REPLAY_KILLS:-40}
export TOPK_CAMPAIGN_SERVE_KILLS=${SERVE_KILLS:-30} TOPK_CAMPAIGN_ROLE_KILLS=${ROLE_KILLS:-40}
export TOPK_CAMPAIGN_PARTITION_SECS=${PARTITION_SECS:-20} TOPK_CAMPAIGN_EVENTS=${EVENTS:-60000}
cargo test --locked -p topk --test crash --test campaign -- --test-threads 1 --nocapture 2>&1 |
    grep -E '^(CAMPAIGN|test |test result|kill|serve kill|role kill)|panicked'
echo "--- $report"
cat "$report"
