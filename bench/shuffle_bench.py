"""Shuffle throughput and bytes: vanilla Spark's sort shuffle vs the plugin's native shuffle.

What: every row of TPC-H lineitem (all 16 columns) goes through one hash exchange,
`SELECT * FROM lineitem DISTRIBUTE BY l_orderkey`, followed by an ungrouped aggregation over
every column (cheap, and it keeps Spark from pruning columns before the exchange). The query's
time is dominated by the shuffle: the map side scans, partitions, serializes, compresses and
writes the rows, the reduce side reads, decompresses and deserializes them.

Engines, each in a fresh `spark-submit` with the same settings (tpch_common's: `local[2]`,
driver memory, off-heap memory, shuffle partitions, the plugin jar and `spark.plugins=ballista`;
plus the UI, whose REST API is read); only the settings in ENGINES differ:

  vanilla             spark.ballista.enabled=false: Spark's sort shuffle of UnsafeRows
  plugin              native scan and exchange, BallistaShuffleManager (Arrow IPC files read
                      over Arrow Flight), LZ4
  plugin-zstd         the same with spark.ballista.shuffle.compression.codec=zstd
  plugin-sortshuffle  native exchange whose Arrow blocks move through Spark's sort shuffle

Each engine's driver checks its plan (native: `BallistaShuffleExchange` over a
`BallistaParquetScan`; vanilla: Spark's `Exchange`, nothing native), runs the query for warm-up
and then --runs times, and reads from Spark's REST API (`/api/v1/applications/<id>/jobs` and
`/stages/<id>`, the runs told apart by job group) the exchange's shuffle bytes and records
written (its map stage) and read (its reduce stage) and the two stages' durations.

Reported per engine: rows shuffled, shuffle bytes written and read (compressed, as on disk and
on the wire), the median query time, throughput in rows/s and in MB/s, and ratios to vanilla.
MB/s is the same data volume for every engine divided by its time: the size of the rows in
Spark's UnsafeRow format, i.e. vanilla's exchange "data size" metric (uncompressed), so MB/s
ratios equal time ratios. Peak RSS of the spark-submit process tree is sampled as in
bench/peak_memory.py. Measure with a release build of the jar (`-Dnative.profile=release`): the
report warns when the native library looks like a dev (unoptimized) one.

Run it through bench/shuffle_bench.sh, which generates the data and finds the plugin jar:

    bench/shuffle_bench.sh --scale-factor 1 --engines vanilla,plugin,plugin-zstd

Writes shuffle_bench.json and shuffle_bench.md to --out (default bench/results/) and each
engine's Spark log under --out/shuffle_bench_runs/. Exits non-zero when an engine failed or ran
another plan than intended.

The same file is the driver of one engine, run by spark-submit:
    shuffle_bench.py --run-engine NAME --data DIR --runs N --result FILE
"""

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import time
import urllib.request
import zipfile

from peak_memory import run_sampled
from tpch_common import MIB, SHUFFLE_MANAGER as MANAGER, machine, register_tables, \
    spark_submit_options
CODEC = "spark.ballista.shuffle.compression.codec"
ENGINES = {
    "vanilla": {"spark.ballista.enabled": "false"},
    "plugin": {"spark.ballista.enabled": "true", "spark.shuffle.manager": MANAGER, CODEC: "lz4"},
    "plugin-zstd": {"spark.ballista.enabled": "true", "spark.shuffle.manager": MANAGER,
                    CODEC: "zstd"},
    "plugin-sortshuffle": {"spark.ballista.enabled": "true", CODEC: "lz4"},
}
COLUMNS = {  # lineitem's columns and the aggregate that reads each after the exchange
    "sum": ["l_orderkey", "l_partkey", "l_suppkey", "l_linenumber", "l_quantity",
            "l_extendedprice", "l_discount", "l_tax"],
    "max": ["l_returnflag", "l_linestatus", "l_shipdate", "l_commitdate", "l_receiptdate",
            "l_shipinstruct", "l_shipmode", "l_comment"],
}
QUERY = ("SELECT count(*) AS shuffled_rows, "
         + ", ".join(f"{fn}({c})" for fn, columns in COLUMNS.items() for c in columns)
         + " FROM (SELECT * FROM lineitem DISTRIBUTE BY l_orderkey)")
