package org.apache.spark.sql.ballista.shuffle

import scala.collection.JavaConverters._
import scala.collection.mutable.ArrayBuffer

import io.ballista.spark.BallistaConf
import io.ballista.spark.jni.ShuffleFetchException
import io.ballista.spark.proto.{
  NodeMetrics,
  Plan,
  PlanNode,
  Schema => PSchema,
  ShuffleBlock,
  ShuffleRead,
  ShuffleReadBlocks
}
import org.apache.spark.{Partition, SparkEnv, TaskContext}
import org.apache.spark.rdd.RDD
import org.apache.spark.shuffle.FetchFailedException
import org.apache.spark.sql.ballista.execution.{
  NativePlanRDD,
  NativeShuffle,
  ShuffledBlockPartition
}
import org.apache.spark.sql.execution.ShufflePartitionSpec
import org.apache.spark.sql.execution.metric.{SQLMetric, SQLShuffleReadMetricsReporter}
import org.apache.spark.sql.vectorized.ColumnarBatch
import org.apache.spark.storage.{BlockManagerId, ShuffleBlockId}

/** One fetch: contiguous reduce partitions of one map output, on one executor. */
private[ballista] case class BlockFetch(
    address: BlockManagerId,
    mapId: Long,
    mapIndex: Int,
    startReduce: Int,
    endReduce: Int,
    size: Long
) {

  /** Spark's name of the block (or block range), the Flight ticket. */
  def ticket(shuffleId: Int): String =
    if (endReduce == startReduce + 1) ShuffleBlockId(shuffleId, mapId, startReduce).name
    else s"shuffle_${shuffleId}_${mapId}_${startReduce}_$endReduce"
}

/**
 * The blocks one task reads from a native shuffle (`blocks`, a plan's `shuffle_reads` entry),
 * and how the plan's fetch failures and read metrics map back to Spark's.
 */
private[ballista] class FlightRead(
    val blocks: ShuffleReadBlocks,
    fetches: IndexedSeq[BlockFetch],
    shuffleId: Int,
    readMetrics: Map[String, SQLMetric],
    flightMetrics: Map[String, SQLMetric]
) {

  def isEmpty: Boolean = fetches.isEmpty

  /** Spark's fetch failure of the block a native read could not fetch. */
  def failure(e: ShuffleFetchException): Throwable = {
    val f = fetches(e.blockIndex())
    new FetchFailedException(
      f.address,
      shuffleId,
      f.mapId,
      f.mapIndex,
      f.startReduce,
      e.getMessage,
      e
    )
  }

  /**
   * Spark's shuffle read metrics (blocks on this executor count as local) and Flight's, from
   * the metrics of the plan nodes that read these blocks.
   */
  def addMetrics(nodes: Seq[NodeMetrics], context: TaskContext): Unit = {
    val reporter = new SQLShuffleReadMetricsReporter(
      context.taskMetrics().createTempShuffleReadMetrics(),
      readMetrics
    )
    val executorId = SparkEnv.get.executorId
    val (local, remote) = fetches.partition(_.address.executorId == executorId)
    reporter.incLocalBlocksFetched(local.size)
    reporter.incLocalBytesRead(local.map(_.size).sum)
    reporter.incRemoteBlocksFetched(remote.size)
    reporter.incRemoteBytesRead(remote.map(_.size).sum)
    nodes.foreach { node =>
      reporter.incRecordsRead(node.getOutputRows)
      reporter.incFetchWaitTime(node.getFetchWaitNanos / 1000000)
      flightMetrics.get("flightBytesFetched").foreach(_.add(node.getFetchedBytes))
      flightMetrics.get("flightBlocksFetched").foreach(_.add(node.getFetchedBlocks))
      flightMetrics.get("flightFetchRetries").foreach(_.add(node.getFetchRetries))
    }
    // Spark's own readers merge their temporary read metrics into the task's when done.
    context.taskMetrics().mergeShuffleReadMetrics()
  }
}

private[ballista] object FlightRead {

  /**
   * The plan node reading the blocks of the plan's `shuffle_reads(readsIndex)` as `schema`,
   * its metrics under `metricsId` (see `addMetrics`).
   */
  def planNode(readsIndex: Int, schema: PSchema, metricsId: Int): PlanNode =
    PlanNode
      .newBuilder()
      .setShuffleRead(ShuffleRead.newBuilder().setReadsIndex(readsIndex).setSchema(schema))
      .setMetricsId(metricsId)
      .build()
}

/**
 * The reduce side of a native shuffle: one task per partition spec (as for Spark's shuffle
 * reads, so adaptive execution's coalesced and skew-split reads work), each a native plan that
 * fetches the task's blocks from the executors' Flight servers (or, with `readLocalBlocks`, reads
 * those of its own executor from their files) and decodes them. A block that
 * cannot be fetched fails the task with Spark's `FetchFailedException` for it, so Spark
 * re-runs the map tasks whose output was lost.
 */
