package io.ballista.spark.jni;

import static io.ballista.spark.jni.TestBatches.drain;
import static io.ballista.spark.jni.TestBatches.row;
import static io.ballista.spark.jni.TestPlans.INT64;
import static io.ballista.spark.jni.TestPlans.STRING;
import static io.ballista.spark.jni.TestPlans.binary;
import static io.ballista.spark.jni.TestPlans.column;
import static io.ballista.spark.jni.TestPlans.field;
import static io.ballista.spark.jni.TestPlans.filter;
import static io.ballista.spark.jni.TestPlans.jvmInput;
import static io.ballista.spark.jni.TestPlans.literal;
import static io.ballista.spark.jni.TestPlans.plan;
import static io.ballista.spark.jni.TestPlans.schema;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.ballista.spark.proto.BinaryOp;
import io.ballista.spark.proto.Plan;
import io.ballista.spark.proto.Schema;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Native errors, panics and failing inputs become Java exceptions, leave the JVM usable, and
 * release every native plan and every Arrow buffer (checked after each test by {@link
 * NativeTestBase}).
 */
class NativeFailureTest extends NativeTestBase {
  private static final Schema IDS_AND_NAMES = schema(field("id", INT64), field("name", STRING));
  private static final String SOURCE_FAILURE = "input source failed on purpose";

  private static Plan idsAbove(long threshold) {
    return plan(
        filter(
            jvmInput(0, IDS_AND_NAMES),
            binary(BinaryOp.BINARY_OP_GT, column(0, INT64), literal(threshold), TestPlans.BOOLEAN)),
        IDS_AND_NAMES);
  }

  /** Four batches of two rows each: ids 0..7, names "n0".."n7". */
  private ArrowBatchSource eightRows() {
    return source(
        Arrays.asList(0L, 2L, 4L, 6L),
        first ->
            TestBatches.idsAndNames(
                allocator,
                new Long[] {first, first + 1},
                new String[] {"n" + first, "n" + (first + 1)}));
  }

  /** Runs a valid plan, to show that the engine still works after a failure. */
  private void assertEngineStillWorks() {
    try (ArrowBatchSource input = eightRows();
        NativePlan result =
            NativePlan.execute(idsAbove(5).toByteArray(), new BatchSource[] {input}, allocator)) {
      assertEquals(Arrays.asList(row(6L, "n6"), row(7L, "n7")), drain(result));
    }
  }

  /** Runs a plan to its end: whether the native side rejects it early or late does not matter. */
  private void runToEnd(byte[] planBytes, BatchSource[] inputs) {
    try (NativePlan result = NativePlan.execute(planBytes, inputs, allocator)) {
      drain(result);
    }
  }

  private static void assertUseful(NativeException e) {
    assertNotNull(e.getMessage(), "NativeException without a message");
    assertFalse(e.getMessage().isBlank(), "NativeException with a blank message");
  }

  @Test
  void malformedPlanBytesAreRejected() {
    byte[] random = new byte[64];
    new Random(42).nextBytes(random);
    byte[] valid = idsAbove(5).toByteArray();
    List<byte[]> malformed =
        Arrays.asList(
            random,
            // Field 1 (root), length-delimited, claims far more bytes than follow.
            new byte[] {0x0a, (byte) 0xff, (byte) 0xff, (byte) 0xff, 0x0f, 0x01},
            // A valid plan cut short.
            Arrays.copyOf(valid, valid.length / 2),
            // Decodes (every field has its default) but has no root node.
            new byte[0]);
    for (byte[] bytes : malformed) {
      NativeException e =
          assertThrows(
              NativeException.class,
              () -> runToEnd(bytes, new BatchSource[0]),
              () -> "plan bytes " + Arrays.toString(bytes));
      assertUseful(e);
    }
    assertEngineStillWorks();
  }

  @Test
  void jvmInputIndexOutOfRangeIsRejected() {
    NativeException e =
        assertThrows(
            NativeException.class, () -> runToEnd(idsAbove(5).toByteArray(), new BatchSource[0]));
    assertUseful(e);
    assertEngineStillWorks();
  }

  @Test
  void panicBecomesNativeException() {
    NativeException e =
        assertThrows(NativeException.class, () -> NativeEngine.panicForTesting("boom"));
    assertTrue(e.getMessage().contains("boom"), e.getMessage());
    // A second panic is reported the same way.
    e = assertThrows(NativeException.class, () -> NativeEngine.panicForTesting("boom again"));
    assertTrue(e.getMessage().contains("boom again"), e.getMessage());
    assertEngineStillWorks();
  }

  @Test
  void failingInputSourceFailsThePlan() {
    AtomicInteger calls = new AtomicInteger();
    IllegalStateException thrown = new IllegalStateException(SOURCE_FAILURE);
    try (ArrowBatchSource rows = eightRows()) {
      BatchSource failing =
          (array, schema) -> {
            if (calls.getAndIncrement() == 1) {
              throw thrown;
            }
            return rows.next(array, schema);
          };
      NativePlan result =
          NativePlan.execute(idsAbove(-1).toByteArray(), new BatchSource[] {failing}, allocator);
      RuntimeException e = assertThrows(RuntimeException.class, () -> drain(result));
      // Rethrown as is, so that Spark's own exceptions (task kills, fetch failures) keep their
      // type.
      assertSame(thrown, e, "the input's exception itself should surface");
      // The plan stays failed, and closes cleanly (twice, even).
      assertThrows(RuntimeException.class, result::hasNext);
      assertDoesNotThrow(result::close);
      assertDoesNotThrow(result::close);
      assertTrue(result.isClosed());
      assertFalse(result.hasNext());
    }
    assertTrue(calls.get() >= 2);
    assertEngineStillWorks();
  }

  @Test
  void closingBeforeTheEndReleasesEverything() {
    try (ArrowBatchSource input = eightRows()) {
      NativePlan result =
          NativePlan.execute(idsAbove(-1).toByteArray(), new BatchSource[] {input}, allocator);
      assertTrue(result.hasNext());
      assertTrue(result.next().getRowCount() > 0);
      result.close();
      assertFalse(result.hasNext());
    }
    assertEngineStillWorks();
  }

  @Test
  void closingWithoutReadingReleasesEverything() {
    long before = NativeEngine.openPlanCount();
    try (ArrowBatchSource input = eightRows()) {
      NativePlan result =
          NativePlan.execute(idsAbove(5).toByteArray(), new BatchSource[] {input}, allocator);
      assertEquals(before + 1, NativeEngine.openPlanCount());
      result.close();
      assertEquals(before, NativeEngine.openPlanCount());
    }
  }

  @Test
  void manyPlansInARowDoNotLeak() {
    for (int i = 0; i < 50; i++) {
      assertEngineStillWorks();
    }
  }
}
