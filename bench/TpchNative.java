// The native engine alone on TPC-H, without Spark: the lower bound of bench/tpch_bench.py.
//
// Runs with Java's source launcher (no build step), on the plugin jar (Java client API and
// native library) and the Arrow Java jars Spark ships:
//
//   java --add-opens=java.base/java.nio=ALL-UNNAMED -cp JAR:ARROW_JARS bench/TpchNative.java \
//       --data DIR --queries 1,6 --runs 3 --memory-limit BYTES --threads 2 --results DIR
//
// One BallistaContext (DataFusion with Spark's functions) with the eight tables of --data
// registered as Parquet; for each query one warm-up and --runs timed runs, each timed around
// "submit the SQL + collect the whole result" (every Arrow batch read and kept, as Spark's
// collect() keeps every row). The last run's result is written to --results/qNN.arrow (Arrow
// IPC file) for the result check. The peak RSS of this process while the query runs (warm-up
// and timed runs) is VmRSS sampled every 50 ms and VmHWM reset at the query's start.
//
// Reports on standard output as lines "@@ <JSON object>" (events read by tpch_bench.py):
//   {"event":"engine", ...versions}
//   {"event":"start","query":N}
//   {"event":"run","query":N,"run":R,"seconds":S}        R = 0 for the warm-up
//   {"event":"done","query":N,"rows":..,"peak_rss_bytes":..,"result":PATH,"error":..}

import io.ballista.client.BallistaContext;
import io.ballista.spark.jni.NativeEngine;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorLoader;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.VectorUnloader;
import org.apache.arrow.vector.dictionary.DictionaryProvider;
import org.apache.arrow.vector.ipc.ArrowFileWriter;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.ipc.message.ArrowRecordBatch;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.arrow.vector.util.TransferPair;

public final class TpchNative {
  private static final String[] TABLES = {
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"
  };

