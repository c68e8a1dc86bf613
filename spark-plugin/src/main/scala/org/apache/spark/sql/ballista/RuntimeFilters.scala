package org.apache.spark.sql.ballista

import io.ballista.spark.BallistaConf
import org.apache.spark.internal.Logging
import org.apache.spark.sql.catalyst.expressions.{
  And,
  BloomFilterMightContain,
  Expression,
  Literal,
  PredicateHelper
}
import org.apache.spark.sql.catalyst.optimizer.BuildLeft
import org.apache.spark.sql.catalyst.plans.logical.{Aggregate, LogicalPlan}
import org.apache.spark.sql.execution.{BaseSubqueryExec, FilterExec, ScalarSubquery, SparkPlan}
import org.apache.spark.sql.execution.adaptive.{AdaptiveSparkPlanExec, QueryStageExec}
import org.apache.spark.sql.execution.exchange.Exchange
import org.apache.spark.sql.execution.joins.BroadcastHashJoinExec
import org.apache.spark.sql.internal.SQLConf

/**
 * Keeps the runtime Bloom filters that pay off, most selective first.
 *
 * Spark's runtime filter tests one join side's rows against a Bloom filter of the other
 * side's keys before the tested side is shuffled. Its subquery computes the filtered
 * (creation) side an extra time, before the tested side may start, and every tested row is
 * hashed and probed: worth it when the filter removes rows that would otherwise be shuffled,
 * out of a side much larger than the one that builds it. Spark chooses runtime filters by
 * absolute sizes only; the plugin lowers Spark's size threshold so that natively built filters
 * apply to smaller scans (see `BallistaConf.RuntimeFilterSettings`), and this drops a filter
 *  - whose tested side's largest scan is less than `spark.ballista.runtimeFilter.minScanRatio`
 *    times the largest scan of the side that builds it (e.g. a filter of a filtered fact
 *    table's keys tested against the dimension table it joins, or against itself), or
 *  - whose tested rows meet a broadcast hash join in the same stage before any exchange: the
 *    broadcast table (filtered, since it is small) already removes rows there, and the Bloom
 *    filter's own rows would mostly go the same way (TPC-H Q8: lineitem joined with one type
 *    of part).
 * Spark's choice stands where no estimate is at hand.
 */
object RuntimeFilters extends PredicateHelper with Logging {

  def apply(plan: SparkPlan, conf: SQLConf): SparkPlan =
    if (!plan.exists(p => p.isInstanceOf[FilterExec] && hasRuntimeFilter(p))) plan
    else rewrite(plan, BallistaConf.RuntimeFilterMinScanRatio.get(conf), intoBroadcast = false)

  private def hasRuntimeFilter(plan: SparkPlan): Boolean =
    plan.expressions.exists(_.exists(_.isInstanceOf[BloomFilterMightContain]))

  /** `plan` with its filters pruned; `intoBroadcast`: its rows meet a broadcast hash join. */
  private def rewrite(plan: SparkPlan, ratio: Int, intoBroadcast: Boolean): SparkPlan = {
    val children = plan match {
      case join: BroadcastHashJoinExec =>
        val streamed = if (join.buildSide == BuildLeft) join.right else join.left
        join.children.map(c => rewrite(c, ratio, intoBroadcast = c eq streamed))
      case _: Exchange | _: QueryStageExec => plan.children.map(rewrite(_, ratio, false))
      case _ => plan.children.map(rewrite(_, ratio, intoBroadcast))
    }
    val rewritten = plan match {
      case filter: FilterExec if hasRuntimeFilter(filter) =>
        val pruned = filter.copy(condition = prune(filter, ratio, intoBroadcast))
        pruned.copyTagsFrom(filter)
        pruned
      case _ => plan
    }
    if (children.zip(rewritten.children).forall { case (a, b) => a eq b }) rewritten
    else rewritten.withNewChildren(children)
  }

  /**
   * `filter`'s condition without the runtime filters that do not pay off, the others last,
   * those built from the smallest scans first: a native `AND` tests its right side only on the
   * rows its left side kept when few are, so the most selective test goes first.
   */
  private def prune(filter: FilterExec, ratio: Int, intoBroadcast: Boolean): Expression = {
    val (runtimeFilters, others) = splitConjunctivePredicates(filter.condition)
      .partition(_.isInstanceOf[BloomFilterMightContain])
    val testedScan = filter.logicalLink.map(largestScan)
    val kept = runtimeFilters
      .map(f => f -> creationSide(f).map(largestScan))
      .filter { case (_, buildingScan) => paysOff(buildingScan, testedScan, ratio, intoBroadcast) }
      .sortBy { case (_, buildingScan) => buildingScan.getOrElse(BigInt(Long.MaxValue)) }
      .map(_._1)
    (others ++ kept).reduceOption(And).getOrElse(Literal.TrueLiteral)
  }

  private def paysOff(
      buildingScan: Option[BigInt],
      testedScan: Option[BigInt],
      ratio: Int,
      intoBroadcast: Boolean
  ): Boolean = {
    val reason = (buildingScan, testedScan) match {
      case _ if intoBroadcast =>
        Some("its rows meet a broadcast hash join before they are shuffled")
      case (Some(building), Some(tested)) if tested < building * ratio =>
        Some(
          s"the largest scan it tests ($tested bytes) is less than ${ratio}x the largest " +
            s"scan that builds it ($building bytes)"
        )
      case _ => None
    }
    reason.foreach(r => logInfo(s"Ballista: runtime filter dropped: $r"))
    reason.isEmpty
  }

  private def largestScan(plan: LogicalPlan): BigInt =
    plan.collectLeaves().map(_.stats.sizeInBytes).max

  /** The rows the runtime filter `f`'s subquery aggregates into its Bloom filter. */
  private def creationSide(f: Expression): Option[LogicalPlan] = {
    def of(plan: SparkPlan): Option[LogicalPlan] = plan match {
      case subquery: BaseSubqueryExec => of(subquery.child)
      case adaptive: AdaptiveSparkPlanExec => of(adaptive.inputPlan)
      case p => p.logicalLink.flatMap(_.collectFirst { case a: Aggregate => a.child })
    }
    f.collectFirst { case s: ScalarSubquery => of(s.plan) }.flatten
  }
}
