package org.apache.spark.sql.ballista.execution

import scala.collection.JavaConverters._
import scala.collection.mutable.ArrayBuffer

import io.ballista.spark.BallistaConf
import scala.util.control.NonFatal

import io.ballista.spark.jni.{
  Allocators,
  BatchSource,
  NativeException,
  NativePlan,
  ShuffleFetchException
}
import io.ballista.spark.proto.{
  IpcReader,
  JvmInput,
  Plan,
  PlanMetrics,
  PlanNode,
  ScanFile,
  Schema => PSchema
}
import org.apache.arrow.memory.BufferAllocator
import org.apache.spark.{OneToOneDependency, Partition, SparkContext, TaskContext}
import org.apache.spark.broadcast.Broadcast
import org.apache.spark.internal.Logging
import org.apache.spark.rdd.RDD
import org.apache.spark.sql.ballista.serde.TypeSerde
import org.apache.spark.sql.ballista.shuffle.{FlightRead, FlightShuffleReadRDD}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.plans.physical.BroadcastPartitioning
import org.apache.spark.sql.execution.{ColumnarToRowExec, SparkPlan}
import org.apache.spark.sql.execution.adaptive.{AQEShuffleReadExec, QueryStageExec}
import org.apache.spark.sql.execution.exchange.ReusedExchangeExec
import org.apache.spark.sql.execution.metric.SQLMetric
import org.apache.spark.sql.types.{BinaryType, StructType}
import org.apache.spark.sql.vectorized.{ArrowColumnVector, ColumnVector, ColumnarBatch}

/** Where a native plan's `JvmInput` batches come from. */
sealed private[ballista] trait NativeInput

/** Partitioned inputs: task `i` of the native plan reads partition `i` of each. */
sealed private[ballista] trait PartitionedInput extends NativeInput {
  def rdd: RDD[_]
}

/** Rows of a Spark operator, converted to Arrow. */
private[ballista] case class RowInput(rdd: RDD[InternalRow], schema: StructType)
    extends PartitionedInput

/** Arrow batches of another native plan, handed on without copying. */
private[ballista] case class BatchInput(rdd: RDD[ColumnarBatch]) extends PartitionedInput

/**
 * A native shuffle's blocks, which the plan fetches and decodes itself (a `ShuffleRead` node)
 * rather than taking the batches of the shuffle's own read tasks through the JVM.
 */
private[ballista] case class FlightReadInput(rdd: FlightShuffleReadRDD) extends PartitionedInput

/** Encoded Arrow IPC blocks (a shuffle's output) for a native `IpcReader`. */
private[ballista] case class BlockInput(rdd: RDD[Array[Byte]]) extends PartitionedInput

/** Encoded Arrow IPC blocks that every task reads whole (a broadcast). */
private[ballista] case class BroadcastInput(blocks: Broadcast[ArrowBlocks]) extends NativeInput {

  /**
   * The name a native join may share the hash table it builds from these blocks under, in
   * each executor (see `IpcReader.shared_key`), if they are at most `maxBytes`: broadcast ids
   * restart with every SparkContext, which may follow another in the same process.
   */
  def sharedKey(sc: SparkContext, maxBytes: Long): Option[String] =
    if (blocks.value.blocks.map(_.length.toLong).sum > maxBytes) None
    else Some(s"${sc.applicationId}-${sc.startTime}/broadcast-${blocks.id}")
}

/**
 * One task of a native plan: the task's own part of the plan (a serialized `Plan` of only what
 * differs by task: the files its scan reads, its root's per-task fields), and its partitioned
 * inputs' partitions.
 */
private[ballista] class NativePartition(
    override val index: Int,
    val taskPlan: Array[Byte],
    val inputPartitions: Array[Partition]
) extends Partition

/**
 * Runs a native plan per task. Partitions come from Spark's file splits of the plan's one
 * Parquet scan, or from its partitioned inputs (zipped, as Spark's planner lines them up).
 * `operatorMetrics(i)` receives what the engine counted for the plan node with metrics id
 * `i + 1`.
 *
 * `sharedPlan`, the serialized plan all tasks run, is a field of the RDD, which Spark ships
 * once per stage and executor (in the stage's broadcast task binary) rather than in every
 * task: a plan may carry megabytes of values (a runtime Bloom filter).
 */
