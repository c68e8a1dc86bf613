package io.ballista.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The client API end to end: tables from Arrow data, CSV and Parquet files, SQL results read
 * through the C Stream Interface, errors, cancellation, and release of native and Arrow memory.
 */
class BallistaContextTest {
  private BufferAllocator allocator;
  private long contextsBefore;
  private long streamsBefore;

  @TempDir Path dir;

  @BeforeEach
  void setUp() {
    allocator = new RootAllocator(Long.MAX_VALUE);
    contextsBefore = NativeClient.openContextCount();
    streamsBefore = NativeClient.openStreamCount();
  }

  @AfterEach
  void checkNothingLeaked() throws InterruptedException {
    assertEquals(contextsBefore, NativeClient.openContextCount(), "native contexts left open");
    assertEquals(streamsBefore, NativeClient.openStreamCount(), "native result streams left open");
    // Buffers shared with the native tasks of a cancelled query are released when those tasks
    // stop, shortly after the cancellation.
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (allocator.getAllocatedMemory() != 0 && System.nanoTime() < deadline) {
      Thread.sleep(20);
    }
    long leaked = allocator.getAllocatedMemory();
    String detail = leaked == 0 ? "" : allocator.toVerboseString();
    allocator.close();
    assertEquals(0, leaked, () -> "Arrow memory left allocated:\n" + detail);
  }

  private BallistaContext context() throws BallistaException {
    return BallistaContext.create(256L << 20, 2, allocator);
  }

  /** A table of {@code n} rows: id = 0..n-1, name = "n" + id, or null for multiples of 3. */
  private VectorSchemaRoot numbers(int n) {
    BigIntVector id = new BigIntVector("id", allocator);
    VarCharVector name = new VarCharVector("name", allocator);
    id.allocateNew(n);
    name.allocateNew(n);
    for (int i = 0; i < n; i++) {
      id.set(i, i);
      if (i % 3 != 0) {
        name.setSafe(i, ("n" + i).getBytes(StandardCharsets.UTF_8));
      }
    }
    List<FieldVector> vectors = List.of(id, name);
    VectorSchemaRoot root = new VectorSchemaRoot(vectors);
    root.setRowCount(n);
    return root;
  }

  /** Every row of the result, as lists of Java values (Long, String or null). */
  private static List<List<Object>> rows(ArrowReader reader) throws IOException {
    List<List<Object>> rows = new ArrayList<>();
    while (reader.loadNextBatch()) {
      VectorSchemaRoot root = reader.getVectorSchemaRoot();
      for (int r = 0; r < root.getRowCount(); r++) {
        List<Object> row = new ArrayList<>();
        for (FieldVector v : root.getFieldVectors()) {
          Object value = v.getObject(r);
          row.add(value == null ? null : value instanceof Long ? value : value.toString());
        }
        rows.add(row);
      }
    }
    return rows;
  }

  private static List<Object> row(Object... values) {
    return java.util.Arrays.asList(values);
  }

  @Test
  void sqlOverAnArrowTable() throws Exception {
    try (BallistaContext ctx = context()) {
      try (VectorSchemaRoot root = numbers(10)) {
        ctx.registerTable("t", root);
      }
      try (ArrowReader reader =
          ctx.sql("SELECT id * 2 AS d, upper(name) AS u FROM t WHERE id >= 7 ORDER BY id")) {
        assertEquals("d", reader.getVectorSchemaRoot().getSchema().getFields().get(0).getName());
        assertEquals(List.of(row(14L, "N7"), row(16L, "N8"), row(18L, null)), rows(reader));
      }
      try (ArrowReader reader = ctx.sql("SELECT count(*), count(name), sum(id) FROM t")) {
        assertEquals(List.of(row(10L, 6L, 45L)), rows(reader));
      }
    }
  }

  @Test
  void tableFromAnArrowReader() throws Exception {
    try (BallistaContext ctx = context()) {
      try (BallistaContext source = context()) {
        try (VectorSchemaRoot root = numbers(5)) {
          source.registerTable("s", root);
        }
        // Takes the reader over and closes it.
        ctx.registerTable("t", source.sql("SELECT id + 100 AS big FROM s ORDER BY id"));
      }
      try (ArrowReader reader = ctx.sql("SELECT min(big), max(big) FROM t")) {
        assertEquals(List.of(row(100L, 104L)), rows(reader));
      }
    }
  }

