#!/usr/bin/env bash
# Peak resident memory (RSS) of the Spark process on TPC-H, vanilla Spark vs Spark + Ballista
# with the same Spark memory settings, one fresh spark-submit per query and engine (see
# bench/peak_memory.py). Generates the data once, writes peak_memory.json and peak_memory.md to
# --out (default bench/results/); exits non-zero when any query failed.
#   bench/peak_memory.sh [--scale-factor 10] [--queries all|1,6,9] [--driver-memory 8g]
#                        [--offheap-size 4g] [--shuffle-partitions 8] [--out DIR]
source "$(dirname "${BASH_SOURCE[0]}")/../dev/env.sh"
ensure_pyspark

bench_main peak_memory.py 10 "peak RSS of TPC-H: vanilla Spark vs Spark + Ballista" "$@"
