package io.ballista.client;

import io.ballista.spark.jni.Allocators;
import io.ballista.spark.jni.NativeException;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.apache.arrow.c.ArrowArray;
import org.apache.arrow.c.ArrowArrayStream;
import org.apache.arrow.c.ArrowSchema;
import org.apache.arrow.c.Data;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowReader;

/**
 * A SQL session of the native engine, used without Spark: register Parquet files, CSV files and
 * Arrow data as tables, run SQL over them, and read the results as Arrow batches.
 *
 * <p>Queries are planned by DataFusion with Spark's functions ({@code datafusion-spark}) and run
 * natively on a shared pool of threads. Results stream back through the Arrow C Stream Interface
 * without copying: {@link #sql} returns an {@link ArrowReader} whose {@link
 * ArrowReader#loadNextBatch()} runs the query until its next batch is ready.
 *
 * <pre>{@code
 * try (BallistaContext ctx = BallistaContext.create(1L << 30, 4)) {
 *   ctx.registerParquet("lineitem", "/data/lineitem");
 *   try (ArrowReader reader = ctx.sql("SELECT count(*) FROM lineitem")) {
 *     while (reader.loadNextBatch()) {
 *       System.out.println(reader.getVectorSchemaRoot().contentToTSVString());
 *     }
 *   }
 * }
 * }</pre>
 *
 * <p>Thread-safe: any method may be called from any thread, in particular {@link #cancel()} while
 * another thread reads a result. Each {@link ArrowReader} is used by one thread at a time.
 */
public final class BallistaContext implements AutoCloseable {
  private final BufferAllocator allocator;
  // Native calls share the lock; close takes it exclusively, so the handle is never freed while
  // a call uses it.
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private long handle;

  private BallistaContext(long handle, BufferAllocator allocator) {
    this.handle = handle;
    this.allocator = allocator;
  }

  /**
   * Creates a context whose results are allocated from the process-wide allocator ({@link
   * Allocators#root()}).
   *
   * @param memoryLimitBytes the most memory its queries may reserve at once (sorts, aggregations
   *     and joins spill to disk beyond it); 0 for no limit
   * @param threads the partitions each query is split into; 0 for the number of CPUs
   * @return the new context, to be closed by the caller
   * @throws BallistaException if the arguments are negative or the context cannot be created
   */
  public static BallistaContext create(long memoryLimitBytes, int threads)
      throws BallistaException {
    return create(memoryLimitBytes, threads, Allocators.root());
  }

  /**
   * Creates a context whose results are imported into {@code allocator}.
   *
   * @param memoryLimitBytes the most memory its queries may reserve at once (sorts, aggregations
   *     and joins spill to disk beyond it); 0 for no limit
   * @param threads the partitions each query is split into; 0 for the number of CPUs
   * @param allocator allocator for result batches and the C structs exchanged with the native side;
   *     it must outlive the context and the readers it returns
   * @return the new context, to be closed by the caller
   * @throws BallistaException if the arguments are negative or the context cannot be created
   */
  public static BallistaContext create(
      long memoryLimitBytes, int threads, BufferAllocator allocator) throws BallistaException {
    Objects.requireNonNull(allocator, "allocator");
    try {
      return new BallistaContext(NativeClient.createContext(memoryLimitBytes, threads), allocator);
    } catch (NativeException e) {
      throw new BallistaException(e.getMessage(), e);
    }
  }

  /**
   * Registers a Parquet file, or a directory of Parquet files, as a table.
   *
   * @param name the table's name in SQL
   * @param path a local file or directory
   * @throws BallistaException if the path does not exist or cannot be read as Parquet
   */
  public void registerParquet(String name, String path) throws BallistaException {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(path, "path");
    call(h -> NativeClient.registerParquet(h, name, path));
  }

  /**
   * Registers a CSV file, or a directory of CSV files, as a table; column types are inferred from
   * the data.
   *
   * @param name the table's name in SQL
   * @param path a local file or directory
   * @param hasHeader whether the first line of each file names the columns
   * @throws BallistaException if the path does not exist or cannot be read as CSV
   */
  public void registerCsv(String name, String path, boolean hasHeader) throws BallistaException {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(path, "path");
    call(h -> NativeClient.registerCsv(h, name, path, hasHeader));
  }

