package org.apache.spark.sql.ballista.execution

import java.util.concurrent.{ExecutionException, TimeUnit}

import scala.concurrent.{Future, Promise}

import org.apache.spark.{MapOutputStatistics, ShuffleDependency}
import org.apache.spark.broadcast.Broadcast
import org.apache.spark.rdd.RDD
import org.apache.spark.sql.ballista.shuffle.NativeShuffleDependency
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.plans.logical.Statistics
import org.apache.spark.sql.catalyst.plans.physical.{
  BroadcastMode,
  BroadcastPartitioning,
  Partitioning,
  SinglePartition
}
import org.apache.spark.sql.execution.{SQLExecution, ShufflePartitionSpec, SparkPlan}
import org.apache.spark.sql.execution.exchange.{
  BroadcastExchangeLike,
  ShuffleExchangeLike,
  ShuffleOrigin
}
import org.apache.spark.sql.execution.metric.{
  SQLMetric,
  SQLMetrics,
  SQLShuffleReadMetricsReporter,
  SQLShuffleWriteMetricsReporter
}
import org.apache.spark.sql.vectorized.ColumnarBatch
import org.apache.spark.util.ThreadUtils

/**
 * Spark's `ShuffleExchangeExec` for a native child: batches stay Arrow across the exchange
 * (see [[NativeShuffle]]). Adaptive execution sees an ordinary shuffle: map output statistics,
 * coalesced and skew-split reads.
 */
case class BallistaShuffleExchangeExec(
    override val outputPartitioning: Partitioning,
    child: SparkPlan,
    shuffleOrigin: ShuffleOrigin,
    advisoryPartitionSize: Option[Long]
) extends ShuffleExchangeLike {

  override def nodeName: String = "BallistaShuffleExchange"
  override def supportsColumnar: Boolean = true

  private lazy val writeMetrics =
    SQLShuffleWriteMetricsReporter.createShuffleWriteMetrics(sparkContext)
  private lazy val readMetrics =
    SQLShuffleReadMetricsReporter.createShuffleReadMetrics(sparkContext)

  /** Whether this exchange moves its data over Arrow Flight (Ballista's shuffle manager). */
  @transient private lazy val overFlight = NativeShuffle.overFlight

  private lazy val flightMetrics: Map[String, SQLMetric] =
    if (!overFlight) Map.empty
    else
      Map(
        "flightBytesFetched" -> SQLMetrics.createSizeMetric(sparkContext, "Flight bytes fetched"),
        "flightBlocksFetched" -> SQLMetrics.createMetric(sparkContext, "Flight blocks fetched"),
        "flightFetchRetries" -> SQLMetrics.createMetric(sparkContext, "Flight fetch retries")
      )

  override lazy val metrics: Map[String, SQLMetric] = Map(
    "dataSize" -> SQLMetrics.createSizeMetric(sparkContext, "data size"),
    "numOutputRows" -> SQLMetrics.createMetric(sparkContext, "number of output rows"),
    "numPartitions" -> SQLMetrics.createMetric(sparkContext, "number of partitions")
  ) ++ readMetrics ++ writeMetrics ++ flightMetrics

  @transient lazy val shuffleDependency: ShuffleDependency[Int, _, _] = {
    val dependency =
      if (overFlight) {
        NativeShuffle.flightDependency(
          child,
          outputPartitioning,
          longMetric("dataSize"),
          longMetric("numOutputRows"),
          writeMetrics
        )
      } else {
        logInfo(
          s"$nodeName moves Arrow blocks through Spark's sort shuffle: spark.shuffle.manager " +
            "is not org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager"
        )
        NativeShuffle.dependency(
          child,
          outputPartitioning,
          longMetric("dataSize"),
          longMetric("numOutputRows"),
          writeMetrics
        )
      }
    metrics("numPartitions").set(dependency.partitioner.numPartitions)
    val executionId = sparkContext.getLocalProperty(SQLExecution.EXECUTION_ID_KEY)
    SQLMetrics.postDriverMetricUpdates(sparkContext, executionId, metrics("numPartitions") :: Nil)
    dependency
  }

  private def read(specs: Option[Array[ShufflePartitionSpec]]): RDD[ColumnarBatch] =
    shuffleDependency match {
      case flight: NativeShuffleDependency =>
        NativeShuffle.flightRead(flight, readMetrics, flightMetrics, specs, output, conf)
      case blocks =>
        NativeShuffle.read(
          blocks.asInstanceOf[ShuffleDependency[Int, Array[Byte], Array[Byte]]],
          readMetrics,
          specs,
          output,
          conf
        )
    }

  @transient override protected lazy val mapOutputStatisticsFuture: Future[MapOutputStatistics] =
    if (shuffleDependency.rdd.getNumPartitions == 0) Future.successful(null)
    else sparkContext.submitMapStage(shuffleDependency)

  override def numMappers: Int = shuffleDependency.rdd.getNumPartitions
  override def numPartitions: Int = shuffleDependency.partitioner.numPartitions

  override def getShuffleRDD(partitionSpecs: Array[ShufflePartitionSpec]): RDD[ColumnarBatch] =
    read(Some(partitionSpecs))

  override def runtimeStatistics: Statistics =
    Statistics(metrics("dataSize").value, Some(metrics("numOutputRows").value))

  @transient private var cachedRDD: RDD[ColumnarBatch] = _

  override protected def doExecuteColumnar(): RDD[ColumnarBatch] = synchronized {
    if (cachedRDD == null) {
      cachedRDD = read(None)
    }
    cachedRDD
  }

  override protected def doExecute(): RDD[InternalRow] =
    throw new IllegalStateException(s"$nodeName produces columnar batches only")

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)
}

