package org.apache.spark.sql.ballista

import scala.util.Try

import io.ballista.spark.BallistaConf
import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.execution.SampledScanRows
import org.apache.spark.sql.catalyst.expressions.{Expression, SubqueryExpression}
import org.apache.spark.sql.catalyst.optimizer.JoinSelectionHelper
import org.apache.spark.sql.catalyst.planning.ExtractEquiJoinKeys
import org.apache.spark.sql.catalyst.plans.logical.{
  BROADCAST,
  Filter,
  HintInfo,
  Join,
  JoinHint,
  LogicalPlan,
  Project
}
import org.apache.spark.sql.catalyst.plans.logical.statsEstimation.EstimationUtils
import org.apache.spark.sql.catalyst.rules.Rule
import org.apache.spark.sql.catalyst.trees.TreePattern.JOIN
import org.apache.spark.sql.execution.datasources.{HadoopFsRelation, LogicalRelation}

/**
 * Broadcasts an equi-join's side that a filter makes small, which Spark cannot see before the
 * query runs.
 *
 * Without collected column statistics Spark sizes a filtered scan as the whole scan, so a
 * join between a large table and a selectively filtered one (TPC-H's parts of one brand and
 * container, line items of one month) is planned with both sides shuffled: adaptive execution
 * measures the filtered side and may broadcast it, but only after the large side's shuffle has
 * been written. Here, while the query is optimized, a filtered Parquet scan that is a join
 * side gets its rows estimated from a sample read natively ([[SampledScanRows]]); if Spark's
 * size of those rows is at most `spark.ballista.join.sampledBroadcastThreshold`, the join gets
 * a broadcast hint for that side, as if the user had written one, and the large side streams
 * through a broadcast hash join without a shuffle.
 *
 * Only where Spark would broadcast neither side, broadcasts are not switched off
 * (`spark.sql.autoBroadcastJoinThreshold` -1) and the user gave no hint; the side must be
 * one the join type can build from (as for Spark's own broadcasts). It runs before Spark's
 * runtime filters are injected, which only target joins that shuffle.
 */
case class SampledBroadcasts(session: SparkSession)
    extends Rule[LogicalPlan]
    with JoinSelectionHelper {

  override def apply(plan: LogicalPlan): LogicalPlan = {
    val conf = session.sessionState.conf
    val threshold = BallistaConf.SampledBroadcastThreshold.get(conf)
    // A negative autoBroadcastJoinThreshold: the user wants no broadcasts Spark did not plan.
    if (!BallistaConf.Enabled.get(conf) || threshold <= 0 || conf.autoBroadcastJoinThreshold < 0) {
      plan
    } else {
      plan.transformUpWithPruning(_.containsPattern(JOIN)) {
        case j: Join if j.hint == JoinHint.NONE && ExtractEquiJoinKeys.unapply(j).isDefined =>
          // (side, the other side, whether the side is the left one) for the sides it can build.
          val buildable = Seq(
            (j.left, j.right, true, canBuildBroadcastLeft(j.joinType)),
            (j.right, j.left, false, canBuildBroadcastRight(j.joinType))
          ).collect { case (side, other, isLeft, true) => (side, other, isLeft) }
          val candidates = buildable.flatMap { case (side, other, isLeft) =>
            filteredScan(side).map(scan => (side, other, scan, isLeft))
          }
          // Spark's sizes only once a side may be sampled (not every plan reports one yet).
          lazy val sparkBroadcasts = Try(
            canBroadcastBySize(j.left, conf) || canBroadcastBySize(j.right, conf)
          ).getOrElse(true)
          val small =
            if (candidates.isEmpty || sparkBroadcasts) Nil
            else {
              candidates.flatMap { case (side, other, scan, isLeft) =>
                estimatedBytes(side, scan)
                  .filter { case (b, _) =>
                    b <= threshold &&
                    Try(BigInt(b) * OtherSideRatio <= other.stats.sizeInBytes).getOrElse(false)
                  }
                  .map(_ -> isLeft)
              }
            }
          if (small.isEmpty) j
          else {
            val ((bytes, sample), isLeft) = small.minBy(_._1._1)
            logInfo(
              s"Ballista: broadcasting the ${if (isLeft) "left" else "right"} side of the " +
                s"${j.joinType} join, $bytes bytes as sampled ($sample)"
            )
            val broadcast = Some(HintInfo(strategy = Some(BROADCAST)))
            j.copy(hint = if (isLeft) JoinHint(broadcast, None) else JoinHint(None, broadcast))
          }
      }
    }
  }

  /**
   * How many times smaller than the other side (as Spark sizes it) a sampled side must be:
   * every task of the other side builds its own hash table of the broadcast, which costs
   * about what shuffling both sides would once the two are of a size.
   */
  private val OtherSideRatio = 8

  /** A filter over a file table's scan, under a projection or not, the shape sampled. */
  final private case class FilteredScan(
      condition: Expression,
      scan: LogicalRelation,
      fs: HadoopFsRelation
  )

  private def filteredScan(side: LogicalPlan): Option[FilteredScan] = {
    val filter = side match {
      case Project(list, f: Filter) if list.forall(_.deterministic) => Some(f)
      case f: Filter => Some(f)
      case _ => None
    }
    for {
      Filter(condition, relation: LogicalRelation) <- filter
      fs <- Some(relation.relation).collect { case fs: HadoopFsRelation => fs }
      if sampleable(condition)
    } yield FilteredScan(condition, relation, fs)
  }

  /** Spark's size of the rows `side`'s filtered scan keeps, with the sample it comes from. */
  private def estimatedBytes(
      side: LogicalPlan,
      filtered: FilteredScan
  ): Option[(Long, SampledScanRows.Sample)] =
    for {
      sample <- SampledScanRows.sample(
        session,
        filtered.fs,
        filtered.scan.output,
        filtered.condition
      )
      // No sampled row passing says little of the others (the rows the filter keeps may all
      // lie between the samples, as in a table sorted by the filtered column): no estimate.
      if sample.passed > 0
    } yield {
      val bytes = sample.upperRows * EstimationUtils.getSizePerRow(side.output).toDouble
      (bytes.toLong, sample)
    }

  private def sampleable(condition: Expression): Boolean =
    condition.deterministic && !SubqueryExpression.hasSubquery(condition)
}