  /**
   * Registers the current contents of {@code root} as an in-memory table. The native side shares
   * the buffers (no copy) and releases them when the context is closed; the caller may close {@code
   * root} right away.
   *
   * @param name the table's name in SQL
   * @param root the table's rows
   * @throws BallistaException if the table exists or its types are not supported
   */
  public void registerTable(String name, VectorSchemaRoot root) throws BallistaException {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(root, "root");
    try (ArrowArray array = ArrowArray.allocateNew(allocator);
        ArrowSchema schema = ArrowSchema.allocateNew(allocator)) {
      Data.exportVectorSchemaRoot(allocator, root, null, array, schema);
      try {
        call(
            h ->
                NativeClient.registerBatch(h, name, array.memoryAddress(), schema.memoryAddress()));
      } finally {
        // The native side moves both out on success; otherwise release them here.
        array.release();
        schema.release();
      }
    }
  }

  /**
   * Reads {@code reader} to its end and registers its batches as an in-memory table. Takes
   * ownership of {@code reader}: it is exported through the Arrow C Stream Interface, whose release
   * closes it, whatever the outcome; the caller must not close it again (Arrow's readers fail on a
   * second close).
   *
   * @param name the table's name in SQL
   * @param reader the table's rows; closed by this call
   * @throws BallistaException if reading fails, the table exists or its types are not supported
   */
  public void registerTable(String name, ArrowReader reader) throws BallistaException {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(reader, "reader");
    try (ArrowArrayStream stream = ArrowArrayStream.allocateNew(allocator)) {
      Data.exportArrayStream(allocator, reader, stream);
      try {
        call(h -> NativeClient.registerStream(h, name, stream.memoryAddress()));
      } finally {
        stream.release();
      }
    }
  }

  /**
   * Plans and starts a query. Errors in the statement (syntax, unknown tables or columns) are
   * thrown here; errors while it runs, including cancellation, by the reader's {@link
   * ArrowReader#loadNextBatch()} as an {@link java.io.IOException} with the native message.
   * Statements such as {@code CREATE VIEW} or {@code COPY ... TO} run when the reader is read.
   *
   * @param query one SQL statement
   * @return the result, read batch by batch; closing it stops the query
   * @throws BallistaException if the statement is invalid or cannot be planned
   */
  public ArrowReader sql(String query) throws BallistaException {
    Objects.requireNonNull(query, "query");
    try (ArrowArrayStream stream = ArrowArrayStream.allocateNew(allocator)) {
      call(h -> NativeClient.sql(h, query, stream.memoryAddress()));
      // Moves the stream into the reader.
      return Data.importArrayStream(allocator, stream);
    }
  }

  /**
   * Starts a plan in Ballista's protobuf format ({@code io.ballista.spark.proto.Plan}, the format
   * the Spark plugin sends to the engine), for example a Parquet scan with filters and
   * aggregations. Errors are reported as for {@link #sql(String)}.
   *
   * @param plan the serialized {@code Plan}
   * @return the result, read batch by batch; closing it stops the plan
   * @throws BallistaException if the plan is malformed or cannot be built
   */
  public ArrowReader executePlan(byte[] plan) throws BallistaException {
    Objects.requireNonNull(plan, "plan");
    try (ArrowArrayStream stream = ArrowArrayStream.allocateNew(allocator)) {
      call(h -> NativeClient.executePlan(h, plan, stream.memoryAddress()));
      return Data.importArrayStream(allocator, stream);
    }
  }

  /**
   * Cancels this context's running queries: a thread blocked in {@link ArrowReader#loadNextBatch()}
   * returns promptly with an {@link java.io.IOException} ("query cancelled"). Queries started
   * afterwards are not affected. Does nothing once the context is closed.
   */
  public void cancel() {
    lock.readLock().lock();
    try {
      if (handle != 0) {
        NativeClient.cancel(handle);
      }
    } finally {
      lock.readLock().unlock();
    }
  }

  /**
   * Returns whether {@link #close()} has been called.
   *
   * @return {@code true} once closed
   */
  public boolean isClosed() {
    lock.readLock().lock();
    try {
      return handle == 0;
    } finally {
      lock.readLock().unlock();
    }
  }

  /**
   * Cancels the running queries and frees the context's native resources, including the tables
   * registered from Arrow data; safe to call more than once. Readers still open stay valid until
   * closed (reading them fails as cancelled).
   */
  @Override
  public void close() {
    lock.writeLock().lock();
    try {
      if (handle != 0) {
        long h = handle;
        handle = 0;
        NativeClient.closeContext(h);
      }
    } finally {
      lock.writeLock().unlock();
    }
  }

  private interface NativeCall {
    void run(long handle);
  }

  private void call(NativeCall call) throws BallistaException {
    lock.readLock().lock();
    try {
      if (handle == 0) {
        throw new BallistaException("the context is closed");
      }
      call.run(handle);
    } catch (NativeException e) {
      throw new BallistaException(e.getMessage(), e);
    } finally {
      lock.readLock().unlock();
    }
  }
}
