package org.apache.spark.sql.ballista.execution

import org.apache.spark.rdd.RDD
import org.apache.spark.sql.catalyst.expressions.Attribute
import org.apache.spark.sql.catalyst.plans.physical.{Partitioning, SinglePartition}
import org.apache.spark.sql.execution.{CoalescedPartitionSpec, SparkPlan, UnaryExecNode}
import org.apache.spark.sql.execution.adaptive.{AQEShuffleReadExec, ShuffleQueryStageExec}
import org.apache.spark.sql.vectorized.ColumnarBatch

/**
 * All of a native shuffle stage's output, read by one task: one partition, which satisfies any
 * distribution its parents ask for (see `SmallFinalSorts`). Adaptive execution may still
 * coalesce the stage's read below it (it sees an ordinary shuffle read there); this node reads
 * every reduce partition of the stage whatever that read's specs.
 */
case class BallistaSingleTaskReadExec(child: SparkPlan) extends UnaryExecNode with ArrowOutput {

  override def nodeName: String = "BallistaSingleTaskRead"
  override def output: Seq[Attribute] = child.output
  override def outputPartitioning: Partitioning = SinglePartition

  private def stage: ShuffleQueryStageExec = child match {
    case stage: ShuffleQueryStageExec => stage
    case AQEShuffleReadExec(stage: ShuffleQueryStageExec, _) => stage
    case other => throw new IllegalStateException(s"$nodeName reads a shuffle stage, not $other")
  }

  override protected def doExecuteColumnar(): RDD[ColumnarBatch] = {
    val partitions = stage.shuffle.numPartitions
    stage.shuffle
      .getShuffleRDD(Array(CoalescedPartitionSpec(0, partitions)))
      .asInstanceOf[RDD[ColumnarBatch]]
  }

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)
}
