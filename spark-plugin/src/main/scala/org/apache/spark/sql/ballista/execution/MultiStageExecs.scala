package org.apache.spark.sql.ballista.execution

import io.ballista.spark.proto.{PlanNode, Projection}
import org.apache.spark.rdd.RDD
import org.apache.spark.sql.ballista.serde.{ExprSerde, TypeSerde}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{Attribute, NamedExpression, SortOrder}
import org.apache.spark.sql.catalyst.plans.physical.{Partitioning, SinglePartition}
import org.apache.spark.sql.catalyst.util.truncatedString
import org.apache.spark.sql.execution.{SparkPlan, UnaryExecNode}
import org.apache.spark.sql.execution.metric.{
  SQLMetric,
  SQLMetrics,
  SQLShuffleReadMetricsReporter,
  SQLShuffleWriteMetricsReporter
}
import org.apache.spark.sql.vectorized.ColumnarBatch

/**
 * Operators outside native plans that produce Arrow batches only (never rows), which native
 * parents read as their inputs without copying.
 */
trait ArrowOutput extends SparkPlan {

  override def supportsColumnar: Boolean = true

  override protected def doExecute(): RDD[InternalRow] =
    throw new IllegalStateException(s"$nodeName produces columnar batches only")
}

/**
 * Native operators whose work spans more than one native plan per task, so they cannot be
 * a node of one.
 */
trait ArrowProducer extends ReplacesSparkOperator with ArrowOutput

/** Spark's `UnionExec` over native inputs: their partitions, one after the other. */
case class BallistaUnionExec(children: Seq[SparkPlan], original: SparkPlan) extends ArrowProducer {

  override def nodeName: String = "BallistaUnion"
  override def output: Seq[Attribute] = original.output
  override def outputPartitioning: Partitioning =
    original.withNewChildren(children).outputPartitioning

  override protected def doExecuteColumnar(): RDD[ColumnarBatch] =
    sparkContext.union(children.map(_.executeColumnar()))

  override protected def withNewChildrenInternal(newChildren: IndexedSeq[SparkPlan]): SparkPlan =
    copy(children = newChildren)
}

/**
 * Spark's `TakeOrderedAndProjectExec`: rows [`offset`, `limit`) by `sortOrder` (Spark's
 * `limit` counts the skipped rows too), then `projectList`. Each task keeps its top rows natively; they meet in one partition
 * through a native single-partition shuffle (not a query stage, as in Spark), where a last
 * native plan takes the overall top rows.
 */
case class BallistaTakeOrderedAndProjectExec(
    limit: Int,
    offset: Int,
    sortOrder: Seq[SortOrder],
    projectList: Seq[NamedExpression],
    child: SparkPlan,
    original: SparkPlan
) extends ArrowProducer
    with UnaryExecNode {

  override def nodeName: String = "BallistaTakeOrderedAndProject"
  override def output: Seq[Attribute] = original.output
  override def outputPartitioning: Partitioning = SinglePartition
  override def outputOrdering: Seq[SortOrder] = original.outputOrdering

  override def simpleString(maxFields: Int): String =
    s"$nodeName limit=$limit offset=$offset " +
      s"order=${truncatedString(sortOrder, "[", ",", "]", maxFields)} " +
      s"output=${truncatedString(output, "[", ",", "]", maxFields)}"

  private lazy val writeMetrics =
    SQLShuffleWriteMetricsReporter.createShuffleWriteMetrics(sparkContext)
  private lazy val readMetrics =
    SQLShuffleReadMetricsReporter.createShuffleReadMetrics(sparkContext)
  override lazy val metrics: Map[String, SQLMetric] = Map(
    "dataSize" -> SQLMetrics.createSizeMetric(sparkContext, "data size"),
    "numOutputRows" -> SQLMetrics.createMetric(sparkContext, "number of shuffled rows")
  ) ++ readMetrics ++ writeMetrics

  override protected def doExecuteColumnar(): RDD[ColumnarBatch] = {
    val top = limit
    val localTop = BallistaSortExec(sortOrder, child, original, Some(top))
    val dependency = NativeShuffle.dependency(
      localTop,
      SinglePartition,
      longMetric("dataSize"),
      longMetric("numOutputRows"),
      writeMetrics
    )
    val blocks = new ShuffledBlockRDD(
      dependency,
      readMetrics,
      Array(org.apache.spark.sql.execution.CoalescedPartitionSpec(0, 1))
    )
    val input = child.output
    NativePlanRDD.overInputs(
      sparkContext,
      leaves => {
        val sorted = BallistaSortExec.sortNode(leaves.head, sortOrder, input, Some(top))
        val limited = BallistaLimitExec.limitNode(sorted, math.max(limit - offset, 0), offset)
        val projection = Projection.newBuilder().setInput(limited)
        projectList.foreach(e => projection.addExprs(ExprSerde.named(e, input)))
        PlanNode.newBuilder().setProjection(projection).build()
      },
      Seq(BlockInput(blocks)),
      Seq(TypeSerde.schema(input)),
      TypeSerde.schema(output),
      conf
    )
  }

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)
}
