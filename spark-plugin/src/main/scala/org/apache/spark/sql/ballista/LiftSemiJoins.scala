package org.apache.spark.sql.ballista

import io.ballista.spark.BallistaConf
import org.apache.spark.internal.Logging
import org.apache.spark.sql.ballista.ReplaceSortMergeJoin.nativeBuildSide
import org.apache.spark.sql.ballista.execution.BallistaExec
import org.apache.spark.sql.catalyst.expressions.{AttributeSet, IsNotNull, PredicateHelper}
import org.apache.spark.sql.catalyst.optimizer.BuildLeft
import org.apache.spark.sql.catalyst.plans.{Inner, LeftAnti, LeftSemi}
import org.apache.spark.sql.execution.{FilterExec, ProjectExec, SparkPlan}
import org.apache.spark.sql.execution.adaptive.QueryStageExec
import org.apache.spark.sql.execution.exchange.ReusedExchangeExec
import org.apache.spark.sql.execution.joins.{BroadcastHashJoinExec, HashJoin, ShuffledHashJoinExec}
import org.apache.spark.sql.internal.SQLConf

/**
 * Moves semi and anti joins above the inner joins of the same stage that filter their input,
 * so that they probe (or build from) the few rows that survive rather than all of them.
 *
 * Spark pushes an `EXISTS` / `NOT EXISTS` down to the table it correlates with and keeps the
 * inner joins in the order of the query text: TPC-H Q21 checks every late lineitem of all
 * suppliers against all of lineitem twice, and only then keeps the suppliers of one nation
 * (1 in 25). A semi or anti join decides each row of its left input by that row's own columns,
 * so it may equally run after inner joins that add columns to the row or drop it; within a
 * stage every row stays in its partition, so the partitioning the semi join relies on holds.
 *
 * The semi and anti joins found below a selective inner join (one whose build side holds a
 * filtered table), through projections, filters and the streamed sides of other inner hash
 * joins, move to just above it; the projections in between keep the columns they need, and a
 * projection on top restores the inner join's output. Null-aware anti joins (`NOT IN`) stay,
 * and nothing moves across a non-deterministic expression.
 */
object LiftSemiJoins extends PredicateHelper with Logging {

  def apply(plan: SparkPlan, conf: SQLConf): SparkPlan =
    if (!BallistaConf.LiftSemiJoins.get(conf)) plan
    else
      plan.transformDown {
        case join: HashJoin
            if isInner(join) && join.condition.forall(_.deterministic) &&
              selective(buildChild(join)) =>
          lift(join)
      }

  private def lift(join: HashJoin): SparkPlan = {
    val (streamed, semiJoins) = withoutSemiJoins(streamedChild(join))
    if (semiJoins.isEmpty) return join
    val inner = withStreamedChild(join, streamed)
    // Bottom first, as they were applied before.
    val lifted = semiJoins.reverse.foldLeft(inner) { (input, semi) =>
      val moved = semi.withNewChildren(Seq(input, semi.children(1)))
      if (buildsLeftOnceLifted(semi)) {
        moved.setTagValue(ReplaceSortMergeJoin.NativeBuildSideTag, BuildLeft)
      }
      moved
    }
    logDebug(s"Ballista: ${semiJoins.size} semi/anti join(s) moved above an inner join")
    ProjectExec(join.output, lifted)
  }

  /**
   * `plan` with the semi and anti joins of its chain (projections, filters, streamed sides of
   * inner hash joins) taken out, top first; the projections keep the columns they read.
   */
  private def withoutSemiJoins(plan: SparkPlan): (SparkPlan, Seq[SparkPlan]) = plan match {
    case semi: HashJoin if isLiftable(semi) =>
      val (rest, below) = withoutSemiJoins(semi.left)
      (rest, semi +: below)
    // A non-deterministic expression would be evaluated on other rows than Spark's plan does.
    case project: ProjectExec if project.projectList.forall(_.deterministic) =>
      val (child, semiJoins) = withoutSemiJoins(project.child)
      if (semiJoins.isEmpty) (project, Nil)
      else {
        val needed = semiJoins.map(leftReferences).reduce(_ ++ _)
        val kept = needed.filter(a => child.outputSet.contains(a) && !project.outputSet.contains(a))
        (ProjectExec(project.projectList ++ kept.toSeq, child), semiJoins)
      }
    case filter: FilterExec if filter.condition.deterministic =>
      val (child, semiJoins) = withoutSemiJoins(filter.child)
      if (semiJoins.isEmpty) (filter, Nil) else (filter.withNewChildren(Seq(child)), semiJoins)
    case join: HashJoin if isInner(join) && join.condition.forall(_.deterministic) =>
      val (child, semiJoins) = withoutSemiJoins(streamedChild(join))
      if (semiJoins.isEmpty) (join, Nil) else (withStreamedChild(join, child), semiJoins)
    case other => (other, Nil)
  }

