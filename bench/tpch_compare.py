"""Runs TPC-H queries in one Spark session with Ballista off (vanilla Spark) and on, and
compares the results row for row and the times.

Submit with the plugin enabled, e.g.:

    spark-submit --jars ballista.jar --conf spark.plugins=ballista \
        bench/tpch_compare.py --data /path/to/tpch-parquet --queries 1,6

Prints, per query, the operators that stayed in Spark and why (the plugin's fallback report).
Exits non-zero when any result differs, when a query ran without native operators, or (with
--require-fully-native) when any operator stayed in Spark.
"""

import argparse
import statistics
import sys
import time

from pyspark.sql import SparkSession

from tpch_common import query_numbers, read_query, register_tables


def run(spark, sql, native, runs):
    """Collects the query once to warm up, then `runs` more times; median seconds."""
    spark.conf.set("spark.ballista.enabled", "true" if native else "false")
    times = []
    rows, plan, fallbacks = None, "", []
    for i in range(runs + 1):
        start = time.perf_counter()
        df = spark.sql(sql)
        rows = df.collect()
        elapsed = time.perf_counter() - start
        if i > 0:
            times.append(elapsed)
        executed = df._jdf.queryExecution().executedPlan()
        plan = executed.toString()
        if native:
            fallbacks = fallbacks_of(spark, executed)
    return statistics.median(times), rows, plan, fallbacks


def fallbacks_of(spark, executed_plan):
    """(operator, reason) of every operator that stayed in Spark (the plugin's report)."""
    report = spark._jvm.org.apache.spark.sql.ballista.Fallbacks.of(executed_plan)
    return [(report.apply(i)._1(), report.apply(i)._2()) for i in range(report.size())]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory of TPC-H Parquet tables")
    parser.add_argument("--queries", default="1,6", help="comma-separated query numbers, or all")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per engine")
    parser.add_argument("--require-fully-native", action="store_true",
                        help="fail a query when any of its operators stays in Spark")
    args = parser.parse_args()

    spark = SparkSession.builder.appName("ballista-tpch-compare").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    register_tables(spark, args.data)

    failures = 0
    results = []
    for number in query_numbers(args.queries):
        sql = read_query(number)
        vanilla_time, vanilla_rows, _, _ = run(spark, sql, native=False, runs=args.runs)
        native_time, native_rows, plan, fallbacks = run(spark, sql, native=True, runs=args.runs)
        identical = vanilla_rows == native_rows
        native_used = "Ballista" in plan
        fully_native = native_used and not fallbacks
        if not identical or not native_used or (args.require_fully_native and not fully_native):
            failures += 1
        results.append((number, vanilla_time, native_time, identical, len(fallbacks),
                        len(native_rows)))
        print(f"Q{number:02d}: vanilla {vanilla_time:.2f}s, native {native_time:.2f}s, "
              f"{'identical' if identical else 'DIFFERENT'}, {len(fallbacks)} fallbacks",
              flush=True)
        for operator, reason in fallbacks:
            print(f"    stays in Spark: {operator}: {reason}", flush=True)
        if not identical:
            print(f"Q{number:02d} vanilla: {vanilla_rows}", file=sys.stderr)
            print(f"Q{number:02d} native:  {native_rows}", file=sys.stderr)

    print()
    print("| query | vanilla Spark (s) | Spark + Ballista (s) | speed-up | rows | identical "
          "| fallbacks |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for number, vanilla, native, identical, fallback_count, rows in results:
        print(f"| Q{number:02d} | {vanilla:.2f} | {native:.2f} | {vanilla / native:.2f}x | {rows} "
              f"| {'yes' if identical else 'NO'} | {fallback_count} |")
    total_vanilla = sum(r[1] for r in results)
    total_native = sum(r[2] for r in results)
    if results:
        print(f"| total | {total_vanilla:.2f} | {total_native:.2f} | "
              f"{total_vanilla / total_native:.2f}x | | | |")
    print()
    print(f"{len(results) - failures} passed, {failures} failed")
    spark.stop()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
