package org.apache.spark.sql.ballista.ui

import java.util.concurrent.ConcurrentHashMap

import scala.collection.JavaConverters._

/**
 * The native engine of one executor (or of the driver), as the executor last reported it. It is
 * the message executors send the driver plugin, hence serializable (a case class is).
 *
 * @param flightEndpoint the executor's Arrow Flight endpoint, once native shuffles serve one
 * @param nativeMemoryInUse native heap bytes in use, -1 if the library cannot tell
 * @param nativeMemoryPeak highest native heap bytes in use so far, -1 if the library cannot tell
 * @param reportedAt when the executor took these figures (epoch milliseconds)
 */
case class ExecutorNativeStatus(
    executorId: String,
    host: String,
    nativeVersion: String,
    nativeLibraryPath: String,
    flightEndpoint: Option[String],
    nativeMemoryInUse: Long,
    nativeMemoryPeak: Long,
    reportedAt: Long
)

/** An operator that stayed in Spark, and why. */
case class Fallback(operator: String, reason: String)

/**
 * An operator of an executed plan as the Ballista tab shows it (adaptive execution's and
 * Spark's transitions' plumbing left out).
 *
 * @param fallbackReason why the operator stayed in Spark, if the plugin tried to translate it
 * @param children the operator's inputs, then the plans of its subqueries
 */
case class OperatorNode(
    name: String,
    native: Boolean,
    fallbackReason: Option[String],
    children: Seq[OperatorNode]
) {

  /** This operator and all below it, parents first. */
  def preorder: Seq[OperatorNode] = this +: children.flatMap(_.preorder)
}

/**
 * One SQL execution: what Spark announced when it started, then its plan once it ended.
 *
 * @param plan the roots of the executed plan; empty while running or if the plan is unknown
 * @param error why the execution failed, if it did
 */
case class ExecutionSummary(
    id: Long,
    description: String,
    startTime: Long,
    endTime: Option[Long],
    error: Option[String],
    plan: Seq[OperatorNode]
) {

  def status: String = (endTime, error) match {
    case (None, _) => "running"
    case (Some(_), None) => "succeeded"
    case (Some(_), Some(_)) => "failed"
  }

  def durationMs: Option[Long] = endTime.map(_ - startTime)

  private lazy val operators: Seq[OperatorNode] = plan.flatMap(_.preorder)

  lazy val fallbacks: Seq[Fallback] =
    operators.flatMap(op => op.fallbackReason.map(Fallback(op.name, _)))

  lazy val nativeOperatorCount: Int = operators.count(_.native)

  def fallbackCount: Int = fallbacks.size
}

/**
 * What the Ballista tab and its REST API show, for one Spark application: the latest report of
 * each executor's native engine and the last `retainedExecutions` SQL executions. Thread-safe:
 * executors' reports arrive on the driver's RPC threads, executions on the listener bus, reads on
 * the UI's HTTP threads.
 */
class BallistaStatusStore(retainedExecutions: Int) {
  require(retainedExecutions > 0, s"retainedExecutions must be positive: $retainedExecutions")

  private val executorsById = new ConcurrentHashMap[String, ExecutorNativeStatus]()

  // Insertion order is start order; the oldest is dropped beyond the limit. Guarded by itself.
  private val executionsById = new java.util.LinkedHashMap[Long, ExecutionSummary]() {
    override def removeEldestEntry(eldest: java.util.Map.Entry[Long, ExecutionSummary]): Boolean =
      size() > retainedExecutions
  }

  def updateExecutor(status: ExecutorNativeStatus): Unit =
    executorsById.put(status.executorId, status)

  def removeExecutor(executorId: String): Unit = executorsById.remove(executorId)

  /** The executors' latest reports, the driver first, then by executor id. */
  def executors: Seq[ExecutorNativeStatus] =
    executorsById.values.asScala.toSeq.sortBy { s =>
      val numericId = scala.util.Try(s.executorId.toLong).getOrElse(Long.MaxValue)
      (s.executorId != "driver", numericId, s.executorId)
    }

  def executionStarted(id: Long, description: String, time: Long): Unit =
    executionsById.synchronized {
      executionsById.put(id, ExecutionSummary(id, description, time, None, None, Nil))
    }

  /** Records the end of an execution; one whose start was not seen is recorded as well. */
  def executionEnded(id: Long, time: Long, error: Option[String], plan: Seq[OperatorNode]): Unit =
    executionsById.synchronized {
      val started =
        Option(executionsById.get(id)).getOrElse(ExecutionSummary(id, "", time, None, None, Nil))
      executionsById.put(id, started.copy(endTime = Some(time), error = error, plan = plan))
    }

  /** The retained executions, the most recent first. */
  def executions: Seq[ExecutionSummary] =
    executionsById.synchronized(executionsById.values.asScala.toVector).reverse

  def execution(id: Long): Option[ExecutionSummary] =
    executionsById.synchronized(Option(executionsById.get(id)))
}
