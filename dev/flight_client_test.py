"""Reads native shuffle blocks from the plugin's Arrow Flight server as an outside client.

Runs a native query with a shuffle, then — knowing only the server's endpoint, the
application's secret and Spark's block names — fetches map output blocks with `pyarrow.flight`
and checks them against the map output files on disk:

  - one non-empty reduce partition (ticket `shuffle_<shuffle>_<map>_<reduce>`) equals the Arrow
    IPC stream that `pyarrow.ipc` decodes from that partition's byte range of the `.data` file;
  - a range ticket over every partition (`shuffle_<shuffle>_<map>_0_<partitions>`) returns the
    rows of all the partition streams of that file, in order;
  - a call without the `authorization` header, and one with a wrong token, are refused with
    `FlightUnauthenticatedError`.

Submit with the plugin, its shuffle manager and a local directory of its own (the map output
files are looked for under spark.local.dir, or --local-dir):

    spark-submit --master 'local[2]' --jars ballista.jar --conf spark.plugins=ballista \
        --conf spark.shuffle.manager=org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager \
        --conf spark.ballista.ui.executorUpdateInterval=500 --conf spark.local.dir=/tmp/x \
        dev/flight_client_test.py --data /path/to/tpch-parquet

Exits non-zero with a message naming the failed check; prints a summary on success.
"""

import argparse
import json
import os
import re
import struct
import sys
import time
import urllib.request

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc as ipc
from pyspark.sql import SparkSession

# Its first exchange moves lineitem rows of several types (bigint, string, decimal, date) into
# SHUFFLE_PARTITIONS partitions; the aggregation's exchange after it moves a few rows.
QUERY = ("SELECT l_shipmode, count(*) AS n, sum(l_quantity) AS q, max(l_comment) AS c, "
         "max(l_shipdate) AS d FROM (SELECT * FROM lineitem DISTRIBUTE BY l_orderkey) "
         "GROUP BY l_shipmode")
SHUFFLE_PARTITIONS = 16
TOKEN_SUFFIX = "ballista.shuffle.flight.token"
DATA_FILE = re.compile(r"^shuffle_(\d+)_(\d+)_0\.data$")


class CheckFailed(Exception):
    """A check of the test failed; the message says which and why."""


def check(condition, message):
    """Raises CheckFailed(message) unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def flight_token(spark):
    """The secret the driver plugin generated for the Flight servers, from Spark's conf (the
    plugin hands it to the executors as `spark.plugins.internal.conf.<plugin>.<key>`)."""
    keys = {k: v for k, v in spark.sparkContext.getConf().getAll() if k.endswith(TOKEN_SUFFIX)}
    check(len(keys) == 1, f"expected one conf key ending in {TOKEN_SUFFIX}, found {sorted(keys)} "
          "(with spark.authenticate=true the secret is Spark's, which this test does not read)")
    (key, token), = keys.items()
    return key, token


def flight_endpoint(spark, timeout_seconds):
    """host:port of the (local-mode) executor's Flight server, from the Ballista REST API,
    polled until the executor has reported it."""
    url = f"{spark.sparkContext.uiWebUrl}/ballista/api/executors"
    deadline = time.monotonic() + timeout_seconds
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            executors = json.load(response)
        endpoints = [e["flightEndpoint"] for e in executors if e.get("flightEndpoint")]
        if endpoints:
            return endpoints[0]
        check(time.monotonic() < deadline,
              f"no executor reported a flightEndpoint at {url} within {timeout_seconds} s: "
              f"{executors}")
        time.sleep(0.2)


def read_index(path):
    """The (numPartitions + 1) big-endian int64 offsets of a map output's index file."""
    with open(path, "rb") as f:
        raw = f.read()
    check(len(raw) >= 16 and len(raw) % 8 == 0, f"{path}: {len(raw)} bytes is not an index file")
    return list(struct.unpack(f">{len(raw) // 8}q", raw))


def map_outputs(local_dirs):
    """(shuffle id, map id, data file, index offsets) of every map output under `local_dirs`
    that has an index file and at least one non-empty partition, the biggest first. Spark hashes each file into a
    subdirectory of its own, so a data file and its index are usually in different ones."""
    paths = {}
    for local_dir in local_dirs:
        for root, _, files in os.walk(local_dir):
            for name in files:
                paths[name] = os.path.join(root, name)
    found = []
    for name, data in paths.items():
        match = DATA_FILE.match(name)
        index = paths.get(name[:-len(".data")] + ".index")
        if match and index:
            offsets = read_index(index)
            size = os.path.getsize(data)
            check(offsets[0] == 0 and offsets[-1] == size and offsets == sorted(offsets),
                  f"{index} (offsets {offsets[0]}..{offsets[-1]}) does not describe {data} "
                  f"({size} bytes)")
            if size > 0:
                found.append((int(match[1]), int(match[2]), data, offsets))
    return sorted(found, key=lambda output: -output[3][-1])  # the biggest first


def partition_tables(data_path, offsets):
    """{reduce id: table} of the non-empty partitions of a data file, each decoded on its own
    as one Arrow IPC stream."""
    tables = {}
    with open(data_path, "rb") as f:
        raw = f.read()
    for reduce_id, (start, end) in enumerate(zip(offsets, offsets[1:])):
        if end > start:
            tables[reduce_id] = ipc.open_stream(pa.py_buffer(raw[start:end])).read_all()
    return tables


