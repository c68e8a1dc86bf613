package io.ballista.spark.jni;

/**
 * The JNI entry points of the native engine, implemented by {@code libballista_spark.so}.
 *
 * <p>The class loads the library ({@link NativeLibrary#load()}) when it is initialized, so a
 * missing library surfaces as an {@link ExceptionInInitializerError} (then {@link
 * NoClassDefFoundError}) on first use; call {@link NativeLibrary#load()} first to get the {@link
 * UnsatisfiedLinkError} itself.
 *
 * <p>Every method reports native errors and panics as {@link NativeException} (except that an
 * exception thrown by an input {@link BatchSource} is rethrown as is). A plan handle is used by one
 * thread at a time. Most callers want {@link NativePlan}, which wraps a handle into an iterator of
 * Arrow batches.
 */
public final class NativeEngine {
  static {
    NativeLibrary.load();
  }

  private NativeEngine() {}

  /**
   * Decodes a plan and prepares its execution; nothing runs until the first {@link #nextBatch}.
   *
   * @param planBytes a serialized {@code ballista.plan.Plan} protobuf message
   * @param inputs the batch sources of the plan's {@code JvmInput} nodes, by their {@code index};
   *     the native side keeps references to them until {@link #closePlan}
   * @param memory grants the memory the plan's operators reserve, or {@code null} to reserve
   *     without limit; referenced until {@link #closePlan}, which gives everything back
   * @return a handle (never 0) to pass to the other methods and finally to {@link #closePlan}
   * @throws NativeException if the plan is malformed or not supported
   */
  public static native long createPlan(byte[] planBytes, BatchSource[] inputs, MemoryBroker memory);

  /**
   * Sets, for the whole process, where native operators spill and how much memory native code may
   * hold before tasks fail with a clear error.
   *
   * @param spillDirectories directories for spill files (one is picked per file); empty keeps the
   *     system's temporary directory
   * @param nativeLimit the most bytes native code may hold (see {@link #nativeMemoryInUse()}); 0
   *     for no limit
   * @throws NativeException if the directories cannot be used
   */
  public static native void configureMemory(String[] spillDirectories, long nativeLimit);

  /**
   * Returns the bytes granted through {@link MemoryBroker}s to plans still open, for leak checks.
   *
   * @return granted bytes not yet given back
   */
  public static native long grantedMemory();

  /** Starts a new peak for {@link #nativeMemoryPeak()} from the bytes in use now. */
  public static native void resetNativeMemoryPeak();

  /**
   * Exports the schema of the plan's output batches (a struct type whose children are the columns,
   * matching the plan's {@code output_schema}).
   *
   * @param handle a plan handle from {@link #createPlan}
   * @param arrowSchemaAddress address of an empty {@code ArrowSchema} struct to fill; the caller
   *     then owns it and must release it
   * @throws NativeException on a native error
   */
  public static native void exportSchema(long handle, long arrowSchemaAddress);

  /**
   * Runs the plan until its next output batch is ready and exports that batch.
   *
   * @param handle a plan handle from {@link #createPlan}
   * @param arrowArrayAddress address of an empty {@code ArrowArray} struct to fill with the batch
   *     (a struct array whose children are the columns); on {@code true} the caller owns it and
   *     must release it
   * @return {@code true} if a batch was exported, {@code false} at the end of the stream (the
   *     struct is then left untouched)
   * @throws NativeException if execution fails; when an input {@link BatchSource} threw, that
   *     exception itself is rethrown instead
   */
  public static native boolean nextBatch(long handle, long arrowArrayAddress);

  /**
   * Stops the plan if it still runs and frees its native resources, including its references to the
   * input sources. Batches already exported stay valid until released.
   *
   * @param handle a plan handle from {@link #createPlan}; not to be used afterwards
   * @throws NativeException on a native error
   */
  public static native void closePlan(long handle);

  /**
   * Returns the number of plans created and not yet closed, for leak checks in tests.
   *
   * @return the number of open plans in this process
   */
  public static native long openPlanCount();

  /**
   * Returns the bytes the native library currently holds from the heap (every allocation of the
   * library is counted, whichever operator or library made it).
   *
   * @return the bytes allocated and not yet freed by native code in this process
   */
  public static native long nativeMemoryInUse();

  /**
   * Returns the highest value {@link #nativeMemoryInUse()} has reached since the library loaded or
   * {@link #resetNativeMemoryPeak()} was last called.
   *
   * @return the peak of native heap bytes in this process
   */
  public static native long nativeMemoryPeak();

  /**
   * Returns the metrics of a plan's native operators, as a serialized {@code
   * ballista.plan.PlanMetrics} message: one entry per plan node that carries a metrics id.
   *
   * @param handle a plan handle from {@link #createPlan}
   * @return the serialized metrics, read at the time of the call
   * @throws NativeException on a native error
   */
  public static native byte[] planMetrics(long handle);

  /**
   * Asks a running plan to stop: the pending or next {@link #nextBatch} call fails with a
   * cancellation error and the plan's streams are dropped. Callable from any thread while another
   * thread reads the plan.
   *
   * @param handle a plan handle from {@link #createPlan}
   */
  public static native void cancelPlan(long handle);

  /**
   * Starts this process's Arrow Flight shuffle server, which serves the map outputs registered with
   * {@link #registerMapOutput} to clients presenting {@code token}; a second call returns the
   * running server's port.
   *
   * @param host the address to bind (the executor's host, not all interfaces)
   * @param port the port to bind; 0 picks a free one
   * @param token the secret every call must carry as {@code authorization: Bearer <token>}
   * @return the port the server listens on
   * @throws NativeException if the server cannot bind
   */
  public static native int startShuffleServer(String host, int port, String token);

  /**
   * Makes a committed map output servable by the shuffle server.
   *
   * @param shuffleId the shuffle
   * @param mapId the map task's id (Spark's map id, the task attempt id)
   * @param dataFile the data file: the partitions' bytes one after the other
   * @param indexFile Spark's index file: (partitions + 1) big-endian longs, the partitions' offsets
   */
  public static native void registerMapOutput(
      int shuffleId, long mapId, String dataFile, String indexFile);

  /**
   * Stops serving a shuffle's map outputs (the files themselves are Spark's to delete).
   *
   * @param shuffleId the shuffle
   */
  public static native void removeShuffle(int shuffleId);

  /**
   * Hands native log records at {@code maxLevel} and above to {@link NativeLog}; called by {@link
   * NativeLibrary#load()}.
   *
   * @param maxLevel the most detailed level to forward: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5
   *     trace
   */
  static native void initLogging(int maxLevel);

  /**
   * Returns a description of the native library's version, for diagnostics.
   *
   * @return the version text, never empty
   */
  public static native String version();

  /**
   * Panics in native code with the given message, to test that panics become Java exceptions.
   *
   * @param message the panic message
   * @throws NativeException always, with a message that contains {@code message}
   */
  public static native void panicForTesting(String message);
}
