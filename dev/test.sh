#!/usr/bin/env bash
# Runs every test: Rust format, lints and unit tests; the JVM tests (JNI round trip, errors,
# resource release); the Spark integration tests against vanilla Spark on generated TPC-H
# data; the C example against the C API; the example Maven project against the installed
# artifact; a spark-submit run of the packaged jar with --conf spark.plugins=ballista; and an
# outside Arrow Flight client reading native shuffle blocks (dev/flight_client_test.py).
# Tests use Cargo's dev profile: quick to build, fast enough on small data.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
require_toolchain
ensure_pyspark
ensure_tpchgen
cd "$REPO_ROOT"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets -- -D warnings
log "cargo test"
cargo test
"$REPO_ROOT/dev/c-example-test.sh"

data=$(tpch_data 0.01)
export BALLISTA_TPCH_DIR=$data
export BALLISTA_QUERY_DIR=$REPO_ROOT/bench/tpch/queries

log "mvn install (JVM and Spark integration tests)"
mvn -B -ntp -Dnative.profile=dev install

log "the example project against the installed artifact (Spark job and Java client API)"
"$REPO_ROOT/dev/java-example-test.sh"

log "spark-submit --conf spark.plugins=ballista (TPC-H Q1, Q6 at scale factor 0.01)"
spark-submit --master 'local[2]' --jars "$(plugin_jar)" --conf spark.plugins=ballista \
  --conf spark.ui.enabled=false \
  "$REPO_ROOT/bench/tpch_compare.py" --data "$data" --queries 1,6 --runs 1

log "an outside Arrow Flight client (pyarrow.flight) reads native shuffle blocks (scale factor 0.01)"
flight_local_dir=$(mktemp -d)
trap 'rm -rf "$flight_local_dir"' EXIT
spark-submit --master 'local[2]' --jars "$(plugin_jar)" --conf spark.plugins=ballista \
  --conf spark.shuffle.manager=org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager \
  --conf spark.ballista.ui.executorUpdateInterval=500 --conf spark.ui.port=0 \
  --conf spark.local.dir="$flight_local_dir" \
  "$REPO_ROOT/dev/flight_client_test.py" --data "$data"

log "the three-engine TPC-H benchmark harness runs and checks its results (scale factor 0.01)"
bench_out=$(mktemp -d)
trap 'rm -rf "$flight_local_dir" "$bench_out"' EXIT
"$REPO_ROOT/bench/tpch_bench.sh" --scale-factor 0.01 --queries 1,3,13 --runs 1 \
  --jar "$(plugin_jar)" --out "$bench_out"