private[ballista] class NativePlanRDD(
    sc: SparkContext,
    sharedPlan: Array[Byte],
    @transient private val nativePartitions: Array[NativePartition],
    inputs: Seq[NativeInput],
    batchSize: Int,
    operatorMetrics: IndexedSeq[Map[String, SQLMetric]] = IndexedSeq.empty
) extends RDD[ColumnarBatch](sc, NativePlanRDD.dependencies(inputs))
    with Logging {

  override protected def getPartitions: Array[Partition] = nativePartitions.toArray

  override def compute(split: Partition, context: TaskContext): Iterator[ColumnarBatch] =
    run(split.asInstanceOf[NativePartition], context, None)

  /**
   * Runs task `split` with its plan as a shuffle map task writing its map output to
   * `dataFile` (its root must be a `ShuffleWriter`); returns the partitions' lengths in the
   * file and the rows written.
   */
  def writeMapOutput(
      split: Partition,
      context: TaskContext,
      dataFile: String
  ): (Array[Long], Long) = {
    val output = Plan.newBuilder().setShuffleOutputFile(dataFile).build()
    val batches = run(split.asInstanceOf[NativePartition], context, Some(output))
    val lengths = ArrayBuffer[Long]()
    var rows = 0L
    batches.foreach { batch =>
      var r = 0
      while (r < batch.numRows()) {
        lengths += batch.column(1).getLong(r)
        rows += batch.column(2).getLong(r)
        r += 1
      }
    }
    (lengths.toArray, rows)
  }

  /** Each input's index among the partitioned ones (its dependency), -1 for a broadcast. */
  private val partitionedIndex: Seq[Int] = {
    var next = 0
    inputs.map {
      case _: PartitionedInput =>
        next += 1
        next - 1
      case _ => -1
    }
  }

  /** Runs the task's plan, with the fields of `extra` (set on the executor) if given. */
  private def run(
      partition: NativePartition,
      context: TaskContext,
      extra: Option[Plan]
  ): Iterator[ColumnarBatch] = {
    def inputPartition(i: Int) = partition.inputPartitions(partitionedIndex(i))
    // The blocks of the shuffles the plan reads itself, in the order of their `reads_index`.
    val reads = inputs.zipWithIndex.collect { case (FlightReadInput(rdd), i) =>
      rdd.blocksOf(inputPartition(i))
    }
    val readsPart =
      if (reads.isEmpty) None
      else Some(Plan.newBuilder().addAllShuffleReads(reads.map(_.blocks).asJava).build())
    // Concatenated messages parse as one, merged (see `Plan` in plan.proto).
    val bytes = Array.concat(
      sharedPlan +: partition.taskPlan +: (readsPart ++ extra).map(_.toByteArray).toSeq: _*
    )
    val firstReadMetricsId = NativePlanRDD.firstReadMetricsId(operatorMetrics.size)
    NativePlanRDD.runTask(
      bytes,
      context,
      operatorMetrics,
      onMetrics = metrics =>
        reads.zipWithIndex.foreach { case (read, k) =>
          val id = firstReadMetricsId + k
          read.addMetrics(metrics.getNodesList.asScala.filter(_.getMetricsId == id), context)
        },
      fetchFailure = e => if (e.readsIndex() < reads.size) reads(e.readsIndex()).failure(e) else e
    ) { allocator =>
      inputs.zipWithIndex.map { case (input, i) =>
        def iterator[T]: Iterator[T] =
          dependencies(partitionedIndex(i)).rdd
            .asInstanceOf[RDD[T]]
            .iterator(inputPartition(i), context)
        input match {
          case RowInput(_, schema) =>
            new RowBatchSource(iterator[InternalRow], schema, batchSize, allocator)
          case BatchInput(_) => new ColumnarBatchSource(iterator[ColumnarBatch], allocator)
          case BlockInput(_) => new BlockBatchSource(iterator[Array[Byte]], allocator)
          case BroadcastInput(blocks) =>
            new BlockBatchSource(blocks.value.blocks.iterator, allocator): BatchSource
          // Read by the plan's `ShuffleRead` node; its `JvmInput` index stays taken.
          case FlightReadInput(_) => NoBatches
        }
      }.toArray
    }
  }
}

