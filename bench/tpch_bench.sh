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

bench_main tpch_bench.py 1 "TPC-H: vanilla Spark, Spark + Ballista, the native engine alone" \
  --data-generator "tpchgen-cli $TPCHGEN_VERSION" "$@"
