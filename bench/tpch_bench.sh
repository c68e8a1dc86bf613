#!/usr/bin/env bash
# TPC-H in three engines on the same Parquet files, one process each, one after the other:
# vanilla Spark, Spark + Ballista, and the native engine alone (bench/TpchNative.java, the Java
# client API without Spark). Per query: one warm-up and --runs timed runs (median), peak RSS of
# the engine's process, result checked against vanilla Spark (see bench/tpch_bench.py).
# Generates the data once; writes tpch_bench.json, tpch_bench.md and tpch_bench.png to --out
# (default bench/results/); exits non-zero when a query failed or differed.
#   bench/tpch_bench.sh [--scale-factor 1] [--queries all|1,3,9] [--runs 3] [--jar JAR]
#                       [--engines vanilla,plugin,native] [--out DIR] [--query-timeout SECONDS]
#                       [--driver-memory 8g] [--offheap-size 4g] [--shuffle-partitions 8]
source "$(dirname "${BASH_SOURCE[0]}")/../dev/env.sh"
ensure_pyspark

scale_factor=1
jar=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -h | --help) exec "$VENV/bin/python" "$REPO_ROOT/bench/tpch_bench.py" --help ;;
    --scale-factor) scale_factor=${args[i + 1]:-$scale_factor} ;;
    --scale-factor=*) scale_factor=${args[i]#*=} ;;
    --jar) jar=${args[i + 1]:-} ;;
    --jar=*) jar=${args[i]#*=} ;;
  esac
done

jar=${jar:-$(plugin_jar)}
if [[ -z $jar ]]; then
  echo "no plugin jar matches $PLUGIN_JAR_GLOB: build it first, with dev/demo.sh or" >&2
  echo "  mvn -B -ntp -q -DskipTests -Dnative.profile=release -pl spark-plugin -am install" >&2
  exit 1
fi
ensure_tpchgen
data=$(tpch_data "$scale_factor")
log "TPC-H at scale factor $scale_factor: vanilla Spark, Spark + Ballista, the native engine alone"
exec "$VENV/bin/python" "$REPO_ROOT/bench/tpch_bench.py" --data "$data" --jar "$jar" \
  --scale-factor "$scale_factor" --data-generator "tpchgen-cli $TPCHGEN_VERSION" "$@"