/**
 * Native output batches as Spark `ColumnarBatch`es over the imported Arrow vectors; a shuffle
 * block the plan could not fetch becomes what `fetchFailure` makes of it (Spark's fetch failure).
 */
private class NativeBatchIterator(
    plan: NativePlan,
    context: TaskContext,
    fetchFailure: ShuffleFetchException => Throwable
) extends Iterator[ColumnarBatch] {

  override def hasNext: Boolean = {
    // Lets Spark stop a killed task between batches.
    context.killTaskIfInterrupted()
    try plan.hasNext
    catch {
      case e: NativeException if context.isInterrupted() =>
        // Cancelled by TaskKillWatcher: Spark expects its own kind of exception for a kill.
        context.killTaskIfInterrupted()
        throw e
      case e: ShuffleFetchException => throw fetchFailure(e)
    }
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

private[ballista] object NativePlanRDD extends Logging {

  /**
   * Runs one task's native plan over the batch sources `sources` makes (from the task's Arrow
   * allocator) and returns its output. Everything is closed when the task ends, on success,
   * failure or cancellation; `onMetrics` then receives the plan's metrics, and
   * `operatorMetrics(i)` what the engine counted for the node with metrics id `i + 1`.
   */
  def runTask(
      planBytes: Array[Byte],
      context: TaskContext,
      operatorMetrics: IndexedSeq[Map[String, SQLMetric]],
      onMetrics: PlanMetrics => Unit = _ => (),
      fetchFailure: ShuffleFetchException => Throwable = identity
  )(sources: BufferAllocator => Array[BatchSource]): Iterator[ColumnarBatch] = {
    val allocator = Allocators.child(s"ballista-task-${context.taskAttemptId()}")
    var plan: NativePlan = null
    // The native plan goes first: it holds the input batches exported from the allocator.
    context.addTaskCompletionListener[Unit] { _ =>
      try {
        if (plan != null) {
          TaskKillWatcher.unwatch(plan)
          addMetrics(plan, context, operatorMetrics, onMetrics)
          plan.close()
        }
      } finally {
        try allocator.close()
        catch {
          case e: IllegalStateException => logWarning(s"Arrow memory not released: $e")
        }
      }
    }
    plan = NativePlan.execute(
      planBytes,
      sources(allocator),
      allocator,
      SparkMemoryBroker.forTask(context).orNull
    )
    TaskKillWatcher.watch(plan, context)
    new NativeBatchIterator(plan, context, fetchFailure)
  }

  /**
   * Adds the task's counts to the operators' metrics and its spills to the task's; a failure
   * to read them is no error.
   */
  private def addMetrics(
      plan: NativePlan,
      context: TaskContext,
      operatorMetrics: IndexedSeq[Map[String, SQLMetric]],
      onMetrics: PlanMetrics => Unit
  ): Unit =
    try {
      val metrics = PlanMetrics.parseFrom(plan.metrics())
      NativeMetrics.add(metrics, operatorMetrics, context.taskMetrics())
      onMetrics(metrics)
    } catch {
      case NonFatal(e) => logWarning(s"native metrics of the task are lost: $e")
    }

  /** The RDD computing the native subtree rooted at `root`. */
  def create(root: BallistaExec): RDD[ColumnarBatch] = {
    awaitSubqueries(root)
    val leaves = ArrayBuffer[SparkPlan]()
    collectLeaves(root, leaves)
    val scans = leaves.collect { case s: BallistaParquetScanExec => s }
    val others = leaves.filterNot(_.isInstanceOf[BallistaParquetScanExec])
    val partitionedOthers = others.count(!isBroadcast(_))
    // A single scan with no other partitioned input drives the tasks (one per file split);
    // otherwise every scan runs as a plan of its own whose batches are inputs like any other.
    val drivingScan = if (scans.size == 1 && partitionedOthers == 0) scans.headOption else None
    val inputLeaves = leaves.filterNot(l => drivingScan.exists(_ eq l))
    val inputs = inputLeaves.map(inputOf)
    val metered = meteredOperators(root, inputLeaves)
    // Input index -> `reads_index` of the shuffles the plan reads itself.
    val reads = inputs.zipWithIndex
      .collect { case (_: FlightReadInput, i) => i }
      .zipWithIndex
      .toMap
    val conf = root.conf
    val batchSize = BallistaConf.BatchSize.get(conf)
    val maxShared = BallistaConf.SharedBuildMaxBytes.get(conf)
    // Input index -> the key its broadcast's hash tables are shared under.
    val sharedKeys = inputs.zipWithIndex.flatMap {
      case (b: BroadcastInput, i) if maxShared > 0 =>
        b.sharedKey(root.session.sparkContext, maxShared).map(i -> _)
      case _ => None
    }.toMap

    val shared = Plan
      .newBuilder()
      .setRoot(build(root, inputLeaves, reads, metered, sharedKeys))
      .setOutputSchema(TypeSerde.schema(root.output))
      .setSessionTimezone(conf.sessionLocalTimeZone)
      .setBatchSize(batchSize)
      .build()
      .toByteArray

    def taskPlan(partition: Int, files: Seq[ScanFile]): Array[Byte] = {
      val part = Plan.newBuilder().addAllScanFiles(files.asJava)
      root.taskRoot(partition).foreach(part.setRoot)
      part.build().toByteArray
    }

    val partitioned = inputs.collect { case p: PartitionedInput => p.rdd }
    val partitions = drivingScan match {
      case Some(scan) =>
        scan.filePartitions.indices.map { i =>
          new NativePartition(i, taskPlan(i, scan.scanFiles(i)), Array.empty)
        }.toArray
      case None if partitioned.isEmpty =>
        throw new IllegalStateException(s"native plan without partitioned input: $root")
      case None =>
        val counts = partitioned.map(_.getNumPartitions).distinct
        if (counts.size != 1) {
          throw new IllegalStateException(
            s"native plan inputs have different numbers of partitions ${counts.mkString(",")}"
          )
        }
        (0 until counts.head).map { i =>
          new NativePartition(i, taskPlan(i, Nil), partitioned.map(_.partitions(i)).toArray)
        }.toArray
    }
    new NativePlanRDD(
      root.session.sparkContext,
      shared,
      partitions,
      inputs.toSeq,
      batchSize,
      metered.map(_.metrics)
    )
  }

  /** The native operators of the plan rooted at `root`; metrics id = position + 1. */
  private def meteredOperators(
      root: SparkPlan,
      inputs: Seq[SparkPlan]
  ): IndexedSeq[BallistaExec] = {
    val found = ArrayBuffer[BallistaExec]()
    def visit(plan: SparkPlan): Unit = plan match {
      case native: BallistaExec if !inputs.exists(_ eq native) =>
        found += native
        native.children.foreach(visit)
      case _ =>
    }
    visit(root)
    found.toIndexedSeq
  }

  def dependencies(inputs: Seq[NativeInput]): Seq[OneToOneDependency[_]] =
    inputs.collect { case p: PartitionedInput => new OneToOneDependency(p.rdd) }

  /** A native plan over `inputs` only (no scan), built from plan nodes directly. */
  def overInputs(
      sc: SparkContext,
      rootNode: Seq[PlanNode] => PlanNode,
      inputs: Seq[NativeInput],
      inputSchemas: Seq[PSchema],
      outputSchema: PSchema,
      conf: org.apache.spark.sql.internal.SQLConf
  ): RDD[ColumnarBatch] = {
    val batchSize = BallistaConf.BatchSize.get(conf)
    val leaves = inputs.zip(inputSchemas).zipWithIndex.map { case ((input, schema), i) =>
      leafNode(i, schema, encoded = isEncoded(input))
    }
    val bytes = Plan
      .newBuilder()
      .setRoot(rootNode(leaves))
      .setOutputSchema(outputSchema)
      .setSessionTimezone(conf.sessionLocalTimeZone)
      .setBatchSize(batchSize)
      .build()
      .toByteArray
    val partitioned = inputs.collect { case p: PartitionedInput => p.rdd }
    val count = partitioned.headOption.map(_.getNumPartitions).getOrElse(1)
    val partitions = (0 until count).map { i =>
      new NativePartition(i, Array.emptyByteArray, partitioned.map(_.partitions(i)).toArray)
    }.toArray
    new NativePlanRDD(sc, bytes, partitions, inputs, batchSize)
  }

  /** Subqueries of the native operators, whose values their plan nodes carry. */
  private def awaitSubqueries(plan: SparkPlan): Unit = plan match {
    case native: BallistaExec =>
      native.awaitSubqueries()
      native.children.foreach(awaitSubqueries)
    case _ =>
  }

  private def collectLeaves(plan: SparkPlan, leaves: ArrayBuffer[SparkPlan]): Unit =
    plan match {
      case scan: BallistaParquetScanExec => leaves += scan
      case native: BallistaExec => native.children.foreach(collectLeaves(_, leaves))
      case other => leaves += other
    }

  private def isBroadcast(plan: SparkPlan): Boolean =
    plan.outputPartitioning.isInstanceOf[BroadcastPartitioning]

  /** Whether `plan` produces batches of Arrow vectors (native output). */
  def producesArrow(plan: SparkPlan): Boolean = plan match {
    case _: BallistaExec | _: BallistaShuffleExchangeExec | _: ArrowOutput => true
    case s: QueryStageExec => producesArrow(s.plan)
    case r: AQEShuffleReadExec => producesArrow(r.child)
    case r: ReusedExchangeExec => producesArrow(r.child)
    case _ => false
  }

  private def inputOf(leaf: SparkPlan): NativeInput =
    if (isBroadcast(leaf)) {
      BroadcastInput(leaf.executeBroadcast[ArrowBlocks]())
    } else if (producesArrow(leaf)) {
      leaf.executeColumnar() match {
        case flight: FlightShuffleReadRDD => FlightReadInput(flight)
        case batches => BatchInput(batches)
      }
    } else {
      // A columnar-only Spark operator is read through Spark's own columnar-to-row transition.
      val rows =
        if (leaf.supportsColumnar && !leaf.supportsRowBased) ColumnarToRowExec(leaf).execute()
        else leaf.execute()
      RowInput(rows, leaf.schema)
    }

  private def isEncoded(input: NativeInput): Boolean = input match {
    case _: BroadcastInput | _: BlockInput => true
    case _ => false
  }

  /** The plan node reading input `index`; `encoded` IPC blocks are decoded natively. */
  private def leafNode(
      index: Int,
      schema: PSchema,
      encoded: Boolean,
      sharedKey: Option[String] = None
  ): PlanNode = {
    def jvmInput(s: PSchema) =
      PlanNode.newBuilder().setJvmInput(JvmInput.newBuilder().setIndex(index).setSchema(s)).build()
    if (encoded) {
      val blocks = TypeSerde.schema(
        new StructType().add(BlockBatchSource.DataColumn, BinaryType, nullable = false)
      )
      val reader = IpcReader.newBuilder().setInput(jvmInput(blocks)).setSchema(schema)
      sharedKey.foreach(reader.setSharedKey)
      PlanNode.newBuilder().setIpcReader(reader).build()
    } else {
      jvmInput(schema)
    }
  }

  /** The metrics id of the first `ShuffleRead` a plan with `operators` metered operators has. */
  private def firstReadMetricsId(operators: Int): Int = operators + 1

  private def build(
      plan: SparkPlan,
      inputs: Seq[SparkPlan],
      reads: Map[Int, Int],
      metered: IndexedSeq[BallistaExec],
      sharedKeys: Map[Int, String]
  ): PlanNode =
    plan match {
      case native: BallistaExec if !inputs.exists(_ eq native) =>
        val children = native.children.map(build(_, inputs, reads, metered, sharedKeys))
        native
          .planNode(children)
          .toBuilder
          .setMetricsId(metered.indexWhere(_ eq native) + 1)
          .build()
      case other =>
        val index = inputs.indexWhere(_ eq other)
        val schema = TypeSerde.schema(other.output)
        reads.get(index) match {
          case Some(readsIndex) =>
            FlightRead.planNode(readsIndex, schema, firstReadMetricsId(metered.size) + readsIndex)
          case None =>
            leafNode(index, schema, encoded = isBroadcast(other), sharedKeys.get(index))
        }
    }
}