private[ballista] class FlightShuffleReadRDD(
    @transient private var dependency: NativeShuffleDependency,
    readMetrics: Map[String, SQLMetric],
    flightMetrics: Map[String, SQLMetric],
    specs: Array[ShufflePartitionSpec],
    schema: PSchema,
    sessionTimezone: String,
    batchSize: Int,
    readLocalBlocks: Boolean
) extends RDD[ColumnarBatch](dependency.rdd.context, List(dependency)) {

  private val shuffleId = dependency.shuffleId

  override protected def getPartitions: Array[Partition] =
    specs.zipWithIndex.map { case (spec, i) => new ShuffledBlockPartition(i, spec): Partition }

  override def getPreferredLocations(partition: Partition): Seq[String] =
    NativeShuffle.preferredLocations(
      dependencies.head.asInstanceOf[NativeShuffleDependency],
      partition.asInstanceOf[ShuffledBlockPartition].spec
    )

  override def compute(split: Partition, context: TaskContext): Iterator[ColumnarBatch] = {
    val read = blocksOf(split)
    if (read.isEmpty) return Iterator.empty
    val plan = Plan
      .newBuilder()
      .setRoot(FlightRead.planNode(readsIndex = 0, schema, metricsId = 1))
      .setOutputSchema(schema)
      .setSessionTimezone(sessionTimezone)
      .setBatchSize(batchSize)
      .addShuffleReads(read.blocks)
      .build()
    NativePlanRDD.runTask(
      plan.toByteArray,
      context,
      IndexedSeq.empty,
      onMetrics = metrics => read.addMetrics(metrics.getNodesList.asScala, context),
      fetchFailure = read.failure
    )(_ => Array.empty)
  }

  /**
   * What task `split` reads, for a native plan that fetches the blocks itself (this RDD's own
   * tasks, or a native plan consuming this shuffle directly, see `NativePlanRDD`).
   */
  def blocksOf(split: Partition): FlightRead = {
    val (startMap, endMap, start, end) =
      NativeShuffle.ranges(split.asInstanceOf[ShuffledBlockPartition].spec)
    val fetches = blockFetches(startMap, endMap, start, end)
    val conf = SparkEnv.get.conf
    val read = ShuffleReadBlocks
      .newBuilder()
      .setToken(FlightShuffleService.token)
      .setMaxConcurrentFetches(BallistaConf.FlightMaxConcurrentFetches.get(conf))
      .setMaxBytesInFlight(BallistaConf.FlightMaxBytesInFlight.get(conf))
      .setMaxRetries(BallistaConf.FlightMaxRetries.get(conf))
      .setRetryWaitMs(BallistaConf.FlightRetryWaitMs.get(conf).toLong)
      .setReadLocalBlocks(readLocalBlocks)
    fetches.foreach { f =>
      read.addBlocks(
        ShuffleBlock
          .newBuilder()
          .setHost(f.address.host)
          .setPort(f.address.port)
          .setTicket(f.ticket(shuffleId))
          .setSize(f.size)
      )
    }
    new FlightRead(read.build(), fetches, shuffleId, readMetrics, flightMetrics)
  }

  /**
   * The task's non-empty blocks from the map output tracker (which raises Spark's metadata
   * fetch failure itself when a map output is missing), contiguous reduce partitions of a map
   * output merged into one fetch.
   */
  private def blockFetches(
      startMap: Int,
      endMap: Int,
      start: Int,
      end: Int
  ): IndexedSeq[BlockFetch] = {
    val fetches = ArrayBuffer[BlockFetch]()
    SparkEnv.get.mapOutputTracker
      .getMapSizesByExecutorId(shuffleId, startMap, endMap, start, end)
      .foreach { case (address, blocks) =>
        val ids = blocks.collect {
          case (id: ShuffleBlockId, size, mapIndex) if size > 0 =>
            (id, size, mapIndex)
        }
        ids.groupBy(_._1.mapId).foreach { case (mapId, parts) =>
          val sorted = parts.sortBy(_._1.reduceId)
          var current: Option[BlockFetch] = None
          sorted.foreach { case (id, size, mapIndex) =>
            current match {
              case Some(f) if f.endReduce == id.reduceId =>
                current = Some(f.copy(endReduce = id.reduceId + 1, size = f.size + size))
              case _ =>
                current.foreach(fetches += _)
                current =
                  Some(BlockFetch(address, mapId, mapIndex, id.reduceId, id.reduceId + 1, size))
            }
          }
          current.foreach(fetches += _)
        }
      }
    fetches.toIndexedSeq
  }

  override def clearDependencies(): Unit = {
    super.clearDependencies()
    dependency = null
  }
}