def fetch(client, ticket, token):
    """do_get of `ticket` with `authorization: Bearer <token>` (no header when token is None)."""
    headers = [] if token is None else [(b"authorization", b"Bearer " + token.encode())]
    options = flight.FlightCallOptions(headers=headers, timeout=60)
    return client.do_get(flight.Ticket(ticket.encode()), options).read_all()


def expect_unauthenticated(client, ticket, token, what):
    """Checks that fetching `ticket` with `token` is refused as unauthenticated."""
    try:
        fetch(client, ticket, token)
    except flight.FlightUnauthenticatedError:
        return
    except flight.FlightError as e:
        raise CheckFailed(f"{what}: expected FlightUnauthenticatedError, got "
                          f"{type(e).__name__}: {e}") from e
    raise CheckFailed(f"{what}: the server served {ticket} without a valid token")


def run_query(spark, data_dir):
    """Runs QUERY over lineitem natively; returns the DataFrame (whose shuffle lives while it is
    referenced) and its rows."""
    spark.read.parquet(os.path.join(data_dir, "lineitem.parquet")).createOrReplaceTempView("lineitem")
    spark.conf.set("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
    df = spark.sql(QUERY)
    rows = df.collect()
    plan = df._jdf.queryExecution().executedPlan().toString()
    check("BallistaShuffleExchange" in plan,
          f"the query's exchange is not native (no BallistaShuffleExchange):\n{plan}")
    check(rows, "the query returned no rows")
    return df, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory of TPC-H Parquet tables")
    parser.add_argument("--local-dir", help="where the map output files are (default: "
                        "spark.local.dir, which should then be set to a directory of this run)")
    parser.add_argument("--timeout", type=float, default=60,
                        help="seconds to wait for the executor to report its Flight endpoint")
    args = parser.parse_args()

    spark = SparkSession.builder.appName("ballista-flight-client-test").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        local_dir = args.local_dir or spark.sparkContext.getConf().get("spark.local.dir")
        check(local_dir, "spark.local.dir is not set: pass --conf spark.local.dir=<dir> or "
              "--local-dir")
        check(spark.sparkContext.getConf().get("spark.shuffle.manager", "").endswith(
            "BallistaShuffleManager"), "spark.shuffle.manager is not BallistaShuffleManager")
        check(spark.sparkContext.uiWebUrl, "the Spark UI is disabled (spark.ui.enabled=false); "
              "the Flight endpoint is read from its Ballista REST API")

        df, rows = run_query(spark, args.data)  # df keeps the shuffle from being cleaned up
        token_key, token = flight_token(spark)
        endpoint = flight_endpoint(spark, args.timeout)
        outputs = map_outputs(local_dir.split(","))
        check(outputs, f"no non-empty map output (shuffle_*_*_0.data + .index) under {local_dir}")
        shuffle_id, map_id, data_path, offsets = outputs[0]
        partitions = len(offsets) - 1
        on_disk = partition_tables(data_path, offsets)
        reduce_id = max(on_disk, key=lambda r: on_disk[r].num_rows)
        expected = on_disk[reduce_id]
        check(expected.num_rows > 0, f"{data_path}: its non-empty partitions hold no rows")

        client = flight.FlightClient(f"grpc://{endpoint}")
        ticket = f"shuffle_{shuffle_id}_{map_id}_{reduce_id}"
        fetched = fetch(client, ticket, token)
        check(fetched.num_rows > 0, f"{ticket}: Flight returned no rows")
        check(fetched.schema.equals(expected.schema),
              f"{ticket}: Flight schema {fetched.schema} differs from the file's {expected.schema}")
        check(fetched.equals(expected),
              f"{ticket}: the {fetched.num_rows} rows fetched over Flight differ from the "
              f"{expected.num_rows} rows decoded from bytes {offsets[reduce_id]}.."
              f"{offsets[reduce_id + 1]} of {data_path}")

        range_ticket = f"shuffle_{shuffle_id}_{map_id}_0_{partitions}"
        whole = fetch(client, range_ticket, token)
        on_disk_rows = sum(t.num_rows for t in on_disk.values())
        check(whole.num_rows == on_disk_rows,
              f"{range_ticket}: {whole.num_rows} rows over Flight, {on_disk_rows} in the "
              f"{len(on_disk)} partition streams of {data_path}")
        check(whole.equals(pa.concat_tables(on_disk[r] for r in sorted(on_disk))),
              f"{range_ticket}: the rows fetched over Flight differ from the partition streams")

        expect_unauthenticated(client, ticket, None, "no authorization header")
        expect_unauthenticated(client, ticket, "0" * len(token), "a wrong token")
        client.close()
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        spark.stop()
        sys.exit(1)

    print(f"Flight client test passed: query returned {len(rows)} rows; server {endpoint}, "
          f"token from {token_key}; {data_path} has {partitions} partitions "
          f"({len(on_disk)} non-empty); {ticket} -> {fetched.num_rows} rows equal to the file's "
          f"bytes {offsets[reduce_id]}..{offsets[reduce_id + 1]}; {range_ticket} -> "
          f"{whole.num_rows} rows = the partition streams'; no token and a wrong token refused "
          "(FlightUnauthenticatedError)")
    del df
    spark.stop()


if __name__ == "__main__":
    main()
