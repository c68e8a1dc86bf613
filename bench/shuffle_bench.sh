#!/usr/bin/env bash
# Shuffle throughput and bytes on TPC-H lineitem: vanilla Spark's sort shuffle vs the plugin's
# native shuffle (BallistaShuffleManager over Arrow Flight), one fresh spark-submit per engine
# (see bench/shuffle_bench.py). Generates the data once, writes shuffle_bench.json and
# shuffle_bench.md to --out (default bench/results/); exits non-zero when an engine failed.
#   bench/shuffle_bench.sh [--scale-factor 1] [--engines vanilla,plugin,plugin-zstd,plugin-sortshuffle]
#                          [--runs 3] [--warmup 1] [--driver-memory 4g] [--offheap-size 2g]
#                          [--shuffle-partitions 200] [--out DIR]
source "$(dirname "${BASH_SOURCE[0]}")/../dev/env.sh"
ensure_pyspark

scale_factor=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -h | --help) exec "$VENV/bin/python" "$REPO_ROOT/bench/shuffle_bench.py" --help ;;
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
log "shuffle throughput on TPC-H lineitem at scale factor $scale_factor"
exec "$VENV/bin/python" "$REPO_ROOT/bench/shuffle_bench.py" --data "$data" --jar "$jar" "$@"
