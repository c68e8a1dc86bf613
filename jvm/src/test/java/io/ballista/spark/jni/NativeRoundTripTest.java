package io.ballista.spark.jni;

import static io.ballista.spark.jni.TestBatches.drain;
import static io.ballista.spark.jni.TestBatches.row;
import static io.ballista.spark.jni.TestPlans.INT64;
import static io.ballista.spark.jni.TestPlans.STRING;
import static io.ballista.spark.jni.TestPlans.binary;
import static io.ballista.spark.jni.TestPlans.column;
import static io.ballista.spark.jni.TestPlans.decimal;
import static io.ballista.spark.jni.TestPlans.field;
import static io.ballista.spark.jni.TestPlans.filter;
import static io.ballista.spark.jni.TestPlans.jvmInput;
import static io.ballista.spark.jni.TestPlans.literal;
import static io.ballista.spark.jni.TestPlans.named;
import static io.ballista.spark.jni.TestPlans.plan;
import static io.ballista.spark.jni.TestPlans.projection;
import static io.ballista.spark.jni.TestPlans.schema;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.ballista.spark.proto.BinaryOp;
import io.ballista.spark.proto.DataType;
import io.ballista.spark.proto.Plan;
import io.ballista.spark.proto.PlanNode;
import io.ballista.spark.proto.Schema;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.NoSuchElementException;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.Test;

/** Batches go from the JVM through a native plan and back, with exact values. */
class NativeRoundTripTest extends NativeTestBase {
  private static final Schema IDS_AND_NAMES = schema(field("id", INT64), field("name", STRING));

  /** Three batches: ids 0..11 with a null id, null names, a non-ASCII and an empty name. */
  private static final List<Object[][]> INPUT =
      Arrays.asList(
          new Object[][] {{0L, 1L, 2L, 3L}, {"zero", "one", "two", "three"}},
          new Object[][] {{4L, 5L, null, 6L, 7L}, {"four", "five", "no id", "six", null}},
          new Object[][] {{8L, 9L, 10L, 11L}, {"eight", null, "zehn ü 日本", ""}});

  private ArrowBatchSource idsAndNamesSource() {
    return source(
        INPUT,
        b ->
            TestBatches.idsAndNames(
                allocator,
                Arrays.copyOf(b[0], b[0].length, Long[].class),
                Arrays.copyOf(b[1], b[1].length, String[].class)));
  }

  private List<List<Object>> run(Plan plan, BatchSource... inputs) {
    try (NativePlan result = NativePlan.execute(plan.toByteArray(), inputs, allocator)) {
      return drain(result);
    }
  }

  @Test
  void libraryReportsVersion() {
    String version = NativeEngine.version();
    assertNotNull(version);
    assertFalse(version.isBlank());
    assertNotNull(NativeLibrary.loadedPath());
  }

  @Test
  void projectionReturnsEveryRow() {
    Schema out = schema(field("n", STRING), field("i", INT64), field("j", INT64));
    PlanNode root =
        projection(
            jvmInput(0, IDS_AND_NAMES),
            named(column(1, STRING), "n"),
            named(column(0, INT64), "i"),
            named(binary(BinaryOp.BINARY_OP_ADD, column(0, INT64), literal(100), INT64), "j"));

    List<List<Object>> expected = new ArrayList<>();
    for (Object[][] batch : INPUT) {
      for (int r = 0; r < batch[0].length; r++) {
        Long id = (Long) batch[0][r];
        expected.add(row(batch[1][r], id, id == null ? null : id + 100));
      }
    }
    try (ArrowBatchSource input = idsAndNamesSource()) {
      assertEquals(expected, run(plan(root, out), input));
      assertEquals(3, input.exportedBatches());
    }
  }

