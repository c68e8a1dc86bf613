package org.apache.spark.sql.ballista.execution

import scala.collection.JavaConverters._

import io.ballista.spark.proto.{NodeMetrics, PlanMetrics}
import org.apache.spark.SparkContext
import org.apache.spark.executor.TaskMetrics
import org.apache.spark.sql.execution.metric.{SQLMetric, SQLMetrics}

/**
 * The `SQLMetric`s of native operators, filled from what the engine counted for their plan
 * nodes (`PlanMetrics`) when a task's native plan ends. Spark sums them over tasks and shows
 * them on the operators of the SQL tab's plan graph as tasks finish.
 */
private[ballista] object NativeMetrics {

  /** The metrics every native operator has. */
  def operator(sc: SparkContext): Map[String, SQLMetric] = Map(
    "numOutputRows" -> SQLMetrics.createMetric(sc, "number of output rows"),
    "numOutputBatches" -> SQLMetrics.createMetric(sc, "number of output batches"),
    "nativeTime" -> SQLMetrics.createNanoTimingMetric(sc, "native compute time"),
    "peakMemory" -> SQLMetrics.createSizeMetric(sc, "native peak memory"),
    "numSpills" -> SQLMetrics.createMetric(sc, "number of spills"),
    "spillSize" -> SQLMetrics.createSizeMetric(sc, "spill size")
  )

  /** The metrics a native Parquet scan has besides the operators'. */
  def scan(sc: SparkContext): Map[String, SQLMetric] = Map(
    "bytesScanned" -> SQLMetrics.createSizeMetric(sc, "bytes scanned"),
    "numFilesPruned" -> SQLMetrics.createMetric(sc, "files pruned by statistics"),
    "numRowGroupsPruned" -> SQLMetrics.createMetric(sc, "row groups pruned by statistics")
  )

  /**
   * Adds one task's counts to the operators' metrics: `operators(i)` holds the metrics of the
   * node with metrics id `i + 1`; ids without an operator are ignored. Spills also count as the
   * task's, shown in the stage's "Spill (Memory)" and "Spill (Disk)" columns (a native spill
   * file holds Arrow IPC batches, as large as they were in memory).
   */
  def add(
      metrics: PlanMetrics,
      operators: IndexedSeq[Map[String, SQLMetric]],
      task: TaskMetrics
  ): Unit = {
    val nodes = metrics.getNodesList.asScala
    nodes.foreach { node =>
      val index = node.getMetricsId - 1
      if (index >= 0 && index < operators.size) add(node, operators(index))
    }
    val spilled = nodes.map(_.getSpilledBytes).sum
    task.incMemoryBytesSpilled(spilled)
    task.incDiskBytesSpilled(spilled)
  }

  private def add(node: NodeMetrics, metrics: Map[String, SQLMetric]): Unit = {
    def put(name: String, value: Long): Unit = metrics.get(name).foreach(_.add(value))
    put("numOutputRows", node.getOutputRows)
    put("numOutputBatches", node.getOutputBatches)
    put("nativeTime", node.getElapsedComputeNanos)
    put("peakMemory", node.getPeakMemoryBytes)
    put("numSpills", node.getSpillCount)
    put("spillSize", node.getSpilledBytes)
    put("bytesScanned", node.getBytesScanned)
    put("numFilesPruned", node.getFilesPruned)
    put("numRowGroupsPruned", node.getRowGroupsPruned)
  }
}
