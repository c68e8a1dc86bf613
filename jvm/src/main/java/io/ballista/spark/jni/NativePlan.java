package io.ballista.spark.jni;

import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.arrow.c.ArrowArray;
import org.apache.arrow.c.ArrowSchema;
import org.apache.arrow.c.Data;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * A running native plan, read as an iterator of Arrow batches.
 *
 * <p>{@link #next()} always returns the same {@link VectorSchemaRoot}, loaded zero-copy with the
 * latest batch: its contents are valid only until the next {@link #hasNext()} or {@link #close()}.
 * Copy whatever must outlive that. Batches are imported into the allocator given to {@link
 * #execute}, so that allocator accounts for the batch being read.
 *
 * <p>An error during execution is thrown by {@link #hasNext()} as a {@link NativeException}, or as
 * the very exception an input {@link BatchSource} threw; the plan must still be closed. Not
 * thread-safe.
 */
public final class NativePlan implements Iterator<VectorSchemaRoot>, AutoCloseable {
  private static final AtomicLong STARTED = new AtomicLong();

  private final BufferAllocator allocator;
  // Kept reachable for as long as the native plan may call them.
  private final BatchSource[] inputs;
  private final MemoryBroker memory;
  private final VectorSchemaRoot root;
  // Guards the handle against a cancel from another thread racing a close.
  private final Object handleLock = new Object();
  private volatile long handle;
  private boolean batchPending;
  private boolean finished;
  private Throwable failure;

  private NativePlan(
      long handle, BatchSource[] inputs, MemoryBroker memory, BufferAllocator allocator) {
    this.handle = handle;
    this.inputs = inputs;
    this.memory = memory;
    this.allocator = allocator;
    ArrowSchema schema = ArrowSchema.allocateNew(allocator);
    try {
      NativeEngine.exportSchema(handle, schema.memoryAddress());
      // Releases and frees the struct, even on failure.
      this.root = Data.importVectorSchemaRoot(allocator, schema, null);
    } finally {
      schema.close();
    }
  }

  /**
   * Creates a native plan and returns it as an iterator of its output batches; execution starts
   * with the first {@link #hasNext()}.
   *
   * @param planBytes a serialized {@code ballista.plan.Plan} protobuf message
   * @param inputs the sources of the plan's {@code JvmInput} nodes, by index; the caller keeps
   *     ownership (closing them after this plan is closed)
   * @param allocator allocator that the output batches are imported into; it must outlive the
   *     returned plan
   * @return the running plan, to be closed by the caller
   * @throws NativeException if the plan is malformed, not supported or fails to start
   */
  public static NativePlan execute(
      byte[] planBytes, BatchSource[] inputs, BufferAllocator allocator) {
    return execute(planBytes, inputs, allocator, null);
  }

  /**
   * Returns how many native plans this JVM has started: each Spark task of a native stage starts
   * one (a plan reading a native shuffle fetches the blocks itself).
   *
   * @return the number of plans started since the JVM started
   */
  public static long startedCount() {
    return STARTED.get();
  }

  /**
   * Like {@link #execute(byte[], BatchSource[], BufferAllocator)}, with the plan's operators
   * reserving their memory through {@code memory}.
   *
   * @param planBytes a serialized {@code ballista.plan.Plan} protobuf message
   * @param inputs the sources of the plan's {@code JvmInput} nodes, by index
   * @param allocator allocator that the output batches are imported into
   * @param memory grants the operators' memory, or {@code null} for no limit; all of it is given
   *     back when the plan is closed
   * @return the running plan, to be closed by the caller
   * @throws NativeException if the plan is malformed, not supported or fails to start
   */
  public static NativePlan execute(
      byte[] planBytes, BatchSource[] inputs, BufferAllocator allocator, MemoryBroker memory) {
    Objects.requireNonNull(planBytes, "planBytes");
    Objects.requireNonNull(allocator, "allocator");
    BatchSource[] sources = inputs == null ? new BatchSource[0] : inputs.clone();
    long handle = NativeEngine.createPlan(planBytes, sources, memory);
    STARTED.incrementAndGet();
    try {
      return new NativePlan(handle, sources, memory, allocator);
    } catch (RuntimeException | Error e) {
      try {
        NativeEngine.closePlan(handle);
      } catch (RuntimeException suppressed) {
        e.addSuppressed(suppressed);
      }
      throw e;
    }
  }

  /**
   * Returns the schema of the output batches, as the native side exported it.
   *
   * @return the output schema
   */
  public Schema schema() {
    return root.getSchema();
  }

  /**
   * Returns the root that {@link #next()} returns, for callers that want it before the first batch
   * (for example to bind column readers once).
   *
   * @return the single root of this plan
   */
  public VectorSchemaRoot root() {
    return root;
  }

  /**
   * Runs the plan until its next batch is ready, unless one is already waiting. The previous batch
   * is released. At the end of the stream the root is cleared.
   *
   * @return whether {@link #next()} has a batch to return
   * @throws NativeException if execution fails (or whatever exception an input threw)
   * @throws IllegalStateException if an earlier call failed
   */
  @Override
  public boolean hasNext() {
    if (batchPending) {
      return true;
    }
    if (handle == 0 || finished) {
      return false;
    }
    if (failure != null) {
      throw new IllegalStateException("the native plan failed earlier", failure);
    }
    ArrowArray array = ArrowArray.allocateNew(allocator);
    try {
      if (!NativeEngine.nextBatch(handle, array.memoryAddress())) {
        finished = true;
        root.clear();
        return false;
      }
      // Moves the struct's ownership into the root (releasing the previous batch).
      Data.importIntoVectorSchemaRoot(allocator, array, root, null);
      batchPending = true;
      return true;
    } catch (Throwable e) {
      // Possibly a checked exception of an input, rethrown by the native side as is.
      failure = e;
      throw e;
    } finally {
      array.close();
    }
  }

  /**
   * Returns the root holding the next batch, valid until the next {@link #hasNext()} or {@link
   * #close()}.
   *
   * @return this plan's root, loaded with the batch
   * @throws NoSuchElementException at the end of the stream
   */
  @Override
  public VectorSchemaRoot next() {
    if (!hasNext()) {
      throw new NoSuchElementException("the native plan has no more batches");
    }
    batchPending = false;
    return root;
  }

  /**
   * Returns whether {@link #close()} has been called.
   *
   * @return {@code true} once closed
   */
  public boolean isClosed() {
    return handle == 0;
  }

  /**
   * Returns the metrics the native operators counted so far, as a serialized {@code
   * ballista.plan.PlanMetrics} message (one entry per plan node with a metrics id).
   *
   * @return the serialized metrics
   * @throws IllegalStateException if the plan is closed
   * @throws NativeException on a native error
   */
  public byte[] metrics() {
    long h = handle;
    if (h == 0) {
      throw new IllegalStateException("the native plan is closed");
    }
    return NativeEngine.planMetrics(h);
  }

  /**
   * Stops the plan from another thread: the pending or next {@link #hasNext()} throws a {@link
   * NativeException} saying it was cancelled. Does nothing once the plan is closed.
   */
  public void cancel() {
    synchronized (handleLock) {
      if (handle != 0) {
        NativeEngine.cancelPlan(handle);
      }
    }
  }

  /**
   * Releases the current batch and the native plan; safe to call more than once. After it, {@link
   * #hasNext()} returns {@code false}.
   *
   * @throws NativeException if the native side fails to close the plan (the Java resources are
   *     released regardless)
   */
  @Override
  public void close() {
    long h;
    synchronized (handleLock) {
      if (handle == 0) {
        return;
      }
      h = handle;
      handle = 0;
    }
    batchPending = false;
    try {
      root.close();
    } finally {
      NativeEngine.closePlan(h);
    }
  }
}
