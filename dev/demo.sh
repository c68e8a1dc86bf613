#!/usr/bin/env bash
# The demo: builds everything (optimized native library), generates TPC-H scale factor 1,
# and runs Q1 and Q6 through spark-submit in one Spark application with Ballista off
# (vanilla Spark) and on, printing both times and whether the results are identical.
#   SCALE_FACTOR=10 QUERIES=1,6 RUNS=3 dev/demo.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
require_toolchain
ensure_pyspark
ensure_tpchgen
cd "$REPO_ROOT"

log "building the plugin jar with the release native library (~30 min the first time)"
mvn -B -ntp -q -DskipTests -Dnative.profile=release -pl spark-plugin -am install

data=$(tpch_data "${SCALE_FACTOR:-1}")
log "TPC-H queries ${QUERIES:-1,6} at scale factor ${SCALE_FACTOR:-1}: vanilla Spark vs Spark + Ballista"
spark-submit --master 'local[2]' --driver-memory 8g --jars "$(plugin_jar)" \
  --conf spark.plugins=ballista --conf spark.ui.enabled=false \
  --conf spark.shuffle.manager=org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager \
  "$REPO_ROOT/bench/tpch_compare.py" --data "$data" --queries "${QUERIES:-1,6}" --runs "${RUNS:-3}"
