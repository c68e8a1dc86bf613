package io.ballista.spark.jni;

/**
 * A stream of Arrow batches that a native plan pulls from the JVM (see the {@code JvmInput} plan
 * node, whose {@code index} is the position of the source in the array passed to {@link
 * NativeEngine#createPlan}).
 *
 * <p>Native code calls {@link #next} from the thread that drives the plan: the Java thread in
 * {@link NativeEngine#nextBatch}, or a native thread attached to the JVM; never concurrently for
 * one source. An exception thrown by {@code next} fails the native plan, and the {@link
 * NativeEngine#nextBatch} call waiting on that plan rethrows that same exception object, so that
 * exceptions with a meaning for Spark (task kills, fetch failures) keep their type.
 */
public interface BatchSource {
  /**
   * Exports the next batch through the Arrow C Data Interface.
   *
   * <p>The two structs are allocated by the native side; the implementation fills them (as {@code
   * org.apache.arrow.c.Data#exportVectorSchemaRoot} does) and transfers ownership of the exported
   * data to the native side, which calls their {@code release} callbacks when done. At the end of
   * the stream the implementation leaves them untouched.
   *
   * @param arrowArrayAddress address of an {@code ArrowArray} struct to fill with the batch (a
   *     struct array whose children are the columns)
   * @param arrowSchemaAddress address of an {@code ArrowSchema} struct to fill with the batch's
   *     schema
   * @return {@code true} if a batch was exported, {@code false} at the end of the stream
   */
  boolean next(long arrowArrayAddress, long arrowSchemaAddress);
}
