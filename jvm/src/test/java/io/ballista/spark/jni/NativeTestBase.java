package io.ballista.spark.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Iterator;
import java.util.List;
import java.util.function.Function;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.TestInfo;

/**
 * Gives each test a child allocator, and checks after each test that every native plan was closed
 * and that the allocator has no memory left allocated.
 */
abstract class NativeTestBase {
  BufferAllocator allocator;
  private long openPlansBefore;

  @BeforeEach
  void setUpAllocator(TestInfo test) {
    openPlansBefore = NativeEngine.openPlanCount();
    allocator = Allocators.child(test.getDisplayName());
  }

  @AfterEach
  void checkNothingLeaked() {
    assertEquals(openPlansBefore, NativeEngine.openPlanCount(), "native plans left open");
    long leaked = allocator.getAllocatedMemory();
    String detail = leaked == 0 ? "" : allocator.toVerboseString();
    allocator.close();
    assertEquals(0, leaked, () -> "Arrow memory left allocated:\n" + detail);
  }

  /**
   * A source whose batches are built on demand from the given specs and closed right after export,
   * so that the native side owns them entirely.
   */
  <T> ArrowBatchSource source(List<T> specs, Function<T, VectorSchemaRoot> build) {
    Iterator<T> it = specs.iterator();
    Iterator<VectorSchemaRoot> roots =
        new Iterator<VectorSchemaRoot>() {
          @Override
          public boolean hasNext() {
            return it.hasNext();
          }

          @Override
          public VectorSchemaRoot next() {
            return build.apply(it.next());
          }
        };
    return new ArrowBatchSource(roots, allocator, true);
  }
}
