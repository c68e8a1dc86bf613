package org.apache.spark.sql.ballista.ui

import scala.util.control.NonFatal

import org.apache.spark.internal.Logging
import org.apache.spark.scheduler.{SparkListener, SparkListenerEvent, SparkListenerExecutorRemoved}
import org.apache.spark.sql.ballista.{Fallbacks, NativeOperator, PlanPlumbing}
import org.apache.spark.sql.execution.SparkPlan
import org.apache.spark.sql.execution.adaptive.{AdaptiveSparkPlanExec, QueryStageExec}
import org.apache.spark.sql.execution.exchange.ReusedExchangeExec
import org.apache.spark.sql.execution.ui.{
  SparkListenerSQLExecutionEnd,
  SparkListenerSQLExecutionStart
}

/**
 * Records SQL executions into the store: their start, then, at their end, the executed plan's
 * native operators and fallbacks. Also forgets executors Spark removed.
 */
class BallistaExecutionListener(store: BallistaStatusStore) extends SparkListener with Logging {

  override def onOtherEvent(event: SparkListenerEvent): Unit = event match {
    case start: SparkListenerSQLExecutionStart =>
      store.executionStarted(start.executionId, start.description, start.time)
    case end: SparkListenerSQLExecutionEnd =>
      // Spark reports success as an empty error message.
      val error =
        end.errorMessage.filter(_.nonEmpty).orElse(end.executionFailure.map(_.toString))
      store.executionEnded(end.executionId, end.time, error, executedPlan(end))
    case _ =>
  }

  override def onExecutorRemoved(event: SparkListenerExecutorRemoved): Unit =
    store.removeExecutor(event.executorId)

  /** The plan tree of an ended execution; empty when Spark gives no query execution. */
  private def executedPlan(end: SparkListenerSQLExecutionEnd): Seq[OperatorNode] =
    Option(end.qe) match {
      case None => Nil
      case Some(qe) =>
        try {
          OperatorTree.of(qe.executedPlan)
        } catch {
          // When planning itself failed, reading the plan fails again: no plan to show.
          case NonFatal(e) =>
            logDebug(s"No executed plan for SQL execution ${end.executionId}", e)
            Nil
        }
    }
}

/** Turns executed plans into the operator trees the Ballista tab shows. */
object OperatorTree {

  /**
   * The operators of `plan`, including those inside adaptive query stages and subqueries. Plumbing
   * nodes are left out (their inputs take their place), except reused exchanges, which stand for
   * the exchange they reuse.
   */
  def of(plan: SparkPlan): Seq[OperatorNode] = plan match {
    case reused: ReusedExchangeExec => Seq(node(reused, Nil))
    case adaptive: AdaptiveSparkPlanExec => of(adaptive.executedPlan)
    case stage: QueryStageExec => of(stage.plan)
    case plumbing @ PlanPlumbing() => inputs(plumbing)
    case operator => Seq(node(operator, inputs(operator)))
  }

  private def inputs(plan: SparkPlan): Seq[OperatorNode] =
    (plan.children ++ plan.subqueries).flatMap(of)

  private def node(operator: SparkPlan, children: Seq[OperatorNode]): OperatorNode =
    OperatorNode(
      operator.nodeName,
      native = NativeOperator.unapply(operator),
      fallbackReason = operator.getTagValue(Fallbacks.ReasonTag),
      children
    )
}
