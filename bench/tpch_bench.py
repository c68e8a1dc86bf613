"""TPC-H in three engines on the same Parquet files: vanilla Spark, Spark + Ballista, and the
native engine alone (the lower bound: the plugin's engine without Spark).

Engines, each in its own process, one after the other (vanilla first: it is the reference of
the result checks):

  vanilla  spark-submit --master local[2] --driver-memory 8g, off-heap 4g, 8 shuffle partitions
  plugin   the same plus --jars JAR, spark.plugins=ballista and Ballista's shuffle manager
  native   java -cp JAR:<Arrow Java jars> bench/TpchNative.java: the Java client API
           (BallistaContext, DataFusion's SQL with Spark's functions), 2 threads, memory limit
           = the off-heap size, JVM heap 1g

The Spark engines use the same settings (tpch_common.spark_submit_options, as
bench/peak_memory.py); only the plugin jar, spark.plugins and spark.shuffle.manager differ.

For each query and engine: one warm-up run, then --runs timed runs (median reported), each timed
around "submit the SQL + collect the whole result" (Spark: `spark.sql(text).collect()`; native:
`sql(text)` and every Arrow batch read and kept). The peak RSS of the engine's process (the JVM;
for spark-submit of this Python driver the JVM is the driver's parent) while the query runs,
warm-up and timed runs: VmRSS sampled every 50 ms in a thread, and VmHWM reset at the query's
start (Linux's clear_refs), whichever is larger. The process lives across queries, so memory
the JVM kept from earlier queries counts too (bench/peak_memory.sh: one fresh process a query).

Result check against vanilla Spark, on the last timed run's result:
  plugin   exactly the same rows (Python values: Decimal, date, str, ...), in the same order
           when the query has ORDER BY, as a multiset otherwise;
  native   the same number of rows and columns, in order when the query has ORDER BY; values
           equal, where numbers (DataFusion's types differ: double where Spark has a decimal for
           avg(), other decimal precisions) may differ by 1e-6 of the larger magnitude or by
           one unit in the last place of a decimal (Spark rounds decimal avg() and divisions
           to the type's scale).

A query that fails (error, timeout, crashed process: the engine is restarted for the remaining
queries) or whose result differs is reported as such in the output and the tables, and the
others still run.

Run it through bench/tpch_bench.sh, which generates the data and finds the plugin jar:

    bench/tpch_bench.sh --scale-factor 1 [--queries 1,3] [--runs 3] [--jar JAR] [--out DIR]

Writes to --out (default bench/results/): tpch_bench.json (everything: settings, versions,
machine, every run), tpch_bench.md (the table), tpch_bench.png (speed-ups vs vanilla Spark), and
under tpch_bench_runs/ each engine's log and the results checked. Exits non-zero when a query
failed or differed.

The same file is the driver of a Spark engine, run by spark-submit:
    tpch_bench.py --run-engine vanilla|plugin --data DIR --queries 1,6 --runs N --results DIR
"""

import argparse
import datetime
import decimal
import glob
import hashlib
import json
import os
import pickle
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback

from tpch_common import (SHUFFLE_MANAGER, RssSampler, geomean, machine, mib, parse_bytes,
                         query_numbers, read_query, register_tables, spark_submit_options,
                         status_bytes)

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
ENGINES = ["vanilla", "plugin", "native"]
LABELS = {"vanilla": "vanilla Spark", "plugin": "Spark + Ballista",
          "native": "native engine alone"}
EVENT = "@@ "
# Arrow Java and what it needs, from Spark's jars (the plugin jar holds only arrow-c-data).
NATIVE_CLASSPATH = ["arrow-format-*", "arrow-memory-core-*", "arrow-memory-netty-*",
                    "arrow-vector-*", "flatbuffers-java-*", "jackson-annotations-*",
                    "jackson-core-2*", "jackson-databind-*", "commons-codec-*", "netty-buffer-*",
                    "netty-common-*", "slf4j-api-*"]
NATIVE_JVM_OPTIONS = ["--add-opens=java.base/java.nio=ALL-UNNAMED",
                      "-Dio.netty.tryReflectionSetAccessible=true"]
REL_TOLERANCE = 1e-6


