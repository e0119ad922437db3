#!/usr/bin/env bash
# The harness on a bare machine: installs what the build needs when it is missing
# (scripts/setup.sh), builds the release binary (about 7 minutes the first time), and runs it
# with the arguments given.
#
#   scripts/harness.sh run            # the README's main job
#   scripts/harness.sh run --help
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet -p harness
exec target/release/harness "$@"
