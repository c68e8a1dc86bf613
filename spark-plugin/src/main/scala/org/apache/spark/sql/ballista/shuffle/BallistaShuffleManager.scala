package org.apache.spark.sql.ballista.shuffle

import java.util.concurrent.ConcurrentHashMap

import scala.collection.JavaConverters._

import org.apache.spark.{ShuffleDependency, SparkConf, TaskContext}
import org.apache.spark.internal.Logging
import org.apache.spark.shuffle._
import org.apache.spark.shuffle.sort.SortShuffleManager

/**
 * Spark's shuffle manager with native shuffles over Arrow Flight. Set it with
 * `--conf spark.shuffle.manager=org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager`
 * (with `spark.plugins=ballista`).
 *
 * Exchanges of native plans register a [[NativeShuffleDependency]]: their map tasks write Arrow
 * IPC map output files natively (Spark's data + index layout in its local directories, so
 * Spark commits, tracks and deletes them like its own), each executor's Flight server serves
 * them, and reduce tasks fetch them natively ([[FlightShuffleReadRDD]]). Every other shuffle
 * is Spark's sort shuffle, unchanged.
 */
class BallistaShuffleManager(conf: SparkConf) extends ShuffleManager with Logging {

  private val sort = new SortShuffleManager(conf)

  /** The map ids of the native map outputs written here, by shuffle, to delete them. */
  private val nativeMapIds =
    new ConcurrentHashMap[Int, ConcurrentHashMap.KeySetView[Long, java.lang.Boolean]]()

  override val shuffleBlockResolver: IndexShuffleBlockResolver = sort.shuffleBlockResolver

  override def registerShuffle[K, V, C](
      shuffleId: Int,
      dependency: ShuffleDependency[K, V, C]
  ): ShuffleHandle = dependency match {
    case native: NativeShuffleDependency => new NativeShuffleHandle(shuffleId, native)
    case _ => sort.registerShuffle(shuffleId, dependency)
  }

  override def getWriter[K, V](
      handle: ShuffleHandle,
      mapId: Long,
      context: TaskContext,
      metrics: ShuffleWriteMetricsReporter
  ): ShuffleWriter[K, V] = handle match {
    case native: NativeShuffleHandle =>
      nativeMapIds
        .computeIfAbsent(native.shuffleId, _ => ConcurrentHashMap.newKeySet[Long]())
        .add(mapId)
      new FlightShuffleWriter(native, mapId, shuffleBlockResolver, metrics)
        .asInstanceOf[ShuffleWriter[K, V]]
    case _ => sort.getWriter(handle, mapId, context, metrics)
  }

  override def getReader[K, C](
      handle: ShuffleHandle,
      startMapIndex: Int,
      endMapIndex: Int,
      startPartition: Int,
      endPartition: Int,
      context: TaskContext,
      metrics: ShuffleReadMetricsReporter
  ): ShuffleReader[K, C] = handle match {
    case _: NativeShuffleHandle =>
      throw new UnsupportedOperationException(
        "native shuffles are read natively over Arrow Flight, not through Spark's reader"
      )
    case _ =>
      sort.getReader(
        handle,
        startMapIndex,
        endMapIndex,
        startPartition,
        endPartition,
        context,
        metrics
      )
  }

  override def unregisterShuffle(shuffleId: Int): Boolean = {
    Option(nativeMapIds.remove(shuffleId)).foreach { mapIds =>
      FlightShuffleService.forgetShuffle(shuffleId)
      mapIds.asScala.foreach(mapId => shuffleBlockResolver.removeDataByMap(shuffleId, mapId))
    }
    sort.unregisterShuffle(shuffleId)
  }

  override def stop(): Unit = sort.stop()
}

/** The handle of a native shuffle. */
private[ballista] class NativeShuffleHandle(shuffleId: Int, val native: NativeShuffleDependency)
    extends BaseShuffleHandle[Int, NativeMapTask, NativeMapTask](shuffleId, native)
