package org.apache.spark.sql.ballista.execution

import scala.collection.mutable.ArrayBuffer

import io.ballista.spark.BallistaConf
import io.ballista.spark.jni.{Allocators, BatchSource, NativePlan}
import io.ballista.spark.proto.{JvmInput, Plan, PlanNode}
import org.apache.spark.{OneToOneDependency, Partition, SparkContext, TaskContext}
import org.apache.spark.internal.Logging
import org.apache.spark.rdd.RDD
import org.apache.spark.sql.ballista.serde.TypeSerde
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.execution.{ColumnarToRowExec, SparkPlan}
import org.apache.spark.sql.types.StructType
import org.apache.spark.sql.vectorized.{ArrowColumnVector, ColumnVector, ColumnarBatch}

/** One task of a native plan: its serialized plan and, if any, its input's partition. */
private[ballista] class NativePartition(
    override val index: Int,
    val planBytes: Array[Byte],
    val inputPartition: Option[Partition]
) extends Partition

/**
 * Runs a native plan per task. A plan reads either Parquet files (one task per file split
 * Spark planned) or the rows of one Spark operator (one task per input partition, which
 * arrive as Arrow batches converted from rows).
 */
private[ballista] class NativePlanRDD(
    sc: SparkContext,
    @transient private val nativePartitions: Array[NativePartition],
    rowInput: Option[RDD[InternalRow]],
    inputSchema: StructType,
    batchSize: Int
) extends RDD[ColumnarBatch](sc, rowInput.map(r => new OneToOneDependency(r)).toSeq)
    with Logging {

  override protected def getPartitions: Array[Partition] = nativePartitions.toArray

  override def compute(split: Partition, context: TaskContext): Iterator[ColumnarBatch] = {
    val partition = split.asInstanceOf[NativePartition]
    val allocator = Allocators.child(s"ballista-task-${context.taskAttemptId()}")
    var plan: NativePlan = null
    // Close everything when the task ends, on success, failure or cancellation. The native
    // plan goes first: it holds the input batches exported from the allocator.
    context.addTaskCompletionListener[Unit] { _ =>
      try {
        if (plan != null) plan.close()
      } finally {
        try allocator.close()
        catch {
          case e: IllegalStateException => logWarning(s"Arrow memory not released: $e")
        }
      }
    }
    val sources: Array[BatchSource] = partition.inputPartition.toArray.map { inputSplit =>
      val rows = firstParent[InternalRow].iterator(inputSplit, context)
      new RowBatchSource(rows, inputSchema, batchSize, allocator)
    }
    plan = NativePlan.execute(partition.planBytes, sources, allocator)
    new NativeBatchIterator(plan, context)
  }
}

/** Native output batches as Spark `ColumnarBatch`es over the imported Arrow vectors. */
private class NativeBatchIterator(plan: NativePlan, context: TaskContext)
    extends Iterator[ColumnarBatch] {

  override def hasNext: Boolean = {
    // Lets Spark stop a killed task between batches.
    context.killTaskIfInterrupted()
    plan.hasNext
  }

  override def next(): ColumnarBatch = {
    val root = plan.next()
    val vectors = new Array[ColumnVector](root.getFieldVectors.size())
    var i = 0
    while (i < vectors.length) {
      vectors(i) = new ArrowColumnVector(root.getVector(i))
      i += 1
    }
    // Valid until the next call: the plan loads the next batch into the same vectors.
    new ColumnarBatch(vectors, root.getRowCount)
  }
}

private[ballista] object NativePlanRDD {

  /** The RDD computing the native subtree rooted at `root`. */
  def create(root: BallistaExec): RDD[ColumnarBatch] = {
    val inputs = ArrayBuffer[SparkPlan]()
    val scans = ArrayBuffer[BallistaParquetScanExec]()
    collectLeaves(root, inputs, scans)
    val conf = root.conf
    val batchSize = BallistaConf.BatchSize.get(conf)

    def planBytes(partition: Int): Array[Byte] =
      Plan
        .newBuilder()
        .setRoot(build(root, inputs, partition))
        .setOutputSchema(TypeSerde.schema(root.output))
        .setSessionTimezone(conf.sessionLocalTimeZone)
        .setBatchSize(batchSize)
        .build()
        .toByteArray

    (scans.size, inputs.size) match {
      case (1, 0) =>
        val partitions = scans.head.filePartitions.indices
          .map(i => new NativePartition(i, planBytes(i), None))
          .toArray
        new NativePlanRDD(root.session.sparkContext, partitions, None, new StructType(), batchSize)
      case (0, 1) =>
        val child = inputs.head
        // Rows are what the native side imports (as Arrow); a columnar-only Spark operator
        // is read through Spark's own columnar-to-row transition.
        val rows =
          if (child.supportsColumnar && !child.supportsRowBased) ColumnarToRowExec(child).execute()
          else child.execute()
        val bytes = planBytes(0)
        val partitions = rows.partitions.map(p => new NativePartition(p.index, bytes, Some(p)))
        new NativePlanRDD(
          root.session.sparkContext,
          partitions,
          Some(rows),
          child.schema,
          batchSize
        )
      case (s, i) =>
        throw new IllegalStateException(
          s"native plans with $s scans and $i inputs are not supported: ${root.treeString}"
        )
    }
  }

  private def collectLeaves(
      plan: SparkPlan,
      inputs: ArrayBuffer[SparkPlan],
      scans: ArrayBuffer[BallistaParquetScanExec]
  ): Unit = plan match {
    case scan: BallistaParquetScanExec => scans += scan
    case native: BallistaExec => native.children.foreach(collectLeaves(_, inputs, scans))
    case other => inputs += other
  }

  private def build(plan: SparkPlan, inputs: Seq[SparkPlan], partition: Int): PlanNode =
    plan match {
      case native: BallistaExec =>
        native.planNode(native.children.map(build(_, inputs, partition)), partition)
      case other =>
        val input = JvmInput
          .newBuilder()
          .setIndex(inputs.indexWhere(_ eq other))
          .setSchema(TypeSerde.schema(other.schema))
        PlanNode.newBuilder().setJvmInput(input).build()
    }
}
