#!/usr/bin/env bash
# Tests the C API end to end: builds the dev native library, compiles examples/c/query.c
# with plain `cc` against native/jni/include/ballista.h, runs it on a CSV file and on a
# Parquet file (written by the engine itself with COPY ... TO), and checks what it prints.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
require_toolchain
cd "$REPO_ROOT"
log "C API example (examples/c/query.c)"

cargo build -p ballista-spark-jni
libdir=$CARGO_TARGET_DIR/debug
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cc -std=c99 -Wall -Wextra -Werror -I native/jni/include examples/c/query.c \
  -L "$libdir" -lballista_spark -Wl,-rpath,"$libdir" -o "$work/query"

printf 'id,name,score\n1,ann,10\n2,bob,\n3,cid,30\n' > "$work/people.csv"

check() {
  local expected=$1 actual=$2
  if [[ $actual != "$expected" ]]; then
    printf 'c-example-test: unexpected output\n--- expected\n%s\n--- actual\n%s\n' \
      "$expected" "$actual" >&2
    exit 1
  fi
}

actual=$("$work/query" people "$work/people.csv" \
  "SELECT id, upper(name) AS name, score FROM people ORDER BY id")
check $'id\tname\tscore\n1\tANN\t10\n2\tBOB\tNULL\n3\tCID\t30' "$actual"

"$work/query" people "$work/people.csv" \
  "COPY (SELECT * FROM people) TO '$work/people.parquet' STORED AS PARQUET" >/dev/null
actual=$("$work/query" p "$work/people.parquet" \
  "SELECT count(*) AS n, sum(score) AS total, max(name) AS last FROM p")
check $'n\ttotal\tlast\n3\t40\tcid' "$actual"

# Errors come back with their message and a non-zero exit status.
if err=$("$work/query" people "$work/people.csv" "SELECT nope FROM people" 2>&1); then
  echo "c-example-test: a bad query succeeded" >&2
  exit 1
fi
[[ $err == *"ballista_sql:"*nope* ]] || { echo "c-example-test: bad error: $err" >&2; exit 1; }
if err=$("$work/query" t "$work/missing.csv" "SELECT 1" 2>&1); then
  echo "c-example-test: a missing file was registered" >&2
  exit 1
fi
[[ $err == *missing.csv* ]] || { echo "c-example-test: bad error: $err" >&2; exit 1; }

echo "c-example-test: OK"
