"""Helpers shared by the TPC-H benchmarks (tpch_compare.py, peak_memory.py, tpch_bench.py):
the queries and tables, the spark-submit settings every engine shares, the machine description
and process memory read from /proc. Imports nothing from Spark, so the orchestrating scripts
run outside spark-submit too."""

import os
import platform
import statistics
import time

TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
QUERY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tpch", "queries")
SHUFFLE_MANAGER = "org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager"
MIB = 1024 * 1024


def table_path(data_dir, table):
    """The Parquet file or directory of `table` in `data_dir`: `<table>.parquet` or `<table>`."""
    for candidate in (f"{table}.parquet", table):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise SystemExit(f"table {table} not found under {data_dir}")


def register_tables(spark, data_dir):
    """Registers the eight TPC-H tables of `data_dir` as temporary views of `spark`."""
    for table in TABLES:
        spark.read.parquet(table_path(data_dir, table)).createOrReplaceTempView(table)


def query_numbers(spec):
    """TPC-H query numbers from "all" or a comma-separated list such as "1,6,9"."""
    return list(range(1, 23)) if spec == "all" else [int(q) for q in spec.split(",")]


def read_query(number):
    """The SQL text of TPC-H query `number`."""
    with open(os.path.join(QUERY_DIR, f"q{number:02d}.sql")) as f:
        return f.read()


def spark_submit_options(driver_memory, offheap_size, shuffle_partitions, jar=None, confs=None):
    """`spark-submit` options of the benchmarks: `local[2]` (the driver JVM is the executor),
    driver memory, off-heap memory (the plugin's supported configuration; vanilla Spark's
    Tungsten then also allocates its execution memory off-heap), shuffle partitions, no UI.
    With `jar`: the plugin jar and `spark.plugins=ballista`. `confs` are added last."""
    settings = {
        "spark.memory.offHeap.enabled": "true",
        "spark.memory.offHeap.size": offheap_size,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.ui.enabled": "false",
    }
    options = ["--master", "local[2]", "--driver-memory", driver_memory]
    if jar:
        options += ["--jars", jar]
        settings["spark.plugins"] = "ballista"
    settings.update(confs or {})
    for key, value in settings.items():
        options += ["--conf", f"{key}={value}"]
    return options


def parse_bytes(text):
    """Bytes of a JVM-style size such as "4g", "512m" or "1073741824"."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def status_bytes(pid, field):
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM) in bytes; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pss_bytes(pid):
    """The proportional set size of a process in bytes (its resident pages, those it shares with
    other processes divided among them), from /proc/<pid>/smaps_rollup; its VmRSS where that
    cannot be read; 0 once the process is gone. Summed over processes, shared pages (a child
    forked from the JVM, shared libraries) count once, as they do against a container's limit."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return status_bytes(pid, "VmRSS")


def process_tree(root):
    """`root` and all its descendants, found by scanning /proc for parent ids."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending += children.get(pid, [])
    return tree


def reset_peak_rss(pid):
    """Resets the process's VmHWM to its current RSS (Linux >= 4.0: "5" to clear_refs);
    whether it worked."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """The peak RSS of process `pid` between `start()` and `stop()`: VmRSS sampled every
    `interval` seconds in a thread, and the kernel's VmHWM (reset at `start()`, when the kernel
    allows) which catches peaks between two samples."""

    def __init__(self, pid, interval=0.05):
        import threading

        self.pid, self.interval = pid, interval
        self.lock = threading.Lock()
        self.peak = 0
        self.running = False
        self.hwm_reset = False
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while True:
            rss = status_bytes(self.pid, "VmRSS")
            with self.lock:
                if self.running:
                    self.peak = max(self.peak, rss)
            time.sleep(self.interval)

    def start(self):
        self.hwm_reset = reset_peak_rss(self.pid)
        with self.lock:
            self.peak = status_bytes(self.pid, "VmRSS")
            self.running = True

    def stop(self):
        """{"peak_rss_bytes", "sampled_peak_rss_bytes", "hwm_bytes" (None when not reset)}."""
        with self.lock:
            self.running = False
            sampled = max(self.peak, status_bytes(self.pid, "VmRSS"))
        hwm = status_bytes(self.pid, "VmHWM") if self.hwm_reset else None
        return {"peak_rss_bytes": max(sampled, hwm or 0), "sampled_peak_rss_bytes": sampled,
                "hwm_bytes": hwm}


def machine():
    """The machine the benchmark ran on."""
    def first(path, prefix):
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefix)),
                        None)
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": first("/proc/cpuinfo", "model name"),
        "cpus": os.cpu_count(),
        "memory": first("/proc/meminfo", "MemTotal"),
    }


def mib(value):
    return f"{value / MIB:.0f}"


def geomean(values):
    """The geometric mean of `values`, None when there are none."""
    return statistics.geometric_mean(values) if values else None
