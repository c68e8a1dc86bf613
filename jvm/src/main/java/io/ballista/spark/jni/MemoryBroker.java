package io.ballista.spark.jni;

/**
 * Grants a native plan the memory its operators reserve (hash tables, sort buffers, join build
 * sides). Under Spark the plugin backs it with the task's {@code TaskMemoryManager}, so Spark's
 * unified memory manager arbitrates between native and JVM consumers; when it grants less than
 * asked, native operators that can spill do so.
 *
 * <p>Called by native code from the task's thread and from the engine's own threads.
 */
public interface MemoryBroker {
  /**
   * Asks for memory.
   *
   * @param bytes how many bytes the plan needs now
   * @return how many were granted: {@code bytes}, fewer, or 0
   */
  long acquire(long bytes);

  /**
   * Gives back memory granted earlier.
   *
   * @param bytes how many bytes the plan no longer needs
   */
  void release(long bytes);
}