  @Test
  void filterKeepsExactlyTheMatchingRows() {
    PlanNode root =
        filter(
            jvmInput(0, IDS_AND_NAMES),
            binary(BinaryOp.BINARY_OP_GT, column(0, INT64), literal(5), TestPlans.BOOLEAN));

    List<List<Object>> expected =
        Arrays.asList(
            row(6L, "six"),
            row(7L, null),
            row(8L, "eight"),
            row(9L, null),
            row(10L, "zehn ü 日本"),
            row(11L, ""));
    try (ArrowBatchSource input = idsAndNamesSource()) {
      assertEquals(expected, run(plan(root, IDS_AND_NAMES), input));
    }
  }

  @Test
  void outputSchemaFollowsThePlan() {
    try (ArrowBatchSource input = idsAndNamesSource();
        NativePlan result =
            NativePlan.execute(
                plan(jvmInput(0, IDS_AND_NAMES), IDS_AND_NAMES).toByteArray(),
                new BatchSource[] {input},
                allocator)) {
      org.apache.arrow.vector.types.pojo.Schema schema = result.schema();
      assertEquals(2, schema.getFields().size());
      assertEquals("id", schema.getFields().get(0).getName());
      assertEquals(new ArrowType.Int(64, true), schema.getFields().get(0).getType());
      assertEquals("name", schema.getFields().get(1).getName());
      assertEquals(ArrowType.Utf8.INSTANCE, schema.getFields().get(1).getType());

      // hasNext() is idempotent, and next() hands out the one root.
      assertTrue(result.hasNext());
      assertTrue(result.hasNext());
      VectorSchemaRoot first = result.next();
      assertSame(result.root(), first);
      assertEquals(4, first.getRowCount());
      int rows = first.getRowCount();
      while (result.hasNext()) {
        assertSame(first, result.next());
        rows += first.getRowCount();
      }
      assertEquals(13, rows);
      assertFalse(result.hasNext());
      assertThrows(NoSuchElementException.class, result::next);
    }
  }

  @Test
  void emptyInputGivesNoRows() {
    try (ArrowBatchSource input =
        new ArrowBatchSource(Collections.<VectorSchemaRoot>emptyIterator(), allocator)) {
      PlanNode root =
          filter(
              jvmInput(0, IDS_AND_NAMES),
              binary(BinaryOp.BINARY_OP_GT, column(0, INT64), literal(5), TestPlans.BOOLEAN));
      assertEquals(Collections.emptyList(), run(plan(root, IDS_AND_NAMES), input));
    }
  }

  @Test
  void decimalMultiplicationIsExact() {
    DataType d152 = decimal(15, 2);
    List<BigDecimal[]> batches =
        Arrays.asList(
            new BigDecimal[] {new BigDecimal("12345.67"), new BigDecimal("-0.01"), null},
            new BigDecimal[] {
              new BigDecimal("9999999999999.99"),
              new BigDecimal("0.00"),
              new BigDecimal("-9999999999999.99")
            });
    BigDecimal factor = new BigDecimal("-2.50");
    // Spark's rule for decimal multiplication: precision p1 + p2 + 1, scale s1 + s2.
    PlanNode root =
        projection(
            jvmInput(0, schema(field("d", d152))),
            named(
                binary(
                    BinaryOp.BINARY_OP_MULTIPLY, column(0, d152), column(0, d152), decimal(31, 4)),
                "dd"),
            named(
                binary(
                    BinaryOp.BINARY_OP_MULTIPLY,
                    column(0, d152),
                    literal(factor, 3),
                    decimal(19, 4)),
                "d_times_factor"));
    Schema out = schema(field("dd", decimal(31, 4)), field("d_times_factor", decimal(19, 4)));

    List<List<Object>> expected = new ArrayList<>();
    for (BigDecimal[] batch : batches) {
      for (BigDecimal d : batch) {
        expected.add(d == null ? row(null, null) : row(d.multiply(d), d.multiply(factor)));
      }
    }
    // The squares use more than 64 bits of unscaled value: 30 digits.
    assertEquals(new BigDecimal("99999999999999800000000000.0001"), expected.get(3).get(0));

    try (ArrowBatchSource input = source(batches, b -> TestBatches.decimals(allocator, 15, 2, b))) {
      assertEquals(expected, run(plan(root, out), input));
    }
  }
}
