#!/usr/bin/env bash
# One benchmark command in several commits' trees, one after another on this machine (run from the repository root):
#   bash benchmarks/before_after.sh "d185e9d 5fa8dc9 ea2f9b0" --model hrnet_w18 --size 224x224 --batch 8 \
#     --mode train
# Each commit is checked out into a temporary worktree and timed with 5 steps after 1 warm-up step (these two
# options are set here). The JSON lines, tagged with the commit, go to $OUT (default /tmp/before_after.jsonl), each
# run's log to $OUT.COMMIT.log. Uses the active Python environment, importing the package from each worktree.
set -euo pipefail
COMMITS=$1; shift
OUT=${OUT:-/tmp/before_after.jsonl}
for commit in $COMMITS; do
  tree=$(mktemp -d)
  trap 'git worktree remove --force "$tree"' EXIT
  git worktree add -q --detach "$tree" "$commit"
  (cd "$tree" && PYTHONPATH="$tree" python -m hrnet_jax.benchmark "$@" --steps 5 --warmup 1 2>"$OUT.$commit.log") \
    | python -c "import json, sys; line = json.loads(sys.stdin.read().splitlines()[-1]); \
line['commit'] = '$commit'; print(json.dumps(line))" | tee -a "$OUT"
  git worktree remove --force "$tree"
  trap - EXIT
done
