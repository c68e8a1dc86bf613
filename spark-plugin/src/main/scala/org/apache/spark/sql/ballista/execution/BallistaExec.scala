package org.apache.spark.sql.ballista.execution

import io.ballista.spark.proto.PlanNode
import org.apache.spark.rdd.RDD
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{Attribute, SortOrder}
import org.apache.spark.sql.catalyst.plans.physical.{Distribution, Partitioning}
import org.apache.spark.sql.execution.{LeafExecNode, SparkPlan}
import org.apache.spark.sql.execution.metric.SQLMetric
import org.apache.spark.sql.vectorized.ColumnarBatch

/**
 * A Spark operator executed by the native engine. Adjacent native operators form one native
 * plan: the topmost one, when Spark asks it for batches, serializes the whole native subtree
 * and runs it per task (see [[NativePlanRDD]]); operators below it never execute on their own.
 *
 * Each keeps the Spark operator it replaces (`original`) for the properties Spark's planner
 * asks about (partitioning, ordering, required distribution), which do not change.
 */
abstract class BallistaExec extends ReplacesSparkOperator {

  /** Why the parent operator stays in Spark, shown in EXPLAIN beside this operator. */
  def parentFallback: Option[String]

  /** This operator noting why its parent stays in Spark (with this operator's tags). */
  final def withParentFallback(reason: String): BallistaExec = {
    val noted = copyWithParentFallback(reason)
    noted.copyTagsFrom(this)
    noted
  }

  protected def copyWithParentFallback(reason: String): BallistaExec

  /** This operator's plan node, given its children's. */
  def planNode(children: Seq[PlanNode]): PlanNode

  /**
   * As the root of a plan: the fields of its plan node that differ in task `partition`, which
   * the task's part of the plan carries (merged into the shared node, see `Plan` in
   * plan.proto).
   */
  def taskRoot(partition: Int): Option[PlanNode] = None

  /** Waits for the scalar subqueries of this operator, whose values its plan node carries. */
  def awaitSubqueries(): Unit = waitForSubqueries()

  /** A short description of the operator's arguments for EXPLAIN. */
  protected def describe: String

  /**
   * Spark's operator over this operator's current children. Partitioning and ordering follow
   * from the children, which adaptive execution rewrites (e.g. coalesced shuffle reads): taken
   * from `original` as planned, they would contradict the new children.
   */
  @transient private lazy val originalOverChildren: SparkPlan =
    if (original.children.size == children.size) original.withNewChildren(children) else original

  override def output: Seq[Attribute] = original.output
  override def outputPartitioning: Partitioning = originalOverChildren.outputPartitioning
  override def outputOrdering: Seq[SortOrder] = originalOverChildren.outputOrdering
  override def requiredChildDistribution: Seq[Distribution] = original.requiredChildDistribution
  override def requiredChildOrdering: Seq[Seq[SortOrder]] = original.requiredChildOrdering

  override def supportsColumnar: Boolean = true

  /** What the engine counts for this operator's plan node (see [[NativeMetrics]]). */
  override lazy val metrics: Map[String, SQLMetric] = NativeMetrics.operator(sparkContext)

  // EXPLAIN FORMATTED (also the plan description Spark posts to its listeners at every
  // adaptive re-plan) prints the arguments: by default every constructor argument, that is
  // the whole replaced Spark operator and protobuf messages in their text format.
  override def argString(maxFields: Int): String =
    describe + parentFallback.map(r => s" [parent stays in Spark: $r]").getOrElse("")

  override def simpleString(maxFields: Int): String = s"$nodeName ${argString(maxFields)}"

  override def verboseString(maxFields: Int): String = simpleString(maxFields)

  override protected def doExecute(): RDD[InternalRow] =
    throw new IllegalStateException(s"$nodeName produces columnar batches only")

  override protected def doExecuteColumnar(): RDD[ColumnarBatch] = NativePlanRDD.create(this)
}

/**
 * A native operator keeping the Spark operator it replaces (`original`): canonicalized as
 * that operator, compared shallowly.
 *
 * `original` is Spark's operator as it was translated, over the native children of that
 * moment. A case class's generated equality would compare every subtree twice per level (as a
 * child, and again under `original`), doubling with each level of the plan; adaptive execution
 * compares the whole plan after every query stage, which took a third of the driver's CPU in
 * TPC-H Q2. So `original` counts by its class and its own arguments, not its children; the
 * children are compared as this operator's.
 */
trait ReplacesSparkOperator extends SparkPlan {

  /** The Spark operator this one replaces. */
  def original: SparkPlan

  override def equals(other: Any): Boolean = other match {
    case that: ReplacesSparkOperator =>
      (this eq that) || (getClass == that.getClass && comparedFields == that.comparedFields)
    case _ => false
  }

  override def hashCode(): Int = comparedHash

  @transient private lazy val comparedHash: Int = comparedFields.hashCode()

  /**
   * Spark's operator over the canonical children: equal results make equal canonical plans,
   * so that Spark reuses exchanges and subqueries of native subtrees too.
   */
  override protected def doCanonicalize(): SparkPlan =
    CanonicalNative(original.withNewChildren(children.map(_.canonicalized)).canonicalized)

  private def comparedFields: Seq[Any] =
    productIterator.map {
      case plan: SparkPlan if (plan eq original) && !children.exists(_ eq plan) =>
        ReplacesSparkOperator.withoutChildren(plan)
      case field => field
    }.toSeq
}

private[execution] object ReplacesSparkOperator {

  /** `plan`'s class and arguments, leaving out its children. */
  def withoutChildren(plan: SparkPlan): Seq[Any] = {
    def isChild(value: Any): Boolean = plan.children.exists(_ eq value.asInstanceOf[AnyRef])
    val arguments = plan.productIterator.filterNot {
      case child: SparkPlan => isChild(child)
      case values: Iterable[_] => values.nonEmpty && values.forall(isChild)
      case _ => false
    }
    plan.getClass +: arguments.toSeq
  }
}

/**
 * The canonical form of a native operator: its Spark operator's, still columnar so that
 * Spark's transitions above it stay valid when they are canonicalized too.
 */
case class CanonicalNative(plan: SparkPlan) extends SparkPlan with LeafExecNode {
  override def output: Seq[Attribute] = plan.output
  override def supportsColumnar: Boolean = true
  override protected def doExecute(): RDD[InternalRow] =
    throw new IllegalStateException("canonical plans do not execute")
}