  @Test
  void csvAndParquetFiles() throws Exception {
    Path csv = dir.resolve("people.csv");
    Files.writeString(csv, "id,name,age\n1,ann,34\n2,bob,27\n3,cid,41\n");
    Path parquet = dir.resolve("people_parquet");
    try (BallistaContext ctx = context()) {
      ctx.registerCsv("people", csv.toString(), true);
      try (ArrowReader reader =
          ctx.sql("SELECT name, age FROM people WHERE age > 30 ORDER BY id")) {
        assertEquals(List.of(row("ann", 34L), row("cid", 41L)), rows(reader));
      }
      // The native engine writes the Parquet file (Arrow Java cannot).
      try (ArrowReader reader =
          ctx.sql("COPY (SELECT * FROM people) TO '" + parquet + "' STORED AS PARQUET")) {
        assertEquals(List.of(row(3L)), rows(reader));
      }
      ctx.registerParquet("p", parquet.toString());
      try (ArrowReader reader = ctx.sql("SELECT sum(age), max(name) FROM p")) {
        assertEquals(List.of(row(102L, "cid")), rows(reader));
      }
    }
  }

  @Test
  void protobufPlanOverParquet() throws Exception {
    Path csv = dir.resolve("people.csv");
    Files.writeString(csv, "id,name,age\n1,ann,34\n2,bob,27\n3,cid,41\n");
    Path parquet = dir.resolve("people.parquet");
    try (BallistaContext ctx = context()) {
      ctx.registerCsv("people", csv.toString(), true);
      try (ArrowReader reader =
          ctx.sql("COPY (SELECT name, age FROM people) TO '" + parquet + "' STORED AS PARQUET")) {
        assertEquals(List.of(row(3L)), rows(reader));
      }
      // SELECT name, age FROM parquet WHERE age > 30, as the Spark plugin would send it.
      io.ballista.spark.proto.Schema schema =
          io.ballista.spark.proto.Schema.newBuilder()
              .addFields(field("name", io.ballista.spark.proto.TypeId.TYPE_ID_STRING))
              .addFields(field("age", io.ballista.spark.proto.TypeId.TYPE_ID_INT64))
              .build();
      long size = Files.size(parquet);
      io.ballista.spark.proto.PlanNode scan =
          io.ballista.spark.proto.PlanNode.newBuilder()
              .setParquetScan(
                  io.ballista.spark.proto.ParquetScan.newBuilder()
                      .setDataSchema(schema)
                      .setPartitionSchema(io.ballista.spark.proto.Schema.getDefaultInstance())
                      .addFiles(
                          io.ballista.spark.proto.ScanFile.newBuilder()
                              .setPath(parquet.toUri().toString())
                              .setStart(0)
                              .setLength(size)
                              .setFileSize(size)))
              .build();
      io.ballista.spark.proto.Expr ageOver30 =
          io.ballista.spark.proto.Expr.newBuilder()
              .setBinary(
                  io.ballista.spark.proto.BinaryExpr.newBuilder()
                      .setOp(io.ballista.spark.proto.BinaryOp.BINARY_OP_GT)
                      .setLeft(
                          io.ballista.spark.proto.Expr.newBuilder()
                              .setColumn(
                                  io.ballista.spark.proto.BoundReference.newBuilder()
                                      .setIndex(1)
                                      .setDataType(
                                          type(io.ballista.spark.proto.TypeId.TYPE_ID_INT64))
                                      .setNullable(true)))
                      .setRight(
                          io.ballista.spark.proto.Expr.newBuilder()
                              .setLiteral(
                                  io.ballista.spark.proto.Literal.newBuilder()
                                      .setDataType(
                                          type(io.ballista.spark.proto.TypeId.TYPE_ID_INT64))
                                      .setLongValue(30)))
                      .setReturnType(type(io.ballista.spark.proto.TypeId.TYPE_ID_BOOLEAN)))
              .build();
      byte[] plan =
          io.ballista.spark.proto.Plan.newBuilder()
              .setRoot(
                  io.ballista.spark.proto.PlanNode.newBuilder()
                      .setFilter(
                          io.ballista.spark.proto.Filter.newBuilder()
                              .setInput(scan)
                              .setPredicate(ageOver30)))
              .setOutputSchema(schema)
              .build()
              .toByteArray();
      try (ArrowReader reader = ctx.executePlan(plan)) {
        assertEquals(List.of(row("ann", 34L), row("cid", 41L)), rows(reader));
      }
      BallistaException malformed =
          assertThrows(BallistaException.class, () -> ctx.executePlan(new byte[] {1, 2, 3}));
      assertTrue(malformed.getMessage().contains("malformed plan"), malformed.getMessage());
    }
  }

  private static io.ballista.spark.proto.DataType type(io.ballista.spark.proto.TypeId id) {
    return io.ballista.spark.proto.DataType.newBuilder().setId(id).build();
  }

  private static io.ballista.spark.proto.Field field(
      String name, io.ballista.spark.proto.TypeId id) {
    return io.ballista.spark.proto.Field.newBuilder()
        .setName(name)
        .setDataType(type(id))
        .setNullable(true)
        .build();
  }