MB = 1000 * 1000
# The native library of a release build is about 150 MB, of a dev (unoptimized) one about 250.
DEV_LIBRARY_BYTES = 200 * MB


# ---------------------------------------------------------------- one engine, under spark-submit

def rest_json(ui_url, app_id, path):
    """GET a Spark monitoring REST API path of this application, decoded."""
    with urllib.request.urlopen(f"{ui_url}/api/v1/applications/{app_id}/{path}", timeout=30) as r:
        return json.load(r)


def stage_millis(timestamp):
    """Epoch milliseconds of a REST API time such as 2026-11-26T00:22:33.123GMT."""
    parsed = datetime.datetime.strptime(timestamp.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f")
    return parsed.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000


def group_stages(ui_url, app_id, group, timeout_seconds=30):
    """The completed stage attempts of the jobs of job group `group`, once the status store
    (fed asynchronously by the listener bus) has them all complete."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        jobs = [j for j in rest_json(ui_url, app_id, "jobs") if j.get("jobGroup") == group]
        stage_ids = sorted({s for j in jobs for s in j["stageIds"]})
        attempts = [a for s in stage_ids for a in rest_json(ui_url, app_id, f"stages/{s}")]
        done = jobs and all(j["status"] != "RUNNING" for j in jobs) and all(
            a["status"] in ("COMPLETE", "SKIPPED", "FAILED") for a in attempts)
        if done:
            return [a for a in attempts if a["status"] == "COMPLETE"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"job group {group}: stages not complete after {timeout_seconds} s")
        time.sleep(0.2)


def exchange_stats(stages):
    """Shuffle metrics of the big exchange from its stages: the map stage is the one that wrote
    the most shuffle bytes, the reduce stage the next completed one (the query's plan is a
    chain: scan -> big exchange -> partial aggregate -> small exchange -> final aggregate)."""
    stages = sorted(stages, key=lambda s: s["stageId"])
    write = max(stages, key=lambda s: s["shuffleWriteBytes"])
    read = next(s for s in stages if s["stageId"] > write["stageId"])

    def seconds(stage):
        return (stage_millis(stage["completionTime"]) - stage_millis(stage["submissionTime"])) / 1000

    return {
        "shuffle_write_bytes": write["shuffleWriteBytes"],
        "shuffle_write_records": write["shuffleWriteRecords"],
        "shuffle_write_time_seconds": write["shuffleWriteTime"] / 1e9,
        "shuffle_read_bytes": read["shuffleReadBytes"],
        "shuffle_read_records": read["shuffleReadRecords"],
        "shuffle_fetch_wait_seconds": read["shuffleFetchWaitTime"] / 1000,
        "map_stage_seconds": seconds(write),
        "map_stage_tasks": write["numCompleteTasks"],
        "reduce_stage_seconds": seconds(read),
        "reduce_stage_tasks": read["numCompleteTasks"],
        "stages": len(stages),
    }


EXCHANGE_METRICS = ["dataSize", "numPartitions", "shuffleBytesWritten", "shuffleRecordsWritten",
                    "localBytesRead", "remoteBytesRead", "recordsRead", "flightBytesFetched"]


def query_stages(plan):
    """The shuffle query stages of an adaptive plan, nested ones included (a query stage is a
    leaf of the plan above it)."""
    leaves = plan.collectLeaves()
    for i in range(leaves.size()):
        leaf = leaves.apply(i)
        if leaf.getClass().getSimpleName() == "ShuffleQueryStageExec":
            yield leaf
            yield from query_stages(leaf.plan())


def exchange_metrics(df):
    """The SQL metrics of the query's biggest exchange (by "data size": for Spark's exchange the
    UnsafeRows' uncompressed size, for the native one its compressed Arrow IPC bytes)."""
    final_plan = df._jdf.queryExecution().executedPlan().executedPlan()
    found = []
    for stage in query_stages(final_plan):
        metrics = stage.plan().metrics()
        found.append({key: metrics.apply(key).value() for key in EXCHANGE_METRICS
                      if metrics.contains(key)})
    return max(found, key=lambda m: m.get("dataSize", 0)) if found else {}


def plan_problem(engine, plan):
    """Why `plan` is not the one `engine` is meant to run, or None."""
    if engine == "vanilla":
        if "Ballista" in plan:
            return "vanilla Spark's plan has native operators"
        if not re.search(r"(?<!Shuffle)Exchange hashpartitioning\(l_orderkey", plan):
            return "no Spark Exchange hashpartitioning(l_orderkey ...) in the plan"
    else:
        if "BallistaShuffleExchange hashpartitioning(l_orderkey" not in plan:
            return "the exchange is not BallistaShuffleExchange"
        if "BallistaParquetScan" not in plan:
            return "the scan is not native"
        if re.search(r"(?<!Shuffle)Exchange hashpartitioning", plan):
            return "a Spark Exchange is left in the plan"
    return None


def run_engine(args):
    """Driver of one engine under spark-submit: writes its plan, times and shuffle metrics to
    --result (status "failed" with the reason when the plan is not the intended one)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(f"ballista-shuffle-bench-{args.run_engine}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    sc = spark.sparkContext
    register_tables(spark, args.data)
    result = {"engine": args.run_engine, "status": "ok", "runs": []}
    for i in range(args.warmup + args.runs):
        group = f"shuffle-bench-{i}"
        sc.setJobGroup(group, f"shuffle bench run {i}{' (warm-up)' if i < args.warmup else ''}")
        start = time.perf_counter()
        df = spark.sql(QUERY)
        row = df.collect()[0]
        seconds = time.perf_counter() - start
        if i == 0:
            result["plan"] = df._jdf.queryExecution().executedPlan().toString()
            problem = plan_problem(args.run_engine, result["plan"])
            if problem:
                result.update(status="failed", reason=problem)
                print(f"{args.run_engine}: {problem}:\n{result['plan']}", file=sys.stderr)
                break
        metrics = exchange_metrics(df)
        run = {"seconds": seconds, "warmup": i < args.warmup, "rows": row["shuffled_rows"],
               "exchange_data_size": metrics.get("dataSize"), "exchange_sql_metrics": metrics}
        run.update(exchange_stats(group_stages(sc.uiWebUrl, sc.applicationId, group)))
        result["runs"].append(run)
        print(f"{args.run_engine} run {i}: {seconds:.2f} s", file=sys.stderr, flush=True)
    spark.stop()
    with open(args.result, "w") as f:
        json.dump(result, f, indent=2)


# ----------------------------------------------------------------------------- the comparison

def spark_submit():
    """spark-submit of the Python running this script (the project's virtualenv), else PATH's."""
    beside = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    return beside if os.path.exists(beside) else "spark-submit"


def spark_settings(args):
    """The spark-submit options every engine shares: the benchmarks' common ones (local[2],
    memory, off-heap, shuffle partitions, the plugin jar with spark.plugins=ballista), with the
    UI on, as its REST API has the stages' shuffle metrics."""
    return spark_submit_options(args.driver_memory, args.offheap_size, args.shuffle_partitions,
                                jar=args.jar, confs={"spark.ui.enabled": "true"})


def native_library_bytes(jar):
    """The size of the native library packed in the plugin jar (None if there is none)."""
    with zipfile.ZipFile(jar) as archive:
        sizes = [i.file_size for i in archive.infolist() if i.filename.endswith("libballista_spark.so")]
    return sizes[0] if sizes else None


def measure(args, engine, runs_dir):
    """Runs `engine` in a fresh spark-submit; its summary for the report."""
    result_path = os.path.join(runs_dir, f"{engine}.json")
    log_path = os.path.join(runs_dir, f"{engine}.log")
    if os.path.exists(result_path):
        os.remove(result_path)
    command = [spark_submit()] + spark_settings(args)
    for key, value in ENGINES[engine].items():
        command += ["--conf", f"{key}={value}"]
    command += [os.path.abspath(__file__), "--run-engine", engine, "--data", args.data,
                "--runs", str(args.runs), "--warmup", str(args.warmup), "--result", result_path]
    exit_code, peak_rss, jvm_hwm = run_sampled(command, log_path)
    result = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    timed = [run for run in result.get("runs", []) if not run["warmup"]]
    summary = {"engine": engine, "settings": ENGINES[engine], "exit_code": exit_code,
               "log": log_path, "peak_rss_bytes": max(peak_rss, jvm_hwm),
               "status": result.get("status", "failed") if exit_code == 0 and timed else "failed",
               "reason": result.get("reason") or (None if exit_code == 0 else f"exit {exit_code}"),
               "plan": result.get("plan"), "runs": result.get("runs", [])}
    if timed:
        median = {key: statistics.median(run[key] for run in timed)
                  for key in ("seconds", "map_stage_seconds", "reduce_stage_seconds",
                              "shuffle_write_time_seconds", "shuffle_fetch_wait_seconds")}
        last = timed[-1]
        summary.update(median)
        summary.update({key: last[key] for key in (
            "rows", "shuffle_write_bytes", "shuffle_write_records", "shuffle_read_bytes",
            "shuffle_read_records", "exchange_data_size", "exchange_sql_metrics",
            "map_stage_tasks", "reduce_stage_tasks")})
        if any(run["shuffle_write_bytes"] != last["shuffle_write_bytes"] for run in timed):
            summary["note"] = "shuffle bytes written vary between runs; the last run's are shown"
    return summary


def derive(report):
    """Adds throughput (rows/s, MB/s of vanilla's uncompressed UnsafeRow volume) and ratios to
    vanilla to every engine that ran."""
    engines = report["engines"]
    vanilla = engines.get("vanilla", {})
    volume = vanilla.get("exchange_data_size") if vanilla.get("status") == "ok" else None
    report["data_volume_bytes"] = volume
    for run in engines.values():
        if run["status"] != "ok":
            continue
        run["rows_per_second"] = run["rows"] / run["seconds"]
        run["mb_per_second"] = volume / MB / run["seconds"] if volume else None
        if vanilla.get("status") == "ok":
            run["throughput_vs_vanilla"] = vanilla["seconds"] / run["seconds"]
            run["write_bytes_vs_vanilla"] = run["shuffle_write_bytes"] / vanilla["shuffle_write_bytes"]
            run["rows_match_vanilla"] = run["rows"] == vanilla["rows"]


def markdown(report):
    """The report as Markdown: one row per engine."""
    settings = report["settings"]
    volume = report["data_volume_bytes"]
    lines = [
        f"# Shuffle throughput, TPC-H lineitem at scale factor {settings['scale_factor']}",
        "",
        f"{report['date']}, {report['machine']['cpu']} ({report['machine']['cpus']} CPUs, "
        f"{report['machine']['memory']}); `local[2]`, driver memory {settings['driver_memory']}, "
        f"off-heap {settings['offheap_size']}, "
        f"{settings['shuffle_partitions']} shuffle partitions; {settings['warmup']} warm-up and "
        f"{settings['runs']} timed runs per engine (median), one spark-submit per engine.",
        "",
        f"Query: `{QUERY}`",
    ] + (["", f"**Warning: {report['warning']}.**"] if report.get("warning") else []) + [
        "",
        "MB/s: " + (f"{volume / MB:.0f} MB (the rows as Spark's UnsafeRows, vanilla's exchange "
                    "\"data size\") / median time." if volume else "n/a (vanilla did not run)"),
        "",
        "| engine | rows | shuffle written (MiB) | shuffle read (MiB) | written / vanilla "
        "| time (s) | map stage (s) | reduce stage (s) | rows/s (M) | MB/s | throughput / vanilla "
        "| peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for name, run in report["engines"].items():
        if run["status"] != "ok":
            lines.append(f"| {name} | FAILED: {run.get('reason')} (see {run['log']}) "
                         "| | | | | | | | | | |")
            continue

        def ratio(key):
            return f"{run[key]:.2f}" if run.get(key) is not None else ""

        mbps = f"{run['mb_per_second']:.0f}" if run.get("mb_per_second") else ""
        read = f"{run['shuffle_read_bytes'] / MIB:.1f}"
        sql = run["exchange_sql_metrics"]
        sql_read = sql.get("localBytesRead", 0) + sql.get("remoteBytesRead", 0)
        if run["shuffle_read_bytes"] == 0 and sql_read:
            read = f"0 ({sql_read / MIB:.1f}\\*)"
            notes.append(f"\\* {name}: the reduce stage's task metrics (Spark UI, REST API) show "
                         "no shuffle read; the exchange's SQL metrics (local + remote bytes read) "
                         "show this.")
        lines.append(
            f"| {name} | {run['rows']:,} | {run['shuffle_write_bytes'] / MIB:.1f} "
            f"| {read} | {ratio('write_bytes_vs_vanilla')} "
            f"| {run['seconds']:.2f} | {run['map_stage_seconds']:.2f} "
            f"| {run['reduce_stage_seconds']:.2f} | {run['rows_per_second'] / 1e6:.2f} | {mbps} "
            f"| {ratio('throughput_vs_vanilla')} | {run['peak_rss_bytes'] / MIB:.0f} |")
    lines += [""] + (notes + [""] if notes else []) + ["Engines: " + "; ".join(
        f"{name}: " + ", ".join(f"{k}={v}" for k, v in ENGINES[name].items())
        for name in report["engines"]), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory of TPC-H Parquet tables")
    parser.add_argument("--jar", help="the plugin jar")
    parser.add_argument("--scale-factor", default="1", help="scale factor of --data (recorded)")
    parser.add_argument("--engines", default="vanilla,plugin",
                        help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per engine")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs per engine")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--offheap-size", default="2g", help="spark.memory.offHeap.size")
    parser.add_argument("--shuffle-partitions", type=int, default=200)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results"), help="output directory")
    parser.add_argument("--run-engine", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_engine:
        return run_engine(args)
    if not args.jar:
        parser.error("--jar is required")
    engines = args.engines.split(",")
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}; known: {', '.join(ENGINES)}")

    runs_dir = os.path.join(args.out, "shuffle_bench_runs")
    os.makedirs(runs_dir, exist_ok=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"scale_factor": args.scale_factor, "data": args.data, "jar": args.jar,
                     "driver_memory": args.driver_memory, "offheap_size": args.offheap_size,
                     "shuffle_partitions": args.shuffle_partitions, "runs": args.runs,
                     "warmup": args.warmup, "spark_submit": spark_settings(args),
                     "native_library_bytes": native_library_bytes(args.jar)},
        "query": QUERY,
        "engines": {},
    }
    library = report["settings"]["native_library_bytes"]
    if library and library > DEV_LIBRARY_BYTES:
        report["warning"] = (f"the jar's native library has {library / MB:.0f} MB: likely a dev "
                             "(unoptimized) build, so the plugin's times say little; build with "
                             "-Dnative.profile=release")
        print(f"WARNING: {report['warning']}", file=sys.stderr, flush=True)
    for engine in engines:
        run = report["engines"][engine] = measure(args, engine, runs_dir)
        if run["status"] == "ok":
            print(f"{engine:18} {run['seconds']:7.2f} s  {run['rows']:,} rows  "
                  f"{run['shuffle_write_bytes'] / MIB:8.1f} MiB written", flush=True)
        else:
            print(f"{engine:18} FAILED: {run['reason']} (see {run['log']})", flush=True)
    derive(report)

    with open(os.path.join(args.out, "shuffle_bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    table = markdown(report)
    with open(os.path.join(args.out, "shuffle_bench.md"), "w") as f:
        f.write(table)
    print()
    print(table)
    failed = [name for name, run in report["engines"].items() if run["status"] != "ok"]
    mismatched = [name for name, run in report["engines"].items()
                  if run.get("rows_match_vanilla") is False]
    if mismatched:
        print(f"rows shuffled differ from vanilla's: {mismatched}", file=sys.stderr)
    sys.exit(1 if failed or mismatched else 0)


if __name__ == "__main__":
    main()
