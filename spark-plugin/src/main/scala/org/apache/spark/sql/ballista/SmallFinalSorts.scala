package org.apache.spark.sql.ballista

import io.ballista.spark.BallistaConf
import org.apache.spark.internal.Logging
import org.apache.spark.sql.ballista.execution.{BallistaSingleTaskReadExec, MeasuredInput}
import org.apache.spark.sql.catalyst.plans.physical.RangePartitioning
import org.apache.spark.sql.execution.{ProjectExec, SortExec, SparkPlan, UnaryExecNode}
import org.apache.spark.sql.execution.adaptive.ShuffleQueryStageExec
import org.apache.spark.sql.execution.exchange.{ENSURE_REQUIREMENTS, ShuffleExchangeExec}
import org.apache.spark.sql.internal.SQLConf

/**
 * Sorts a query's small final result in the task that reads it, without a range exchange.
 *
 * A query's `ORDER BY` is a global sort over a range exchange: one more stage, which writes
 * its input to a range shuffle, for a last stage that sorts each range. Where adaptive
 * execution has measured that input at most `spark.ballista.exchange.unsampledRangeMaxBytes`
 * (query stages read through operators that do not multiply rows, as for an aggregated
 * result), the exchange sends every row to one partition anyway (see `NativeShuffle`): its
 * stage is only a detour, which costs more than the sort over a result of a few rows. Here
 * that exchange goes, and the stage below is read by one task ([[BallistaSingleTaskReadExec]],
 * a single partition): the sort's input is all in one partition, as the global sort requires,
 * one stage sooner.
 *
 * Only for the plan's root sort (under projections): no parent expects its output
 * range-partitioned.
 */
object SmallFinalSorts extends Logging {

  def apply(plan: SparkPlan, conf: SQLConf): SparkPlan = {
    val maxBytes = BallistaConf.UnsampledRangeMaxBytes.get(conf)
    if (maxBytes <= 0 || !BallistaConf.SmallFinalSortInOneTask.get(conf)) plan
    else rewrite(plan, maxBytes)
  }

  private def rewrite(plan: SparkPlan, maxBytes: Long): SparkPlan = plan match {
    case project: ProjectExec =>
      val child = rewrite(project.child, maxBytes)
      if (child eq project.child) project else project.withNewChildren(Seq(child))
    case sort @ SortExec(_, true, ShuffleExchangeExec(_: RangePartitioning, input, origin, _), _)
        if origin == ENSURE_REQUIREMENTS && MeasuredInput.bytes(input).exists(_ <= maxBytes) =>
      readInOneTask(input).fold(plan) { read =>
        logDebug("Ballista: the final sort runs in one task, without its range exchange")
        sort.withNewChildren(Seq(read))
      }
    case _ => plan
  }

  /** `plan` reading the one shuffle stage below it in a single task. */
  private def readInOneTask(plan: SparkPlan): Option[SparkPlan] = plan match {
    case stage: ShuffleQueryStageExec => Some(BallistaSingleTaskReadExec(stage))
    case unary: UnaryExecNode => readInOneTask(unary.child).map(c => unary.withNewChildren(Seq(c)))
    case _ => None
  }
}