  @Test
  void tpchParquetWhenAvailable() throws Exception {
    String tpch = System.getenv("BALLISTA_TPCH_DIR");
    org.junit.jupiter.api.Assumptions.assumeTrue(
        tpch != null && Files.exists(Path.of(tpch, "nation.parquet")), "BALLISTA_TPCH_DIR not set");
    try (BallistaContext ctx = context()) {
      ctx.registerParquet("nation", Path.of(tpch, "nation.parquet").toString());
      ctx.registerParquet("region", Path.of(tpch, "region.parquet").toString());
      try (ArrowReader reader =
          ctx.sql(
              "SELECT r_name, count(*) FROM nation JOIN region ON n_regionkey = r_regionkey"
                  + " GROUP BY r_name ORDER BY r_name")) {
        assertEquals(
            List.of(
                row("AFRICA", 5L),
                row("AMERICA", 5L),
                row("ASIA", 5L),
                row("EUROPE", 5L),
                row("MIDDLE EAST", 5L)),
            rows(reader));
      }
    }
  }

  @Test
  void badSqlThrowsWithTheNativeMessage() throws Exception {
    try (BallistaContext ctx = context()) {
      BallistaException e = assertThrows(BallistaException.class, () -> ctx.sql("SELEC 1"));
      assertTrue(e.getMessage().contains("SELEC"), e.getMessage());
      e = assertThrows(BallistaException.class, () -> ctx.sql("SELECT * FROM no_such_table"));
      assertTrue(e.getMessage().contains("no_such_table"), e.getMessage());
      // The context still works.
      try (ArrowReader reader = ctx.sql("SELECT 1 + 1")) {
        assertEquals(List.of(row(2L)), rows(reader));
      }
    }
  }

  @Test
  void missingFilesThrow() throws Exception {
    try (BallistaContext ctx = context()) {
      String missing = dir.resolve("missing.csv").toString();
      BallistaException e =
          assertThrows(BallistaException.class, () -> ctx.registerCsv("t", missing, true));
      assertTrue(e.getMessage().contains(missing), e.getMessage());
      String missingParquet = dir.resolve("missing.parquet").toString();
      e = assertThrows(BallistaException.class, () -> ctx.registerParquet("p", missingParquet));
      assertTrue(e.getMessage().contains(missingParquet), e.getMessage());
    }
  }

  @Test
  void closedContextRejectsCalls() throws Exception {
    BallistaContext ctx = context();
    ctx.close();
    ctx.close();
    assertTrue(ctx.isClosed());
    ctx.cancel();
    BallistaException e = assertThrows(BallistaException.class, () -> ctx.sql("SELECT 1"));
    assertTrue(e.getMessage().contains("closed"), e.getMessage());
  }

  @Test
  void negativeArgumentsAreRejected() {
    BallistaException e =
        assertThrows(BallistaException.class, () -> BallistaContext.create(-1, 2, allocator));
    assertTrue(e.getMessage().contains("negative"), e.getMessage());
  }

  @Test
  void closingReleasesTablesAndStreams() throws Exception {
    BallistaContext ctx = context();
    try (VectorSchemaRoot root = numbers(1000)) {
      ctx.registerTable("t", root);
    }
    // The native table still holds the exported buffers.
    assertTrue(allocator.getAllocatedMemory() > 0);
    ArrowReader reader = ctx.sql("SELECT id FROM t");
    assertEquals(streamsBefore + 1, NativeClient.openStreamCount());
    assertTrue(reader.loadNextBatch());
    // Closing the context first: the open reader stays valid, its query is cancelled.
    ctx.close();
    assertEquals(contextsBefore, NativeClient.openContextCount());
    IOException e = assertThrows(IOException.class, () -> rows(reader));
    assertTrue(e.getMessage().contains("cancelled"), e.getMessage());
    reader.close();
    // checkNothingLeaked: the table's exported buffers are all released now.
  }

  @Test
  @Timeout(value = 120, unit = TimeUnit.SECONDS)
  void cancelStopsALongQuery() throws Exception {
    try (BallistaContext ctx = context()) {
      try (VectorSchemaRoot root = numbers(3000)) {
        ctx.registerTable("t", root);
      }
      // 2.7e10 rows: hours of work unless cancelled.
      try (ArrowReader reader = ctx.sql("SELECT sum(a.id + b.id + c.id) FROM t a, t b, t c")) {
        Thread canceller =
            new Thread(
                () -> {
                  try {
                    Thread.sleep(500);
                  } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                  }
                  ctx.cancel();
                });
        canceller.start();
        long start = System.nanoTime();
        IOException e = assertThrows(IOException.class, reader::loadNextBatch);
        canceller.join();
        assertTrue(e.getMessage().contains("query cancelled"), e.getMessage());
        assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(60));
      }
      // Later queries run normally.
      try (ArrowReader reader = ctx.sql("SELECT count(*) FROM t")) {
        assertEquals(List.of(row(3000L)), rows(reader));
      }
    }
  }

  @Test
  void endOfStream() throws Exception {
    try (BallistaContext ctx = context();
        ArrowReader reader = ctx.sql("SELECT 1 AS one WHERE false")) {
      assertFalse(reader.loadNextBatch());
    }
  }
}
