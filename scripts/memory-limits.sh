#!/usr/bin/env bash
# Memory limits from the environment, end to end with the release binary: under an address-space
# limit (`prlimit --as`, what containers and `ulimit -v` set) and inside a memory cgroup with a
# limit (what a Kubernetes pod sets), every over-sized `kiln run` is an `error:` line naming the
# input or node and the limit, never an abort or an OOM kill, and a run that fits still runs.
# The cgroup part needs a writable memory controller (v2 or v1); where the machine gives none it
# prints that it was not run and why. Ends with `memory-limits: N passed, M failed`.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="$root/target/release/kiln"
models="${KILN_CACHE:-$root/.cache}/models"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# expect_refused WHAT PATTERN CMD...: exit 1, an `error:` line containing PATTERN, no signal.
expect_refused() {
  local what="$1" pattern="$2"; shift 2
  local err code
  err="$("$@" 2>&1 >/dev/null)"; code=$?
  if [ "$code" -eq 1 ] && printf '%s' "$err" | grep -q '^error: ' && printf '%s' "$err" | grep -qE "$pattern"; then
    ok "$what: $(printf '%s' "$err" | head -c 300)"
  else
    bad "$what: exit $code, stderr: $(printf '%s' "$err" | head -c 600)"
  fi
}

expect_runs() {
  local what="$1"; shift
  local err code
  err="$("$@" 2>&1 >/dev/null)"; code=$?
  if [ "$code" -eq 0 ]; then ok "$what"; else bad "$what: exit $code, stderr: $(printf '%s' "$err" | head -c 600)"; fi
}

[ -x "$kiln" ] || { echo "memory-limits: $kiln is missing (cargo build --release --bin kiln)"; echo "memory-limits: 0 passed, 1 failed"; exit 1; }
yolo="$models/yolov8n_320n.onnx"
[ -f "$yolo" ] || { echo "memory-limits: $yolo is missing (scripts/fetch-data.sh)"; echo "memory-limits: 0 passed, 1 failed"; exit 1; }

# Address space: 8 GiB, as the issue's container had.
as=(prlimit --as=8589934592 --)
for shape in 1,3,20000,20000 4,3,10240,10240 1,3,100000,100000; do
  expect_refused "RLIMIT_AS 8 GiB, YOLOv8n at $shape" \
    "(input 'images'|node '[^']*').*RLIMIT_AS" \
    "${as[@]}" "$kiln" run "$yolo" --shape "images=$shape" --threads 2
done
expect_refused "RLIMIT_AS 8 GiB, the demo model at 1,3,20000,20000" "RLIMIT_AS" \
  "${as[@]}" "$kiln" run --shape images=1,3,20000,20000 --threads 2
expect_runs "RLIMIT_AS 8 GiB, YOLOv8n at 1,3,640,640 still runs" \
  "${as[@]}" "$kiln" run "$yolo" --shape images=1,3,640,640 --threads 2
# A tighter limit refuses a smaller run (about 1 GB of intermediates at its peak), also where
# the sizes would make a later node fail (6000 is no multiple of YOLO's stride 32): the nodes
# before it still count, so the run is refused before the first large allocation aborts it.
for shape in 1,3,6016,6016 1,3,6000,6000 1,3,4480,4480; do
  expect_refused "RLIMIT_AS 1 GiB, YOLOv8n at $shape" \
    "node '[^']*'.*RLIMIT_AS" prlimit --as=1073741824 -- "$kiln" run "$yolo" --shape "images=$shape" --threads 2
done

# A memory cgroup of 1 GiB, where one can be made.
cg=""
why=""
if grep -q ' - cgroup2 ' /proc/self/mountinfo && [ -w /sys/fs/cgroup ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  base="/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)"
  cg="$base/kiln-memtest-$$"
  if ! mkdir "$cg" 2>/dev/null || ! echo 1073741824 > "$cg/memory.max" 2>/dev/null; then
    why="cannot make a v2 memory cgroup under $base"; rmdir "$cg" 2>/dev/null; cg=""
  fi
elif [ -d /sys/fs/cgroup/memory ]; then
  base="/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)"
  cg="$base/kiln-memtest-$$"
  if ! mkdir "$cg" 2>/dev/null || ! echo 1073741824 > "$cg/memory.limit_in_bytes" 2>/dev/null; then
    why="cannot make a v1 memory cgroup under $base"; rmdir "$cg" 2>/dev/null; cg=""
  fi
else
  why="no memory cgroup controller is mounted"
fi
if [ -n "$cg" ]; then
  incg() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"; }
  expect_refused "cgroup 1 GiB, YOLOv8n at 1,3,8000,8000" "(input 'images'|node '[^']*').*cgroup memory" \
    incg "$kiln" run "$yolo" --shape images=1,3,8000,8000 --threads 2
  expect_runs "cgroup 1 GiB, YOLOv8n at 1,3,640,640 still runs" \
    incg "$kiln" run "$yolo" --shape images=1,3,640,640 --threads 2
  rmdir "$cg" 2>/dev/null || true
else
  echo "memory-limits: the cgroup part was not run: $why"
fi
echo "memory-limits: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
