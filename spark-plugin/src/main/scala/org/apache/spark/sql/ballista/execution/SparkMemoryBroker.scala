package org.apache.spark.sql.ballista.execution

import io.ballista.spark.BallistaConf
import io.ballista.spark.jni.{MemoryBroker, NativeEngine}
import org.apache.spark.{SparkConf, SparkEnv, TaskContext}
import org.apache.spark.internal.config.{MEMORY_OFFHEAP_ENABLED, MEMORY_OFFHEAP_SIZE}
import org.apache.spark.memory.{MemoryConsumer, MemoryMode, TaskMemoryManager}
import org.apache.spark.util.Utils

/**
 * A native plan's memory, granted by the task's `TaskMemoryManager` as off-heap execution
 * memory: Spark's unified memory manager sees it and arbitrates between the task's native
 * operators and every other consumer. When it grants less, native operators that can spill
 * do; Spark asking this consumer to spill gets nothing back (native operators spill on their
 * own schedule, when their next reservation is refused).
 */
private[ballista] class SparkMemoryBroker(taskMemoryManager: TaskMemoryManager)
    extends MemoryConsumer(
      taskMemoryManager,
      taskMemoryManager.pageSizeBytes(),
      MemoryMode.OFF_HEAP
    )
    with MemoryBroker {

  override def acquire(bytes: Long): Long = acquireMemory(bytes)

  override def release(bytes: Long): Unit = freeMemory(bytes)

  override def spill(size: Long, trigger: MemoryConsumer): Long = 0L
}

object SparkMemoryBroker {

  /**
   * Sets up native memory for an executor: operators spill into Spark's local directories, and
   * native code holding more than `spark.ballista.memory.nativeLimit` fails tasks, not the
   * process.
   */
  def configureExecutor(conf: SparkConf): Unit =
    NativeEngine.configureMemory(spillDirectories(conf), BallistaConf.NativeMemoryLimit.get(conf))

  /**
   * The block manager's directories inside Spark's local directories: Spark deletes them when
   * the executor stops, with the spill directories the native engine makes in them (the native
   * engine itself is never shut down, so it cannot delete its own). Before the block manager
   * exists, the local directories themselves.
   */
  private def spillDirectories(conf: SparkConf): Array[String] =
    Option(SparkEnv.get)
      .map(_.blockManager.diskBlockManager.localDirs.map(_.getAbsolutePath))
      .filter(_.nonEmpty)
      .getOrElse(Utils.getConfiguredLocalDirs(conf))

  /**
   * Off-heap execution memory this executor's tasks hold now (native plans' and Spark's own
   * operators'), for diagnostics and leak checks; 0 outside an executor.
   */
  def offHeapExecutionMemoryUsed: Long =
    Option(SparkEnv.get).map(_.memoryManager.offHeapExecutionMemoryUsed).getOrElse(0L)

  /** Whether Spark has off-heap execution memory to grant native plans. */
  private[ballista] def offHeapEnabled(env: SparkEnv): Boolean =
    env.conf.get(MEMORY_OFFHEAP_ENABLED) && env.conf.get(MEMORY_OFFHEAP_SIZE) > 0

  /** The broker of a task's native plan; none (no limit) when off-heap memory is not enabled. */
  private[ballista] def forTask(context: TaskContext): Option[SparkMemoryBroker] =
    Option(SparkEnv.get)
      .filter(offHeapEnabled)
      .map(_ => new SparkMemoryBroker(context.taskMemoryManager()))
}