  /** A semi or anti hash join this rule may move (its right side stays its right side). */
  private def isLiftable(join: HashJoin): Boolean = (join.joinType == LeftSemi ||
    join.joinType == LeftAnti) && !isNullAware(join) && join.condition.forall(_.deterministic)

  private def isNullAware(join: HashJoin): Boolean = join match {
    case b: BroadcastHashJoinExec => b.isNullAwareAntiJoin
    case _ => false
  }

  /**
   * Whether a shuffled semi or anti join that builds its right side should build its left side
   * once it is above a filtering join: when the input its left side comes from was measured no
   * larger than its right side, the filtered left is smaller still (as in TPC-H Q21, where the
   * late lineitems of one nation, not all of lineitem, become the hash table). Both are
   * measured only where the join was a sort-merge join that became a hash join; that rewrite
   * already checked the right side against its size limit.
   */
  private def buildsLeftOnceLifted(semi: SparkPlan): Boolean = semi match {
    case join: ShuffledHashJoinExec if nativeBuildSide(join) != BuildLeft =>
      join.getTagValue(ReplaceSortMergeJoin.NativeBuildSideTag).isDefined &&
      ShuffleSize.of(join.right).exists { right =>
        ShuffleSize.of(chainInput(join.left)).exists(_.largestPartition <= right.largestPartition)
      }
    case _ => false
  }

  /** The input at the bottom of a chain of projections, filters and semi joins. */
  @scala.annotation.tailrec
  private def chainInput(plan: SparkPlan): SparkPlan = plan match {
    case project: ProjectExec => chainInput(project.child)
    case filter: FilterExec => chainInput(filter.child)
    case semi: HashJoin if isLiftable(semi) => chainInput(semi.left)
    case other => other
  }

  /** The columns of its left input that a semi or anti join reads. */
  private def leftReferences(plan: SparkPlan): AttributeSet = plan match {
    case join: HashJoin =>
      val references = AttributeSet(join.leftKeys.flatMap(_.references)) ++
        join.condition.map(_.references).getOrElse(AttributeSet.empty)
      references.filter(join.left.outputSet.contains)
    case _ => AttributeSet.empty
  }

  private def isInner(join: HashJoin): Boolean = join.joinType == Inner &&
    (join.isInstanceOf[BroadcastHashJoinExec] || join.isInstanceOf[ShuffledHashJoinExec])

  private def buildChild(join: HashJoin): SparkPlan =
    if (nativeBuildSide(join) == BuildLeft) join.left else join.right

  private def streamedChild(join: HashJoin): SparkPlan =
    if (nativeBuildSide(join) == BuildLeft) join.right else join.left

  private def withStreamedChild(join: HashJoin, child: SparkPlan): SparkPlan =
    if (nativeBuildSide(join) == BuildLeft) join.withNewChildren(Seq(join.left, child))
    else join.withNewChildren(Seq(child, join.right))

  /**
   * Whether `plan` holds a filter beyond null checks (on any operator, also inside query
   * stages and translated ones): a sign that joining with it drops rows.
   */
  private def selective(plan: SparkPlan): Boolean = {
    def filters(p: SparkPlan): Boolean = {
      val own = p match {
        case f: FilterExec => isSelective(f)
        case b: BallistaExec =>
          b.original match {
            case f: FilterExec => isSelective(f)
            case _ => false
          }
        case _ => false
      }
      own || (p match {
        case stage: QueryStageExec => filters(stage.plan)
        case reused: ReusedExchangeExec => filters(reused.child)
        case _ => p.children.exists(filters)
      })
    }
    filters(plan)
  }

  private def isSelective(filter: FilterExec): Boolean =
    splitConjunctivePredicates(filter.condition).exists(!_.isInstanceOf[IsNotNull])
}