def emit(event):
    print(EVENT + json.dumps(event), flush=True)


# ------------------------------------------------------------- a Spark engine, under spark-submit

def error_text(exc):
    """One line for a failed query: the Java exception when there is one."""
    java = getattr(exc, "java_exception", None)
    text = java.toString() if java is not None else f"{type(exc).__name__}: {exc}"
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:1000]


def run_spark_engine(args):
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(f"ballista-tpch-bench-{args.run_engine}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    register_tables(spark, args.data)
    jvm = os.getppid()  # spark-submit's JVM started this Python driver
    plugin = args.run_engine == "plugin"
    emit({"event": "engine", "spark_version": spark.version,
          "java_version": spark._jvm.System.getProperty("java.version"),
          "python_version": sys.version.split()[0],
          "native_version": (spark._jvm.io.ballista.spark.jni.NativeEngine.version()
                             if plugin else None),
          "jvm_pid": jvm})
    sampler = RssSampler(jvm)
    os.makedirs(args.results, exist_ok=True)
    for number in query_numbers(args.queries):
        sql = read_query(number)
        emit({"event": "start", "query": number})
        sampler.start()
        done = {"event": "done", "query": number}
        rows = df = None
        for run in range(args.runs + 1):
            try:
                start = time.perf_counter()
                df = spark.sql(sql)
                rows = df.collect()
                seconds = time.perf_counter() - start
            except Exception as exc:  # noqa: BLE001 - any failure is reported, the rest go on
                traceback.print_exc()
                done["error"] = error_text(exc)
                break
            emit({"event": "run", "query": number, "run": run, "seconds": seconds})
        done.update(sampler.stop())
        if "error" not in done:
            path = os.path.join(args.results, f"q{number:02d}.pickle")
            with open(path, "wb") as f:
                pickle.dump({"columns": df.columns, "rows": [tuple(row) for row in rows]}, f)
            done.update(rows=len(rows), result=path)
            if plugin:
                executed = df._jdf.queryExecution().executedPlan()
                report = spark._jvm.org.apache.spark.sql.ballista.Fallbacks.of(executed)
                done["native_plan"] = "Ballista" in executed.toString()
                done["fallbacks"] = [f"{report.apply(i)._1()}: {report.apply(i)._2()}"
                                     for i in range(report.size())]
        emit(done)
        if "error" in done and status_bytes(jvm, "VmRSS") == 0:
            sys.exit(3)  # the JVM is gone: the orchestrator restarts for the remaining queries
    spark.stop()


# ------------------------------------------------------------------------------ result checks

def has_order_by(sql):
    return re.search(r"\border\s+by\b", sql, re.IGNORECASE) is not None


def load_result(path):
    """(column names, rows as tuples) of a result file an engine wrote."""
    if path.endswith(".pickle"):
        with open(path, "rb") as f:
            result = pickle.load(f)
        return result["columns"], result["rows"]
    import pyarrow as pa

    with pa.OSFile(path, "rb") as f:
        table = pa.ipc.open_file(f).read_all()
    return table.column_names, [tuple(row.values()) for row in table.to_pylist()]


def is_number(value):
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def values_close(expected, actual):
    """The native check's equality of two values (see the module's description)."""
    if is_number(expected) and is_number(actual):
        a, b = float(expected), float(actual)
        if a == b:
            return True
        tolerance = REL_TOLERANCE * max(abs(a), abs(b))
        for value in (expected, actual):
            if isinstance(value, decimal.Decimal) and value.is_finite():
                tolerance = max(tolerance, 10.0 ** value.as_tuple().exponent)
        return abs(a - b) <= tolerance
    return expected == actual


def sort_key(row):
    return tuple((True, 0) if v is None else (False, float(v) if is_number(v) else v)
                 for v in row)


def compare(reference, result, ordered, exact, columns=None):
    """(True, "") when `result` matches `reference` (rows as tuples), else (False, why)."""
    if len(reference) != len(result):
        return False, f"{len(result)} rows, vanilla Spark {len(reference)}"
    if reference and len(reference[0]) != len(result[0]):
        return False, f"{len(result[0])} columns, vanilla Spark {len(reference[0])}"
    expected, actual = (reference, result) if ordered else (sorted(reference, key=sort_key),
                                                            sorted(result, key=sort_key))

    def equal(x, y):
        return x == y if exact else values_close(x, y)

    for i, (e, a) in enumerate(zip(expected, actual)):
        for j, (x, y) in enumerate(zip(e, a)):
            if not equal(x, y):
                if ordered and compare(reference, result, False, exact)[0]:
                    return False, "the same rows in another order"
                name = columns[j] if columns and j < len(columns) else j + 1
                return False, (f"{'row' if ordered else 'sorted row'} {i + 1}, column {name}: "
                               f"{y!r}, vanilla Spark {x!r}")
    return True, ""


# ------------------------------------------------------------------------------ orchestration

def jar_info(jar):
    digest = hashlib.sha256()
    with open(jar, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    stat = os.stat(jar)
    return {"path": os.path.abspath(jar), "bytes": stat.st_size, "sha256": digest.hexdigest(),
            "modified": datetime.datetime.fromtimestamp(stat.st_mtime).isoformat(
                timespec="seconds")}


def git_commit():
    try:
        commit = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain",
                                "--untracked-files=no"], check=True, capture_output=True,
                               text=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def cargo_version(crate):
    try:
        with open(os.path.join(REPO_ROOT, "Cargo.toml")) as f:
            match = re.search(rf'^{crate}\s*=\s*(?:"([^"]+)"|\{{[^}}]*version\s*=\s*"([^"]+)")',
                              f.read(), re.MULTILINE)
        return match and (match.group(1) or match.group(2))
    except OSError:
        return None


def native_classpath(jar):
    spark_home = os.environ.get("SPARK_HOME")
    if not spark_home:
        import pyspark

        spark_home = os.path.dirname(pyspark.__file__)
    jars = [jar]
    for pattern in NATIVE_CLASSPATH:
        found = sorted(glob.glob(os.path.join(spark_home, "jars", pattern + ".jar")))
        if not found:
            raise SystemExit(f"no {pattern}.jar under {spark_home}/jars")
        jars.append(found[0])
    return ":".join(jars)


def engine_command(args, engine, numbers, results_dir):
    spec = ",".join(str(n) for n in numbers)
    if engine == "native":
        return (["java", f"-Xmx{args.native_heap}"] + NATIVE_JVM_OPTIONS
                + ["-cp", native_classpath(args.jar), os.path.join(BENCH_DIR, "TpchNative.java"),
                   "--data", args.data, "--queries", spec, "--runs", str(args.runs),
                   "--memory-limit", str(parse_bytes(args.native_memory_limit)),
                   "--threads", "2", "--query-dir", os.path.join(BENCH_DIR, "tpch", "queries"),
                   "--results", results_dir])
    options = spark_submit_options(
        args.driver_memory, args.offheap_size, args.shuffle_partitions,
        jar=args.jar if engine == "plugin" else None,
        confs={"spark.shuffle.manager": SHUFFLE_MANAGER} if engine == "plugin" else None)
    return (["spark-submit"] + options
            + [os.path.abspath(__file__), "--run-engine", engine, "--data", args.data,
               "--queries", spec, "--runs", str(args.runs), "--results", results_dir])


def read_events(stream, events, log):
    for line in stream:
        if line.startswith(EVENT):
            try:
                events.put(json.loads(line[len(EVENT):]))
                continue
            except json.JSONDecodeError:
                pass
        log.write(line)
        log.flush()
    events.put(None)


def progress(engine, number, text):
    print(f"[{engine}] q{number:02d} {text}", flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.runs_dir = os.path.join(args.out, "tpch_bench_runs")
        self.numbers = query_numbers(args.queries)
        self.sql = {n: read_query(n) for n in self.numbers}
        self.report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "settings": {
                "scale_factor": args.scale_factor, "data": args.data,
                "data_generator": args.data_generator, "queries": self.numbers,
                "warmup_runs": 1, "timed_runs": args.runs, "engines": args.engines,
                "jar": jar_info(args.jar), "git_commit": git_commit(),
                "datafusion_version": cargo_version("datafusion"),
                "driver_memory": args.driver_memory, "offheap_size": args.offheap_size,
                "shuffle_partitions": args.shuffle_partitions,
                "native_memory_limit": args.native_memory_limit,
                "native_heap": args.native_heap, "native_threads": 2,
                "query_timeout_seconds": args.query_timeout or None,
                "timing": "submit the SQL + collect the whole result; median of the timed runs",
                "peak_rss": "the engine's JVM during the query (warm-up and timed runs): max of "
                            "VmRSS sampled every 50 ms and VmHWM reset at the query's start",
                "check": {"plugin": "rows identical to vanilla Spark's (in order with ORDER BY)",
                          "native": f"same rows as vanilla Spark's, numbers within "
                                    f"{REL_TOLERANCE:g} relative or one unit in the last place "
                                    f"of a decimal (in order with ORDER BY)"},
            },
            "engines": {},
            "queries": {f"Q{n:02d}": {} for n in self.numbers},
        }

    def record(self, engine, number):
        return self.report["queries"][f"Q{number:02d}"].setdefault(
            engine, {"status": "failed", "warmup_seconds": None, "seconds": [], "median": None,
                     "error": None})

    def run_engine(self, engine):
        results_dir = os.path.join(self.runs_dir, engine)
        os.makedirs(results_dir, exist_ok=True)
        for stale in glob.glob(os.path.join(results_dir, "q*.*")):
            os.remove(stale)
        log_path = os.path.join(self.runs_dir, f"{engine}.log")
        info = self.report["engines"][engine] = {"label": LABELS[engine], "log": log_path,
                                                 "commands": [], "exit_codes": []}
        remaining = list(self.numbers)
        with open(log_path, "w") as log:
            while remaining:
                command = engine_command(self.args, engine, remaining, results_dir)
                info["commands"].append(command)
                log.write(f"$ {' '.join(command)}\n")
                log.flush()
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                                           start_new_session=True, cwd=REPO_ROOT)
                events = queue.Queue()
                reader = threading.Thread(target=read_events, args=(process.stdout, events, log),
                                          daemon=True)
                reader.start()
                current, started, timed_out, any_started = None, time.monotonic(), False, False
                while True:
                    timeout = None
                    if self.args.query_timeout and not timed_out:
                        timeout = max(0.1, self.args.query_timeout
                                      - (time.monotonic() - started))
                    try:
                        event = events.get(timeout=timeout)
                    except queue.Empty:
                        timed_out = True
                        os.killpg(process.pid, signal.SIGKILL)  # the engine's processes only
                        continue
                    if event is None:
                        break
                    kind = event.get("event")
                    if kind == "engine":
                        info["versions"] = {k: v for k, v in event.items() if k != "event"}
                    elif kind == "start":
                        current, started, any_started = event["query"], time.monotonic(), True
                    elif kind == "run":
                        self.on_run(engine, event)
                    elif kind == "done":
                        self.on_done(engine, event)
                        remaining.remove(event["query"])
                        current = None
                        started = time.monotonic()
                exit_code = process.wait()
                reader.join()
                info["exit_codes"].append(exit_code)
                if current is not None or not any_started:
                    why = (f"timed out after {self.args.query_timeout} s" if timed_out else
                           f"the {engine} process exited with code {exit_code} "
                           f"(see {log_path})")
                    lost = [current] if current is not None else list(remaining)
                    for number in lost:
                        record = self.record(engine, number)
                        record.update(status="failed", error=why)
                        progress(engine, number, f"FAILED: {why}")
                        remaining.remove(number)
                    log.write(f"# {why}\n")
                    log.flush()

    def on_run(self, engine, event):
        number, run = event["query"], event["run"]
        record = self.record(engine, number)
        if run == 0:
            record["warmup_seconds"] = event["seconds"]
            label = "warm-up"
        else:
            record["seconds"].append(event["seconds"])
            label = f"run {run}/{self.args.runs}"
        progress(engine, number, f"{label} {event['seconds']:.2f} s ok")

    def on_done(self, engine, event):
        number = event["query"]
        record = self.record(engine, number)
        for key in ("rows", "peak_rss_bytes", "sampled_peak_rss_bytes", "hwm_bytes", "result",
                    "native_plan", "fallbacks"):
            if key in event:
                record[key] = event[key]
        if event.get("error"):
            record.update(status="failed", error=" ".join(event["error"].split()))
            progress(engine, number, f"FAILED: {event['error']}")
            return
        record["status"] = "ok"
        record["median"] = statistics.median(record["seconds"])
        record["check"], record["check_detail"] = self.check(engine, number, record)
        check = record["check"] + (f" ({record['check_detail']})" if record["check_detail"]
                                   else "")
        progress(engine, number, f"median {record['median']:.2f} s, peak RSS "
                                 f"{mib(record['peak_rss_bytes'])} MiB, {record['rows']} rows, "
                                 f"check {check}")

    def check(self, engine, number, record):
        if engine == "vanilla":
            return "reference", ""
        reference = self.report["queries"][f"Q{number:02d}"].get("vanilla")
        if not reference or reference["status"] != "ok":
            return "no reference", "vanilla Spark did not run it"
        try:
            columns, expected = load_result(reference["result"])
            _, actual = load_result(record["result"])
            ok, why = compare(expected, actual, has_order_by(self.sql[number]),
                              exact=engine != "native", columns=columns)
        except Exception as exc:  # noqa: BLE001 - an unreadable result is a failed check
            ok, why = False, f"cannot compare: {type(exc).__name__}: {exc}"
        detail = why
        if ok and engine == "plugin":
            fallbacks = record.get("fallbacks") or []
            if not record.get("native_plan"):
                detail = "no native operator in the plan"
            elif fallbacks:
                detail = f"{len(fallbacks)} operators stayed in Spark"
        return ("ok" if ok else "MISMATCH"), detail

    def write(self):
        os.makedirs(self.args.out, exist_ok=True)
        with open(os.path.join(self.args.out, "tpch_bench.json"), "w") as f:
            json.dump(self.report, f, indent=2)
        table = markdown(self.report)
        with open(os.path.join(self.args.out, "tpch_bench.md"), "w") as f:
            f.write(table)
        chart(self.report, os.path.join(self.args.out, "tpch_bench.png"))
        return table

    def failures(self):
        count = 0
        for runs in self.report["queries"].values():
            for engine in self.args.engines:
                run = runs.get(engine)
                count += not run or run["status"] != "ok" or run.get("check") == "MISMATCH"
        return count


