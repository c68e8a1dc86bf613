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

bench_main shuffle_bench.py 1 "shuffle throughput on TPC-H lineitem" "$@"
