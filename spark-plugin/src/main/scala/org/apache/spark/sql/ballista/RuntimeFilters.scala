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
import org.apache.spark.sql.catalyst.plans.logical.{Aggregate, LogicalPlan}
import org.apache.spark.sql.execution.{BaseSubqueryExec, FilterExec, ScalarSubquery, SparkPlan}
import org.apache.spark.sql.execution.adaptive.AdaptiveSparkPlanExec
import org.apache.spark.sql.internal.SQLConf

/**
 * Keeps the runtime Bloom filters of a native filter that pay off.
 *
 * Spark's runtime filter tests one join side's rows against a Bloom filter of the other
 * side's keys before the tested side is shuffled. Its subquery computes the filtered
 * (creation) side an extra time, and every row of the tested (application) side is hashed
 * and probed: worth it when the tested side is much larger, so that few of its rows are
 * shuffled for nothing. Spark chooses runtime filters by absolute sizes only, and without
 * column statistics it estimates a filtered scan as large as the whole scan; the plugin lowers
 * Spark's size threshold so that natively built filters apply to smaller scans (see
 * `BallistaConf.RuntimeFilterSettings`), and this drops each filter whose application side's
 * largest scan is less than `spark.ballista.runtimeFilter.minScanRatio` times the creation
 * side's estimated size, such as a filter of a filtered fact table's keys tested against the
 * dimension table it joins. Where no estimate is at hand, Spark's choice stands.
 */
object RuntimeFilters extends PredicateHelper with Logging {

  /** `filter`'s condition without the runtime filters that do not pay off. */
  def prune(filter: FilterExec, conf: SQLConf): Expression = {
    val conjuncts = splitConjunctivePredicates(filter.condition)
    val kept = conjuncts.filter {
      case m: BloomFilterMightContain => paysOff(m, filter, conf)
      case _ => true
    }
    if (kept.size == conjuncts.size) filter.condition
    else kept.reduceOption(And).getOrElse(Literal.TrueLiteral)
  }

  private def paysOff(m: BloomFilterMightContain, filter: FilterExec, conf: SQLConf): Boolean = {
    val ratio = BallistaConf.RuntimeFilterMinScanRatio.get(conf)
    val creationSize = m.bloomFilterExpression.collectFirst { case s: ScalarSubquery =>
      creationSide(s.plan).map(_.stats.sizeInBytes)
    }.flatten
    val applicationScan = filter.logicalLink.map(_.collectLeaves().map(_.stats.sizeInBytes).max)
    (creationSize, applicationScan) match {
      case (Some(creation), Some(scan)) if scan < creation * ratio =>
        logInfo(
          s"Ballista: runtime filter dropped: the tested side's largest scan ($scan bytes) is " +
            s"less than ${ratio}x the filter's creation side ($creation bytes, estimated)"
        )
        false
      case _ => true
    }
  }

  /** The rows a runtime filter's subquery aggregates into its Bloom filter. */
  private def creationSide(plan: SparkPlan): Option[LogicalPlan] = plan match {
    case subquery: BaseSubqueryExec => creationSide(subquery.child)
    case adaptive: AdaptiveSparkPlanExec => creationSide(adaptive.inputPlan)
    case p => p.logicalLink.flatMap(_.collectFirst { case a: Aggregate => a.child })
  }
}