# ----------------------------------------------------------------------------------- reports

def fmt(value, pattern="{:.2f}"):
    return "—" if value is None else pattern.format(value)


def summary(report):
    """Per query the medians, ratios and peaks; the queries every engine ran; totals."""
    engines = report["settings"]["engines"]
    rows, complete = {}, []
    for query, runs in report["queries"].items():
        median = {e: runs[e]["median"] if e in runs and runs[e]["status"] == "ok" else None
                  for e in engines}
        rows[query] = median
        if all(median[e] for e in engines):
            complete.append(query)
    totals = {e: sum(rows[q][e] for q in complete) for e in engines}
    geomeans = {e: geomean([rows[q][e] for q in complete]) for e in engines}
    return rows, complete, totals, geomeans


def ratio(numerator, denominator):
    return numerator / denominator if numerator and denominator else None


def markdown(report):
    settings, engines = report["settings"], report["settings"]["engines"]
    medians, complete, totals, geomeans = summary(report)
    host = report["machine"]
    memory = host["memory"] or ""
    if memory.endswith(" kB"):
        memory = f"{int(memory.split()[0]) / (1 << 20):.0f} GiB"
    versions = report["engines"].get("plugin", report["engines"].get("vanilla", {})).get(
        "versions", {})
    lines = [
        f"# TPC-H scale factor {settings['scale_factor']}: vanilla Spark, Spark + Ballista, "
        "the native engine alone",
        "",
        f"{report['date']}, {host['cpu']} ({host['cpus']} CPUs, {memory}); Spark "
        f"{versions.get('spark_version', '?')}, DataFusion {settings['datafusion_version']}, "
        f"commit {settings['git_commit']}. Median of {settings['timed_runs']} timed run(s) "
        "after one warm-up, timed around submitting the SQL and collecting the whole result.",
        "",
        f"- vanilla: `spark-submit --master local[2] --driver-memory {settings['driver_memory']}`,"
        f" off-heap {settings['offheap_size']}, {settings['shuffle_partitions']} shuffle "
        "partitions",
        "- plugin: the same plus the plugin jar, `spark.plugins=ballista` and "
        "`spark.shuffle.manager=...BallistaShuffleManager`",
        f"- native: `bench/TpchNative.java` (Java client API, DataFusion's SQL), 2 threads, "
        f"memory limit {settings['native_memory_limit']}, JVM heap {settings['native_heap']}",
        "- peak RSS: the engine's JVM while the query ran (warm-up and timed runs); the process "
        "lives across queries",
        "- check: plugin rows identical to vanilla's; native rows equal with numbers within "
        f"{REL_TOLERANCE:g} relative or one unit in a decimal's last place",
        "",
        "| query | vanilla (s) | plugin (s) | native (s) | plugin speed-up | plugin / native "
        "| vanilla peak (MiB) | plugin peak (MiB) | native peak (MiB) | plugin check "
        "| native check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]

    def time_cell(run):
        if run is None:
            return "—"
        return f"{run['median']:.2f}" if run["status"] == "ok" else "FAILED"

    def peak_cell(run):
        return mib(run["peak_rss_bytes"]) if run and run.get("peak_rss_bytes") else "—"

    def check_cell(run):
        if run is None:
            return "—"
        if run["status"] != "ok":
            return "FAILED"
        return run["check"] + (f": {run['check_detail']}" if run.get("check_detail") else "")

    for query, runs in report["queries"].items():
        m = medians[query]
        cells = [time_cell(runs.get(e)) for e in ENGINES]
        speedup = ratio(m.get("vanilla"), m.get("plugin"))
        overhead = ratio(m.get("plugin"), m.get("native"))
        lines.append(
            f"| {query} | {' | '.join(cells)} | {fmt(speedup, '{:.2f}x')} "
            f"| {fmt(overhead, '{:.2f}x')} | "
            + " | ".join(peak_cell(runs.get(e)) for e in ENGINES)
            + f" | {check_cell(runs.get('plugin'))} | {check_cell(runs.get('native'))} |")

    def summary_row(label, values):
        cells = [fmt(values.get(e)) for e in ENGINES]
        speedup = ratio(values.get("vanilla"), values.get("plugin"))
        overhead = ratio(values.get("plugin"), values.get("native"))
        return (f"| **{label}** | {' | '.join(f'**{c}**' for c in cells)} "
                f"| **{fmt(speedup, '{:.2f}x')}** | **{fmt(overhead, '{:.2f}x')}** "
                "| | | | | |")

    max_peaks = {e: max((runs[e]["peak_rss_bytes"] for runs in report["queries"].values()
                         if e in runs and runs[e].get("peak_rss_bytes")), default=None)
                 for e in engines}
    lines.append(summary_row(f"total ({len(complete)} queries)", totals if complete else {}))
    lines.append(summary_row("geometric mean", geomeans if complete else {}))
    lines.append("| **max peak** | | | | | | "
                 + " | ".join(f"**{mib(max_peaks[e])}**" if max_peaks.get(e) else "" for e in
                              ENGINES) + " | | |")
    native_speedup = ratio(geomeans.get("vanilla"), geomeans.get("native"))
    lines += ["",
              f"Totals and geometric means over the {len(complete)} queries every engine ran; "
              f"speed-up = vanilla / plugin time; plugin / native = how far the plugin is from "
              f"the native engine alone (1.00x: no cost of running inside Spark). The native "
              f"engine alone vs vanilla Spark: {fmt(native_speedup, '{:.2f}x')} (geometric "
              "mean)."]
    problems = []
    for query, runs in report["queries"].items():
        for engine in engines:
            run = runs.get(engine)
            if run and run["status"] != "ok":
                problems.append(f"- {query} {engine}: FAILED: {run['error']}")
            elif run and run.get("check") not in ("ok", "reference"):
                problems.append(f"- {query} {engine}: {check_cell(run)}")
            elif run and run.get("fallbacks"):
                problems.append(f"- {query} {engine}: stays in Spark: "
                                + "; ".join(run["fallbacks"]))
    if problems:
        lines += ["", "Failures, mismatches and fallbacks:", ""] + problems
    return "\n".join(lines) + "\n"


def chart(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    medians, complete, _, geomeans = summary(report)
    queries = list(report["queries"]) + ["geomean"]
    series = []
    for engine, color in (("plugin", "#1f77b4"), ("native", "#ff7f0e")):
        values = [ratio(medians[q].get("vanilla"), medians[q].get(engine)) for q in queries[:-1]]
        values.append(ratio(geomeans.get("vanilla"), geomeans.get(engine)) if complete else None)
        series.append((f"{LABELS[engine]} vs vanilla Spark", values, color))
    figure, axes = plt.subplots(figsize=(max(8, 0.6 * len(queries) + 2), 4.8))
    width = 0.4
    for i, (label, values, color) in enumerate(series):
        xs = [x + (i - 0.5) * width for x in range(len(queries))]
        heights = [v or 0 for v in values]
        bars = axes.bar(xs, heights, width, label=label, color=color)
        for bar, value in zip(bars, values):
            text = f"{value:.1f}" if value else "n/a"
            axes.annotate(text, (bar.get_x() + bar.get_width() / 2, max(bar.get_height(), 1)),
                          ha="center", va="bottom", fontsize=6, rotation=90,
                          xytext=(0, 2), textcoords="offset points")
    axes.axhline(1, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    axes.set_xticks(range(len(queries)))
    axes.set_xticklabels(queries, rotation=45, fontsize=8)
    axes.set_ylabel("speed-up vs vanilla Spark (median time ratio)")
    settings = report["settings"]
    axes.set_title(f"TPC-H SF{settings['scale_factor']}: speed-up over vanilla Spark "
                   f"({report['date'][:10]}, {report['machine']['cpus']} CPUs)", fontsize=10)
    axes.legend(fontsize=8)
    top = max([v for _, values, _ in series for v in values if v] + [2])
    axes.set_ylim(min([v for _, values, _ in series for v in values if v] + [1]) / 1.5,
                  top * 2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ------------------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory of TPC-H Parquet tables")
    parser.add_argument("--jar", help="the plugin jar (plugin, Java client API, native library)")
    parser.add_argument("--scale-factor", default="1", help="scale factor of --data (recorded)")
    parser.add_argument("--data-generator", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--queries", default="all", help="comma-separated query numbers, or all")
    parser.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated subset of vanilla,plugin,native")
    parser.add_argument("--driver-memory", default="8g", help="both Spark engines")
    parser.add_argument("--offheap-size", default="4g",
                        help="spark.memory.offHeap.size, both Spark engines")
    parser.add_argument("--shuffle-partitions", type=int, default=8,
                        help="spark.sql.shuffle.partitions, both Spark engines")
    parser.add_argument("--native-memory-limit", default=None,
                        help="memory limit of the native engine alone (default: --offheap-size)")
    parser.add_argument("--native-heap", default="1g", help="JVM heap of the native engine alone")
    parser.add_argument("--query-timeout", type=float, default=0,
                        help="seconds a query (all its runs) may take before its engine process "
                             "is killed and restarted for the rest (default 0: no limit)")
    parser.add_argument("--out", default=os.path.join(BENCH_DIR, "results"),
                        help="output directory")
    parser.add_argument("--run-engine", choices=["vanilla", "plugin"], help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.run_engine:
        return run_spark_engine(args)
    args.engines = [e for e in ENGINES if e in args.engines.split(",")]
    if not args.jar or not os.path.exists(args.jar):
        parser.error("--jar must name the plugin jar")
    args.native_memory_limit = args.native_memory_limit or args.offheap_size
    args.out = os.path.abspath(args.out)

    bench = Bench(args)
    for engine in args.engines:
        print(f"==> {LABELS[engine]}", flush=True)
        bench.run_engine(engine)
        bench.write()
    table = bench.write()
    print()
    print(table)
    print(f"wrote {os.path.join(args.out, 'tpch_bench.json')}, tpch_bench.md, tpch_bench.png; "
          f"logs and results under {bench.runs_dir}")
    failures = bench.failures()
    if failures:
        print(f"{failures} failed or mismatching query runs", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
