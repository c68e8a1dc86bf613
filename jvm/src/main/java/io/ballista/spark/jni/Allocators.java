package io.ballista.spark.jni;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/** The process-wide Arrow allocator, and child allocators of it for individual tasks. */
public final class Allocators {
  private static RootAllocator root;

  private Allocators() {}

  /**
   * Returns the process-wide root allocator (unlimited), creating it on first use.
   *
   * <p>It lives as long as the JVM: do not close it. Allocate from {@link #child} allocators, which
   * make leaks visible.
   *
   * @return the root allocator
   */
  public static synchronized BufferAllocator root() {
    if (root == null) {
      root = new RootAllocator(Long.MAX_VALUE);
    }
    return root;
  }

  /**
   * Creates an unlimited child of the {@link #root()} allocator.
   *
   * @param name a name for error messages and debugging
   * @return a new allocator, to be closed by the caller once everything allocated from it is
   *     released
   */
  public static BufferAllocator child(String name) {
    return child(name, Long.MAX_VALUE);
  }

  /**
   * Creates a child of the {@link #root()} allocator with a memory limit.
   *
   * @param name a name for error messages and debugging
   * @param limit the most bytes that may be allocated from it at once
   * @return a new allocator, to be closed by the caller once everything allocated from it is
   *     released
   */
  public static BufferAllocator child(String name, long limit) {
    return root().newChildAllocator(name, 0, limit);
  }
}
