package org.apache.spark.sql.ballista

import io.ballista.spark.BallistaConf
import org.apache.spark.internal.Logging
import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.execution._
import org.apache.spark.sql.catalyst.rules.Rule
import org.apache.spark.sql.catalyst.trees.TreeNodeTag
import org.apache.spark.sql.execution.{
  ColumnarRule,
  ColumnarToRowTransition,
  InputAdapter,
  LocalTableScanExec,
  RowToColumnarExec,
  RowToColumnarTransition,
  SparkPlan,
  WholeStageCodegenExec
}
import org.apache.spark.sql.execution.adaptive.{
  AQEShuffleReadExec,
  AdaptiveSparkPlanExec,
  QueryStageExec
}
import org.apache.spark.sql.execution.exchange.ReusedExchangeExec

/**
 * Where Ballista enters Spark's planning: before Spark inserts row/columnar transitions,
 * supported operators become native ones ([[PlanTranslator]]); after, the row-to-columnar
 * transitions Spark put below native operators are removed, because native operators read
 * rows themselves, as Arrow.
 */
case class BallistaColumnarRule(session: SparkSession) extends ColumnarRule {
  override def preColumnarTransitions: Rule[SparkPlan] = PlanTranslator(session)

  override def postColumnarTransitions: Rule[SparkPlan] = RemoveRowToColumnarBelowNative
}

object RemoveRowToColumnarBelowNative extends Rule[SparkPlan] {
  override def apply(plan: SparkPlan): SparkPlan = plan.transformUp {
    case native @ NativeOperator() =>
      val children = native.children.map {
        case RowToColumnarExec(child) => child
        case other => other
      }
      if (children == native.children) native else native.withNewChildren(children)
  }
}

/** Replaces every supported operator by its native counterpart and records why others stay. */
case class PlanTranslator(session: SparkSession) extends Rule[SparkPlan] with Logging {

  override def apply(plan: SparkPlan): SparkPlan = {
    if (!BallistaConf.Enabled.get(conf)) {
      plan
    } else {
      val sortsChosen = SmallFinalSorts(plan, conf)
      val joinsChosen = RuntimeFilters(
        LiftSemiJoins(ReplaceSortMergeJoin(session)(sortsChosen, conf), conf),
        conf
      )
      Operators.markNativeBroadcasts(joinsChosen)
      joinsChosen.transformUp { case operator => translate(operator) }
    }
  }

  private def translate(operator: SparkPlan): SparkPlan = operator match {
    case native @ NativeOperator() => native
    case PlanPlumbing() => operator
    // Constant rows (also what adaptive execution leaves of an empty input): native operators
    // read them as Arrow, nothing to compute.
    case _: LocalTableScanExec => operator
    case _ =>
      Operators.translate(operator, conf) match {
        case Right(native) =>
          // Adaptive execution finds query stages' logical plans through these tags.
          native.copyTagsFrom(operator)
          native
        case Left(reason) =>
          Fallbacks.record(operator, reason)
          logInfo(s"Ballista: ${operator.nodeName} stays in Spark: $reason")
          // Shown in EXPLAIN beside the native operators right below it.
          val children = operator.children.map {
            case native: BallistaExec => native.withParentFallback(s"${operator.nodeName}: $reason")
            case other => other
          }
          if (children == operator.children) operator else operator.withNewChildren(children)
      }
  }
}

/** Matches the operators that run natively. */
object NativeOperator {
  def unapply(plan: SparkPlan): Boolean = plan match {
    case _: BallistaExec | _: ArrowOutput | _: BallistaShuffleExchangeExec |
        _: BallistaBroadcastExchangeExec =>
      true
    case _ => false
  }
}

/**
 * Matches the plumbing of adaptive execution and Spark's own transitions and reuse: nodes that
 * are not operators to run natively, nor fallbacks.
 */
object PlanPlumbing {
  def unapply(plan: SparkPlan): Boolean = plan match {
    case _: AdaptiveSparkPlanExec | _: QueryStageExec | _: AQEShuffleReadExec |
        _: ColumnarToRowTransition | _: RowToColumnarTransition | _: InputAdapter |
        _: WholeStageCodegenExec | _: ReusedExchangeExec =>
      true
    case _ => false
  }
}

/** Why operators stayed in Spark, kept on the operators themselves. */
object Fallbacks {
  val ReasonTag: TreeNodeTag[String] = TreeNodeTag[String]("ballista.fallbackReason")

  def record(operator: SparkPlan, reason: String): Unit = operator.setTagValue(ReasonTag, reason)

  /** Every operator of `plan` (including AQE stages) that stayed in Spark, with the reason. */
  def of(plan: SparkPlan): Seq[(String, String)] = {
    val found = scala.collection.mutable.ArrayBuffer[(String, String)]()
    def visit(p: SparkPlan): Unit = {
      p.getTagValue(ReasonTag).foreach(r => found += (p.nodeName -> r))
      p match {
        case a: org.apache.spark.sql.execution.adaptive.AdaptiveSparkPlanExec =>
          visit(a.executedPlan)
        case s: org.apache.spark.sql.execution.adaptive.QueryStageExec => visit(s.plan)
        case _ =>
      }
      p.children.foreach(visit)
      p.subqueries.foreach(visit)
    }
    visit(plan)
    found.toSeq
  }
}