  private TpchNative() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> options = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      options.put(args[i].replaceFirst("^--", ""), args[i + 1]);
    }
    Path data = Paths.get(required(options, "data"));
    Path queryDir = Paths.get(options.getOrDefault("query-dir", "bench/tpch/queries"));
    Path results = Paths.get(required(options, "results"));
    int runs = Integer.parseInt(options.getOrDefault("runs", "3"));
    long memoryLimit = Long.parseLong(options.getOrDefault("memory-limit", "0"));
    int threads = Integer.parseInt(options.getOrDefault("threads", "2"));
    List<Integer> queries = new ArrayList<>();
    String spec = options.getOrDefault("queries", "all");
    if (spec.equals("all")) {
      for (int q = 1; q <= 22; q++) {
        queries.add(q);
      }
    } else {
      for (String q : spec.split(",")) {
        queries.add(Integer.parseInt(q.trim()));
      }
    }
    Files.createDirectories(results);

    RssSampler sampler = new RssSampler();
    BufferAllocator allocator = new RootAllocator();
    try (BallistaContext context = BallistaContext.create(memoryLimit, threads, allocator)) {
      for (String name : TABLES) {
        Path path = data.resolve(name + ".parquet");
        Path table = Files.exists(path) ? path : data.resolve(name);
        context.registerParquet(name, table.toString());
      }
      Map<String, Object> engine = new LinkedHashMap<>();
      engine.put("event", "engine");
      engine.put("native_version", NativeEngine.version());
      engine.put("java_version", System.getProperty("java.version"));
      engine.put("java_vm", System.getProperty("java.vm.name"));
      engine.put("max_heap_bytes", Runtime.getRuntime().maxMemory());
      engine.put("memory_limit_bytes", memoryLimit);
      engine.put("threads", threads);
      emit(engine);

      for (int query : queries) {
        String name = String.format("q%02d", query);
        String sql = new String(Files.readAllBytes(queryDir.resolve(name + ".sql")),
            StandardCharsets.UTF_8);
        emit(event("start", query));
        sampler.start();
        String error = null;
        long rows = -1;
        Path resultFile = results.resolve(name + ".arrow");
        Files.deleteIfExists(resultFile);
        for (int run = 0; run <= runs && error == null; run++) {
          List<VectorSchemaRoot> batches = new ArrayList<>();
          Schema[] schema = new Schema[1];
          try {
            long start = System.nanoTime();
            collect(context, sql, allocator, batches, schema);
            double seconds = (System.nanoTime() - start) / 1e9;
            Map<String, Object> event = event("run", query);
            event.put("run", run);
            event.put("seconds", seconds);
            emit(event);
            if (run == runs) {
              rows = write(resultFile, schema[0], batches, allocator);
            }
          } catch (Exception | Error e) {
            error = e.toString();
          } finally {
            batches.forEach(VectorSchemaRoot::close);
          }
        }
        Map<String, Object> done = event("done", query);
        done.putAll(sampler.stop());
        if (error == null) {
          done.put("rows", rows);
          done.put("result", resultFile.toString());
        } else {
          done.put("error", error);
        }
        emit(done);
      }
    }
    allocator.close();
  }

  /** Runs `sql` and keeps every batch of its result: the "collect" of this engine. */
  private static void collect(
      BallistaContext context,
      String sql,
      BufferAllocator allocator,
      List<VectorSchemaRoot> batches,
      Schema[] schema)
      throws Exception {
    try (ArrowReader reader = context.sql(sql)) {
      VectorSchemaRoot root = reader.getVectorSchemaRoot();
      schema[0] = root.getSchema();
      while (reader.loadNextBatch()) {
        // Moves the batch's buffers out of the reader's root (no copy), as a batch of its own.
        List<FieldVector> vectors = new ArrayList<>();
        for (FieldVector vector : root.getFieldVectors()) {
          TransferPair transfer = vector.getTransferPair(allocator);
          transfer.transfer();
          vectors.add((FieldVector) transfer.getTo());
        }
        batches.add(new VectorSchemaRoot(schema[0].getFields(), vectors, root.getRowCount()));
      }
    }
  }

  /** Writes the batches as one Arrow IPC file; the number of rows. */
  private static long write(
      Path file, Schema schema, List<VectorSchemaRoot> batches, BufferAllocator allocator)
      throws IOException {
    long rows = 0;
    try (VectorSchemaRoot root = VectorSchemaRoot.create(schema, allocator);
        FileOutputStream out = new FileOutputStream(file.toFile());
        ArrowFileWriter writer =
            new ArrowFileWriter(root, new DictionaryProvider.MapDictionaryProvider(),
                out.getChannel())) {
      writer.start();
      VectorLoader loader = new VectorLoader(root);
      for (VectorSchemaRoot batch : batches) {
        try (ArrowRecordBatch record = new VectorUnloader(batch).getRecordBatch()) {
          loader.load(record);
        }
        writer.writeBatch();
        rows += batch.getRowCount();
      }
      writer.end();
    }
    return rows;
  }

  /** Peak RSS of this process between start() and stop(). */
  private static final class RssSampler {
    private long peak;
    private boolean running;
    private boolean hwmReset;

    RssSampler() {
      Thread thread =
          new Thread(
              () -> {
                while (true) {
                  long rss = status("VmRSS");
                  synchronized (this) {
                    if (running) {
                      peak = Math.max(peak, rss);
                    }
                  }
                  try {
                    Thread.sleep(50);
                  } catch (InterruptedException e) {
                    return;
                  }
                }
              },
              "rss-sampler");
      thread.setDaemon(true);
      thread.start();
    }

    synchronized void start() {
      try {
        // Resets VmHWM to the current RSS (Linux >= 4.0).
        Files.write(Paths.get("/proc/self/clear_refs"), "5".getBytes(StandardCharsets.US_ASCII));
        hwmReset = true;
      } catch (IOException e) {
        hwmReset = false;
      }
      peak = status("VmRSS");
      running = true;
    }

    synchronized Map<String, Object> stop() {
      running = false;
      long sampled = Math.max(peak, status("VmRSS"));
      Long hwm = hwmReset ? status("VmHWM") : null;
      Map<String, Object> result = new LinkedHashMap<>();
      result.put("peak_rss_bytes", Math.max(sampled, hwm == null ? 0 : hwm));
      result.put("sampled_peak_rss_bytes", sampled);
      result.put("hwm_bytes", hwm);
      return result;
    }

    static long status(String field) {
      try {
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
          if (line.startsWith(field + ":")) {
            return Long.parseLong(line.split("\\s+")[1]) * 1024;
          }
        }
      } catch (IOException | RuntimeException e) {
        // not Linux: no figure
      }
      return 0;
    }
  }

  private static String required(Map<String, String> options, String name) {
    String value = options.get(name);
    if (value == null) {
      throw new IllegalArgumentException("--" + name + " is required");
    }
    return value;
  }

  private static Map<String, Object> event(String kind, int query) {
    Map<String, Object> event = new LinkedHashMap<>();
    event.put("event", kind);
    event.put("query", query);
    return event;
  }

  private static void emit(Map<String, Object> event) {
    StringBuilder json = new StringBuilder("@@ {");
    String separator = "";
    for (Map.Entry<String, Object> entry : event.entrySet()) {
      json.append(separator).append(quote(entry.getKey())).append(':');
      Object value = entry.getValue();
      json.append(value == null ? "null" : value instanceof Number ? value.toString()
          : quote(value.toString()));
      separator = ",";
    }
    System.out.println(json.append('}'));
    System.out.flush();
  }

  private static String quote(String text) {
    StringBuilder quoted = new StringBuilder("\"");
    for (char c : text.toCharArray()) {
      if (c == '"' || c == '\\') {
        quoted.append('\\').append(c);
      } else if (c < 0x20) {
        quoted.append(String.format("\\u%04x", (int) c));
      } else {
        quoted.append(c);
      }
    }
    return quoted.append('"').toString();
  }
}