/** A broadcast's data: encoded Arrow IPC blocks, fetched once per executor by Spark. */
case class ArrowBlocks(blocks: Array[Array[Byte]], rows: Long)

/**
 * Spark's `BroadcastExchangeExec` for native hash joins: the child's rows are broadcast as
 * Arrow IPC blocks (not as Spark's hashed relation), which native joins decode and build on.
 */
case class BallistaBroadcastExchangeExec(mode: BroadcastMode, child: SparkPlan)
    extends BroadcastExchangeLike {

  override def nodeName: String = "BallistaBroadcastExchange"
  override def outputPartitioning: Partitioning = BroadcastPartitioning(mode)

  // Its child's batches are read as Arrow; Spark must not convert them to rows first.
  override def supportsColumnar: Boolean = true

  override lazy val metrics: Map[String, SQLMetric] = Map(
    "dataSize" -> SQLMetrics.createSizeMetric(sparkContext, "data size"),
    "numOutputRows" -> SQLMetrics.createMetric(sparkContext, "number of output rows"),
    "collectTime" -> SQLMetrics.createTimingMetric(sparkContext, "time to collect")
  )

  @transient private lazy val promise = Promise[Broadcast[Any]]()

  @transient override lazy val completionFuture: Future[Broadcast[Any]] = promise.future

  @transient override lazy val relationFuture: java.util.concurrent.Future[Broadcast[Any]] =
    SQLExecution.withThreadLocalCaptured[Broadcast[Any]](
      session,
      BallistaBroadcastExchangeExec.executor
    ) {
      try {
        sparkContext.setJobGroup(
          runId.toString,
          s"ballista broadcast exchange (runId $runId)",
          interruptOnCancel = true
        )
        sparkContext.addJobTag(jobTag)
        val start = System.nanoTime()
        val writer = BallistaShuffleWriterExec(
          NativeShuffle.proto(SinglePartition, child),
          NativeShuffle.codec(conf),
          child
        )
        val collected = writer
          .executeColumnar()
          .mapPartitionsInternal(batches =>
            NativeShuffle.blockRecords(batches).map { case (_, block, rows) => (block, rows) }
          )
          .collect()
        val blocks = ArrowBlocks(collected.map(_._1), collected.map(_._2).sum)
        longMetric("collectTime") += (System.nanoTime() - start) / 1000000
        longMetric("dataSize") += blocks.blocks.map(_.length.toLong).sum
        longMetric("numOutputRows") += blocks.rows
        val broadcast = sparkContext.broadcast(blocks).asInstanceOf[Broadcast[Any]]
        val executionId = sparkContext.getLocalProperty(SQLExecution.EXECUTION_ID_KEY)
        SQLMetrics.postDriverMetricUpdates(sparkContext, executionId, metrics.values.toSeq)
        promise.trySuccess(broadcast)
        broadcast
      } catch {
        case e: Throwable =>
          promise.tryFailure(e)
          throw e
      }
    }

  override protected def doPrepare(): Unit = relationFuture

  override def runtimeStatistics: Statistics =
    Statistics(metrics("dataSize").value, Some(metrics("numOutputRows").value))

  override protected[sql] def doExecuteBroadcast[T](): Broadcast[T] =
    try {
      relationFuture.get(conf.broadcastTimeout, TimeUnit.SECONDS).asInstanceOf[Broadcast[T]]
    } catch {
      case e: ExecutionException if e.getCause != null => throw e.getCause
    }

  override protected def doExecute(): RDD[InternalRow] =
    throw new IllegalStateException(s"$nodeName is only read by native joins")

  override protected def doExecuteColumnar(): RDD[ColumnarBatch] =
    throw new IllegalStateException(s"$nodeName is only read by native joins")

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)
}

object BallistaBroadcastExchangeExec {
  private lazy val executor =
    ThreadUtils.newDaemonCachedThreadPool("ballista-broadcast-exchange", 16)
}
