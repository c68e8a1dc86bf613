#!/usr/bin/env bash
# Peak resident memory (RSS) of the Spark process on TPC-H, vanilla Spark vs Spark + Ballista
# with the same Spark memory settings, one fresh spark-submit per query and engine (see
# bench/peak_memory.py). Generates the data once, writes peak_memory.json and peak_memory.md to
# --out (default bench/results/); exits non-zero when any query failed.
#   bench/peak_memory.sh [--scale-factor 10] [--queries all|1,6,9] [--driver-memory 8g]
#                        [--offheap-size 4g] [--shuffle-partitions 8] [--out DIR]
source "$(dirname "${BASH_SOURCE[0]}")/../dev/env.sh"
ensure_pyspark

scale_factor=10
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -h | --help) exec "$VENV/bin/python" "$REPO_ROOT/bench/peak_memory.py" --help ;;
    --scale-factor) scale_factor=${args[i + 1]:-$scale_factor} ;;
    --scale-factor=*) scale_factor=${args[i]#*=} ;;
  esac
done

jar=$(plugin_jar)
if [[ -z $jar ]]; then
  echo "no plugin jar matches $PLUGIN_JAR_GLOB: build it first, with dev/demo.sh or" >&2
  echo "  mvn -B -ntp -q -DskipTests -Dnative.profile=release -pl spark-plugin -am install" >&2
  exit 1
fi
ensure_tpchgen
data=$(tpch_data "$scale_factor")
log "peak RSS of TPC-H at scale factor $scale_factor: vanilla Spark vs Spark + Ballista"
exec "$VENV/bin/python" "$REPO_ROOT/bench/peak_memory.py" --data "$data" --jar "$jar" "$@"
