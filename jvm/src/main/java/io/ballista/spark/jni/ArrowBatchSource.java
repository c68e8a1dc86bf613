package io.ballista.spark.jni;

import java.util.Iterator;
import java.util.Objects;
import org.apache.arrow.c.ArrowArray;
import org.apache.arrow.c.ArrowSchema;
import org.apache.arrow.c.Data;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;

/**
 * A {@link BatchSource} over an iterator of Arrow {@link VectorSchemaRoot}s.
 *
 * <p>Exporting a root retains its buffers: the exported data stays alive, whatever happens to the
 * root, until the native side releases it. The iterator should therefore return a root with freshly
 * allocated vectors for every batch. A producer that refills one root in place would overwrite data
 * that the native side may still be reading; a producer may close its roots after export (or let
 * this source do it, see {@link #ArrowBatchSource(Iterator, BufferAllocator, boolean)}), which only
 * drops its own reference.
 *
 * <p>Not thread-safe; the native side calls {@link #next} from one thread at a time.
 */
public final class ArrowBatchSource implements BatchSource, AutoCloseable {
  private final Iterator<VectorSchemaRoot> batches;
  private final BufferAllocator allocator;
  private final boolean closeAfterExport;
  private volatile boolean closed;
  private volatile long exportedBatches;

  /**
   * Creates a source whose roots remain the caller's to close.
   *
   * @param batches the batches, all of the schema the plan's {@code JvmInput} declares
   * @param allocator allocator for the export's bookkeeping (the buffers stay in the roots'
   *     allocators)
   */
  public ArrowBatchSource(Iterator<VectorSchemaRoot> batches, BufferAllocator allocator) {
    this(batches, allocator, false);
  }

  /**
   * Creates a source.
   *
   * @param batches the batches, all of the schema the plan's {@code JvmInput} declares
   * @param allocator allocator for the export's bookkeeping (the buffers stay in the roots'
   *     allocators)
   * @param closeAfterExport whether to close each root right after exporting it, handing its data
   *     over to the native side entirely
   */
  public ArrowBatchSource(
      Iterator<VectorSchemaRoot> batches, BufferAllocator allocator, boolean closeAfterExport) {
    this.batches = Objects.requireNonNull(batches, "batches");
    this.allocator = Objects.requireNonNull(allocator, "allocator");
    this.closeAfterExport = closeAfterExport;
  }

  /**
   * Exports the iterator's next root into the given structs.
   *
   * @param arrowArrayAddress address of the {@code ArrowArray} struct to fill
   * @param arrowSchemaAddress address of the {@code ArrowSchema} struct to fill
   * @return {@code true} if a batch was exported, {@code false} when the iterator is exhausted or
   *     this source is closed
   */
  @Override
  public boolean next(long arrowArrayAddress, long arrowSchemaAddress) {
    if (closed || !batches.hasNext()) {
      return false;
    }
    VectorSchemaRoot root = batches.next();
    try {
      Data.exportVectorSchemaRoot(
          allocator,
          root,
          null,
          ArrowArray.wrap(arrowArrayAddress),
          ArrowSchema.wrap(arrowSchemaAddress));
    } finally {
      if (closeAfterExport) {
        root.close();
      }
    }
    exportedBatches++;
    return true;
  }

  /**
   * Returns how many batches this source has exported so far.
   *
   * @return the number of successful {@link #next} calls that returned {@code true}
   */
  public long exportedBatches() {
    return exportedBatches;
  }

  /**
   * Ends the stream: later {@link #next} calls return {@code false}. Closes the iterator if it is
   * {@link AutoCloseable}. Batches already exported stay valid until the native side releases them.
   *
   * @throws IllegalStateException if closing the iterator fails with a checked exception
   */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (batches instanceof AutoCloseable) {
      try {
        ((AutoCloseable) batches).close();
      } catch (RuntimeException e) {
        throw e;
      } catch (Exception e) {
        throw new IllegalStateException("cannot close the batch iterator", e);
      }
    }
  }
}
