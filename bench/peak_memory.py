"""Peak resident memory (RSS) of the Spark process on TPC-H: vanilla Spark vs Spark + Ballista.

Why: the plugin's aim is to run the same queries in much less memory than Spark with the same
Spark memory settings (target: its peak at most half of vanilla Spark's, no query failing), and
RSS, not the JVM heap, is what a container limit counts, native memory included.

How: Spark runs in `local[2]`, so the driver JVM is the executor. Each query runs in a fresh
`spark-submit` (peaks do not accumulate across queries) once per engine. Both engines get the
same settings: the plugin jar on the classpath, `spark.plugins=ballista`, driver memory,
off-heap size and shuffle partitions; only `spark.ballista.enabled` differs (false: vanilla).
While a query runs, the resident memory of the spark-submit process tree (the JVM and the
PySpark driver it starts) is summed every 100 ms from /proc, as proportional set sizes (Pss:
pages shared between processes, e.g. by a child the JVM forks, count once rather than once per
process, as against a container's limit); a run's peak is the largest sum, or the JVM's own
high-water mark (VmHWM, read by the query driver just before it exits) if that is larger.

Run it through bench/peak_memory.sh, which generates the data and finds the plugin jar:

    bench/peak_memory.sh --scale-factor 10

Writes peak_memory.json and peak_memory.md to --out, and each run's Spark log under
--out/peak_memory_runs/. Exits non-zero when any query failed.

The same file is the driver of one query, run by spark-submit:
    peak_memory.py --run-query N --data DIR --result FILE
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from tpch_common import (MIB, SHUFFLE_MANAGER, geomean, machine, mib, process_tree, pss_bytes,
                         query_numbers, read_query, register_tables, spark_submit_options, status_bytes)

ENGINES = {"vanilla": "false", "plugin": "true"}  # engine -> spark.ballista.enabled
SAMPLE_SECONDS = 0.1


def run_sampled(command, log_path):
    """Runs `command`, its output to `log_path`; (exit code, peak RSS of its process tree,
    last VmHWM seen of its root process, which is the JVM once spark-submit has exec'ed)."""
    tree_peak = root_hwm = 0
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            rss = sum(pss_bytes(pid) for pid in process_tree(process.pid))
            tree_peak = max(tree_peak, rss)
            root_hwm = max(root_hwm, status_bytes(process.pid, "VmHWM"))
            time.sleep(SAMPLE_SECONDS)
    return process.returncode, tree_peak, root_hwm


def spark_settings(args):
    """The spark-submit options shared by both engines (the plugin is loaded in both; only
    spark.ballista.enabled differs)."""
    # Ballista's shuffle manager for both: with spark.ballista.enabled=false every shuffle is
    # Spark's own sort shuffle, as without the plugin.
    return spark_submit_options(args.driver_memory, args.offheap_size, args.shuffle_partitions,
                                jar=args.jar, confs={"spark.shuffle.manager": SHUFFLE_MANAGER})


def measure(args, number, engine, runs_dir):
    """Runs query `number` on `engine` in a fresh spark-submit; its record for the JSON."""
    name = f"q{number:02d}-{engine}"
    result_path = os.path.join(runs_dir, f"{name}.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    command = (["spark-submit"] + spark_settings(args)
               + ["--conf", f"spark.ballista.enabled={ENGINES[engine]}",
                  os.path.abspath(__file__), "--run-query", str(number), "--data", args.data,
                  "--result", result_path])
    start = time.perf_counter()
    exit_code, tree_peak, root_hwm = run_sampled(command, os.path.join(runs_dir, f"{name}.log"))
    wall_seconds = time.perf_counter() - start
    result = {}
    if exit_code == 0 and os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    jvm_hwm = max(root_hwm, result.get("jvm_hwm_bytes", 0))
    return {
        "status": "ok" if result else "failed",
        "exit_code": exit_code,
        "seconds": result.get("seconds"),
        "wall_seconds": wall_seconds,
        "rows": result.get("rows"),
        "native_operators_in_plan": result.get("native_operators_in_plan"),
        "peak_rss_bytes": max(tree_peak, jvm_hwm),
        "sampled_tree_peak_rss_bytes": tree_peak,
        "jvm_hwm_bytes": jvm_hwm,
        "native_peak_bytes": result.get("native_peak_bytes"),
        "log": os.path.join(runs_dir, f"{name}.log"),
    }


def markdown(report):
    """The report as a Markdown table with totals."""
    settings = report["settings"]
    lines = [
        f"# Peak RSS of the Spark process, TPC-H scale factor {settings['scale_factor']}",
        "",
        f"{report['date']}, {report['machine']['cpu']} ({report['machine']['cpus']} CPUs, "
        f"{report['machine']['memory']}); `local[2]`, driver memory {settings['driver_memory']}, "
        f"off-heap {settings['offheap_size']}, {settings['shuffle_partitions']} shuffle "
        "partitions, one fresh spark-submit per query and engine.",
        "",
        "| query | vanilla peak (MiB) | plugin peak (MiB) | plugin / vanilla "
        "| plugin's native peak (MiB) | vanilla (s) | plugin (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(run, text):
        return text if run["status"] == "ok" else f"{text} FAILED".strip()

    ratios = []
    for query, runs in report["queries"].items():
        vanilla, plugin = runs["vanilla"], runs["plugin"]
        ratio = ""
        if vanilla["status"] == plugin["status"] == "ok":
            ratios.append(plugin["peak_rss_bytes"] / vanilla["peak_rss_bytes"])
            ratio = f"{ratios[-1]:.2f}"
        seconds = [f"{run['seconds']:.2f}" if run["seconds"] is not None else ""
                   for run in (vanilla, plugin)]
        native = mib(plugin["native_peak_bytes"]) if plugin.get("native_peak_bytes") else ""
        lines.append(f"| {query} | {cell(vanilla, mib(vanilla['peak_rss_bytes']))} "
                     f"| {cell(plugin, mib(plugin['peak_rss_bytes']))} | {ratio} | {native} "
                     f"| {cell(vanilla, seconds[0])} | {cell(plugin, seconds[1])} |")
    max_peak = {engine: max((runs[engine]["peak_rss_bytes"] for runs in report["queries"].values()),
                            default=0) for engine in ENGINES}
    max_ratio = f"{max_peak['plugin'] / max_peak['vanilla']:.2f}" if max_peak["vanilla"] else ""
    lines.append(f"| **max** | **{mib(max_peak['vanilla'])}** | **{mib(max_peak['plugin'])}** "
                 f"| **{max_ratio}** | | | |")
    mean = geomean(ratios)
    failed = report["failed"]
    lines += [
        "",
        f"Geometric mean of plugin / vanilla peak over the {len(ratios)} queries both engines "
        f"ran: {'n/a' if mean is None else f'{mean:.2f}'}.",
        f"Failed runs: vanilla {failed['vanilla']}, plugin {failed['plugin']}.",
        "",
    ]
    return "\n".join(lines)


def run_query(args):
    """Driver of one query under spark-submit: writes its row count and seconds to --result."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(f"ballista-peak-memory-q{args.run_query:02d}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    register_tables(spark, args.data)
    start = time.perf_counter()
    df = spark.sql(read_query(args.run_query))
    rows = df.collect()
    seconds = time.perf_counter() - start
    result = {
        "rows": len(rows),
        "seconds": seconds,
        "native_operators_in_plan": "Ballista" in df._jdf.queryExecution().executedPlan().toString(),
        # This Python process is a child of the JVM.
        "jvm_hwm_bytes": status_bytes(os.getppid(), "VmHWM"),
        # What the native library allocated at most (its counting allocator): the part of the
        # peak that is native rather than the JVM's.
        "native_peak_bytes": spark._jvm.io.ballista.spark.jni.NativeEngine.nativeMemoryPeak(),
    }
    spark.stop()
    with open(args.result, "w") as f:
        json.dump(result, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory of TPC-H Parquet tables")
    parser.add_argument("--jar", help="the plugin jar")
    parser.add_argument("--scale-factor", default="10", help="scale factor of --data (recorded)")
    parser.add_argument("--queries", default="all", help="comma-separated query numbers, or all")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--offheap-size", default="4g", help="spark.memory.offHeap.size")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results"), help="output directory")
    parser.add_argument("--run-query", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_query is not None:
        return run_query(args)
    if not args.jar:
        parser.error("--jar is required")

    runs_dir = os.path.join(args.out, "peak_memory_runs")
    os.makedirs(runs_dir, exist_ok=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "scale_factor": args.scale_factor, "data": args.data, "jar": args.jar,
            "driver_memory": args.driver_memory, "offheap_size": args.offheap_size,
            "shuffle_partitions": args.shuffle_partitions, "spark_submit": spark_settings(args),
            "engines": {engine: f"spark.ballista.enabled={enabled}"
                        for engine, enabled in ENGINES.items()},
        },
        "queries": {},
        "failed": {engine: 0 for engine in ENGINES},
    }
    for number in query_numbers(args.queries):
        runs = report["queries"][f"Q{number:02d}"] = {}
        for engine in ENGINES:
            run = runs[engine] = measure(args, number, engine, runs_dir)
            ok = run["status"] == "ok"
            report["failed"][engine] += not ok
            seconds = run["seconds"] if ok else run["wall_seconds"]
            print(f"Q{number:02d} {engine:8} {seconds:8.2f} s  peak {mib(run['peak_rss_bytes']):>6} "
                  f"MiB  {'ok' if ok else 'FAILED (exit %d, see %s)' % (run['exit_code'], run['log'])}",
                  flush=True)

    with open(os.path.join(args.out, "peak_memory.json"), "w") as f:
        json.dump(report, f, indent=2)
    table = markdown(report)
    with open(os.path.join(args.out, "peak_memory.md"), "w") as f:
        f.write(table)
    print()
    print(table)
    sys.exit(1 if any(report["failed"].values()) else 0)


if __name__ == "__main__":
    main()
