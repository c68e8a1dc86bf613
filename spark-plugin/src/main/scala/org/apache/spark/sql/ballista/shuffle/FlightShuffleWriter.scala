package org.apache.spark.sql.ballista.shuffle

import org.apache.spark.{Partition, Partitioner, ShuffleDependency, SparkEnv, TaskContext}
import org.apache.spark.rdd.RDD
import org.apache.spark.scheduler.MapStatus
import org.apache.spark.shuffle.{
  IndexShuffleBlockResolver,
  ShuffleWriteMetricsReporter,
  ShuffleWriteProcessor,
  ShuffleWriter
}
import org.apache.spark.sql.ballista.execution.NativePlanRDD
import org.apache.spark.sql.execution.metric.SQLMetric
import org.apache.spark.util.Utils

/**
 * A native shuffle's dependency: its map tasks run the native plan of a `ShuffleWriter`
 * (`writer`), which writes the map output file itself.
 */
private[ballista] class NativeShuffleDependency(
    val writer: NativeShuffleMapRDD,
    partitioner: Partitioner,
    writeProcessor: ShuffleWriteProcessor
) extends ShuffleDependency[Int, NativeMapTask, NativeMapTask](
      writer,
      partitioner,
      shuffleWriterProcessor = writeProcessor
    )

/** What a map task runs: the native plan, writing its map output to a given data file. */
private[ballista] class NativeMapTask(
    plan: NativePlanRDD,
    split: Partition,
    context: TaskContext,
    dataSize: SQLMetric,
    numOutputRows: SQLMetric
) {

  /** Writes the map output to `dataFile`; the partitions' lengths and the rows written. */
  def run(dataFile: String): (Array[Long], Long) = {
    val (lengths, rows) = plan.writeMapOutput(split, context, dataFile)
    dataSize += lengths.sum
    numOutputRows += rows
    (lengths, rows)
  }
}

/**
 * The map side of a native shuffle as Spark's shuffle writer sees it: one record per task,
 * the [[NativeMapTask]] that the [[FlightShuffleWriter]] runs.
 */
private[ballista] class NativeShuffleMapRDD(
    val plan: NativePlanRDD,
    dataSize: SQLMetric,
    numOutputRows: SQLMetric
) extends RDD[Product2[Int, NativeMapTask]](plan) {

  override protected def getPartitions: Array[Partition] = plan.partitions

  override protected def getPreferredLocations(split: Partition): Seq[String] =
    plan.preferredLocations(split)

  override def compute(
      split: Partition,
      context: TaskContext
  ): Iterator[Product2[Int, NativeMapTask]] =
    Iterator((0, new NativeMapTask(plan, split, context, dataSize, numOutputRows)))
}

/**
 * Runs a native map task into a temporary data file, then commits it with Spark's resolver
 * (which writes the index file and renames both into place, keeping an earlier attempt's
 * output if there is one), makes it servable over Flight and reports the real partition sizes
 * in the map status.
 */
private[ballista] class FlightShuffleWriter(
    handle: NativeShuffleHandle,
    mapId: Long,
    resolver: IndexShuffleBlockResolver,
    metrics: ShuffleWriteMetricsReporter
) extends ShuffleWriter[Int, NativeMapTask] {

  private var status: Option[MapStatus] = None
  private var lengths: Array[Long] = Array.empty

  override def write(records: Iterator[Product2[Int, NativeMapTask]]): Unit = {
    val shuffleId = handle.shuffleId
    val dataFile = resolver.getDataFile(shuffleId, mapId)
    val temporary = Utils.tempFileWith(dataFile)
    val start = System.nanoTime()
    try {
      var rows = 0L
      var written = Array.fill(handle.native.partitioner.numPartitions)(0L)
      records.foreach { record =>
        val (partitionLengths, taskRows) = record._2.run(temporary.getAbsolutePath)
        written = partitionLengths
        rows += taskRows
      }
      if (written.length != handle.native.partitioner.numPartitions) {
        throw new IllegalStateException(
          s"native map output has ${written.length} partitions, not " +
            s"${handle.native.partitioner.numPartitions}"
        )
      }
      // Replaced in place by an earlier attempt's lengths if that one committed first.
      resolver.writeMetadataFileAndCommit(shuffleId, mapId, written, Array.empty, temporary)
      lengths = written
      metrics.incBytesWritten(written.sum)
      metrics.incRecordsWritten(rows)
    } finally {
      if (temporary.exists() && !temporary.delete()) temporary.deleteOnExit()
    }
    metrics.incWriteTime(System.nanoTime() - start)
    FlightShuffleService.register(
      shuffleId,
      mapId,
      dataFile.getAbsolutePath,
      resolver.getIndexFile(shuffleId, mapId).getAbsolutePath
    )
    val location = FlightShuffleService.location(SparkEnv.get.blockManager.shuffleServerId)
    status = Some(MapStatus(location, lengths, mapId))
  }

  override def stop(success: Boolean): Option[MapStatus] = if (success) status else None

  override def getPartitionLengths(): Array[Long] = lengths
}
