package org.apache.spark.sql.ballista

import io.ballista.spark.BallistaConf
import org.apache.spark.internal.Logging
import org.apache.spark.internal.config.{MEMORY_OFFHEAP_ENABLED, MEMORY_OFFHEAP_SIZE}
import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.execution.JoinSerde
import org.apache.spark.sql.ballista.serde.ExprSerde
import org.apache.spark.sql.catalyst.optimizer.{BuildLeft, BuildRight, BuildSide}
import org.apache.spark.sql.catalyst.plans.logical.{Join, SHUFFLE_MERGE}
import org.apache.spark.sql.catalyst.plans.{JoinType, LeftAnti, LeftOuter, LeftSemi, RightOuter}
import org.apache.spark.sql.catalyst.trees.TreeNodeTag
import org.apache.spark.sql.execution.{
  CoalescedPartitionSpec,
  PartialReducerPartitionSpec,
  SortExec,
  SparkPlan,
  TakeOrderedAndProjectExec
}
import org.apache.spark.sql.execution.adaptive.{AQEShuffleReadExec, ShuffleQueryStageExec}
import org.apache.spark.sql.execution.aggregate.{HashAggregateExec, ObjectHashAggregateExec}
import org.apache.spark.sql.execution.exchange.{BroadcastExchangeLike, ShuffleExchangeLike}
import org.apache.spark.sql.execution.joins.{
  BroadcastHashJoinExec,
  HashJoin,
  ShuffledHashJoinExec,
  SortMergeJoinExec
}
import org.apache.spark.sql.internal.SQLConf

/**
 * Turns Spark's sort-merge joins into shuffled hash joins (and drops the sorts Spark planned
 * for them) when the join runs natively and the build side of every task is known to be small.
 *
 * Spark sorts both inputs of a sort-merge join so that it can join them in little memory; a
 * native hash join needs neither sort and is several times faster, but holds one input of the
 * task in memory without spilling. So the rewrite happens only where adaptive execution has
 * measured that input (its shuffle stage has run): the largest partition of the build side,
 * in compressed shuffle bytes, must be at most `spark.ballista.join.hashJoinMaxBuildBytes`
 * (by default a quarter of a task's share of off-heap memory, since decoded batches and the
 * hash table take a few times the compressed bytes). Elsewhere the sort-merge join stays and
 * spills under memory pressure as before.
 *
 * A sort-merge join the user asked for with a `MERGE` hint stays one.
 *
 * A sort-merge join's output is sorted by its keys and operators above it may rely on that
 * (another sort-merge join on the same keys, a sort aggregate, a window, or a sort Spark
 * removed as redundant): the join is replaced only when, on the way up, its order reaches an
 * operator that needs no order (an exchange, a hash aggregate, a sort) before one that may.
 */
case class ReplaceSortMergeJoin(session: SparkSession) extends Logging {
  import ReplaceSortMergeJoin.NativeBuildSideTag

  def apply(plan: SparkPlan, conf: SQLConf): SparkPlan =
    if (!BallistaConf.ReplaceSortMergeJoin.get(conf)) plan
    else {
      val configured = BallistaConf.HashJoinMaxBuildBytes.get(conf)
      // The default comes from the application's memory settings, read once a join is measured.
      lazy val limit = if (configured > 0) configured else taskExecutionMemory / 4
      rewrite(plan, orderingNeeded = true, limit)
    }

  private def rewrite(plan: SparkPlan, orderingNeeded: Boolean, limit: => Long): SparkPlan =
    plan match {
      case join: SortMergeJoinExec if !orderingNeeded && !mergeHinted(join) =>
        val left = rewrite(unsorted(join.left), orderingNeeded = false, limit)
        val right = rewrite(unsorted(join.right), orderingNeeded = false, limit)
        buildSide(join, left, right, limit) match {
          case Some(side) =>
            val hashJoin = ShuffledHashJoinExec(
              join.leftKeys,
              join.rightKeys,
              join.joinType,
              sparkBuildSide(join.joinType, side),
              join.condition,
              left,
              right,
              join.isSkewJoin
            )
            hashJoin.copyTagsFrom(join)
            hashJoin.setTagValue(NativeBuildSideTag, side)
            logDebug(s"Ballista: sort-merge join ${join.joinType} becomes a hash join ($side)")
            hashJoin
          case None => keep(join, orderingNeeded, limit)
        }
      case _ => keep(plan, orderingNeeded, limit)
    }

  /** The user asked for this sort-merge join with a `MERGE` hint. */
  private def mergeHinted(join: SortMergeJoinExec): Boolean = join.logicalLink.exists {
    case j: Join =>
      Seq(j.hint.leftHint, j.hint.rightHint).flatten.exists(_.strategy.contains(SHUFFLE_MERGE))
    case _ => false
  }

  /** `plan` itself unchanged, its children rewritten where their ordering is not needed. */
  private def keep(plan: SparkPlan, orderingNeeded: Boolean, limit: => Long): SparkPlan = {
    if (plan.children.isEmpty) return plan
    val required = plan.requiredChildOrdering
    val children = plan.children.zipWithIndex.map { case (child, i) =>
      val needed = required.lift(i).exists(_.nonEmpty) || (orderingNeeded && keepsOrderOf(plan, i))
      rewrite(child, needed, limit)
    }
    if (children == plan.children) plan else plan.withNewChildren(children)
  }

  /**
   * Whether `plan` may pass on the order of its `i`-th input. Spark removes a sort whose input
   * is already sorted, leaving no trace of it, so an operator that keeps its input's order
   * physically (whether or not it declares it) may stand between the join and a sort that
   * relies on it; only operators known to ignore or destroy their input's order cut that off.
   */
  private def keepsOrderOf(plan: SparkPlan, i: Int): Boolean = plan match {
    case _: ShuffleExchangeLike | _: BroadcastExchangeLike => false
    case _: HashAggregateExec | _: ObjectHashAggregateExec => false
    case _: SortExec | _: TakeOrderedAndProjectExec => false
    // A hash join keeps the order of the side it streams, not of the side it builds.
    case j: ShuffledHashJoinExec => !isBuildSide(j.buildSide, i)
    case j: BroadcastHashJoinExec => !isBuildSide(j.buildSide, i)
    case _ => true
  }

  private def isBuildSide(side: BuildSide, child: Int): Boolean =
    (side == BuildLeft && child == 0) || (side == BuildRight && child == 1)

  /** The input without the local sort Spark put there for the sort-merge join. */
  private def unsorted(plan: SparkPlan): SparkPlan = plan match {
    case sort: SortExec if !sort.global => sort.child
    case other => other
  }

  /**
   * The side the native join builds from, when the join runs natively and a side has
   * measured partitions within `limit` (the smaller side when both qualify). The native hash
   * join builds either side of every join type it runs: a semi join of a few orders against
   * all of lineitem builds the orders.
   */
  private def buildSide(
      join: SortMergeJoinExec,
      left: SparkPlan,
      right: SparkPlan,
      limit: => Long
  ): Option[BuildSide] = {
    if (!ExprSerde.supported(JoinSerde.check(join))) return None
    Seq(BuildLeft -> left, BuildRight -> right)
      .flatMap { case (side, plan) => ShuffleSize.of(plan).map(size => (side, size)) }
      .filter { case (_, size) => size.largestPartition <= limit }
      .sortBy { case (_, size) => size.total }
      .headOption
      .map(_._1)
  }

  /**
   * The build side of the Spark node the plan keeps for its properties: Spark validates those
   * against the build side, and its shuffled hash join builds only the inner side of an outer,
   * semi or anti join. The native join reads its own side from [[NativeBuildSideTag]].
   */
  private def sparkBuildSide(joinType: JoinType, native: BuildSide): BuildSide = joinType match {
    case LeftOuter | LeftSemi | LeftAnti => BuildRight
    case RightOuter => BuildLeft
    case _ => native
  }

  /** What one task may expect of execution memory: the executor's share per core. */
  private def taskExecutionMemory: Long = {
    val sc = session.sparkContext
    val sparkConf = sc.getConf
    val executorMemory =
      if (sparkConf.get(MEMORY_OFFHEAP_ENABLED)) sparkConf.get(MEMORY_OFFHEAP_SIZE)
      else {
        // On-heap, Spark's unified memory is about 60% of the heap (spark.memory.fraction).
        val heap =
          if (sc.isLocal) Runtime.getRuntime.maxMemory
          else sparkConf.getSizeAsBytes("spark.executor.memory", "1g")
        (heap * 0.6).toLong
      }
    val cores = sparkConf
      .getOption("spark.executor.cores")
      .flatMap(c => scala.util.Try(c.toInt).toOption)
      .getOrElse(if (sc.isLocal) sc.defaultParallelism else 1)
    executorMemory / math.max(cores, 1)
  }
}

object ReplaceSortMergeJoin {

  /** The side a replaced join builds from natively, where Spark's node cannot show it. */
  val NativeBuildSideTag: TreeNodeTag[BuildSide] =
    TreeNodeTag[BuildSide]("ballista.nativeBuildSide")

  /** The side `join` builds from natively: the tagged one, else the one Spark planned. */
  def nativeBuildSide(join: HashJoin): BuildSide =
    join.getTagValue(NativeBuildSideTag).getOrElse(join.buildSide)
}

/** Measured size of a shuffle read: all of it and its largest partition, compressed bytes. */
private case class ShuffleSize(total: Long, largestPartition: Long)

private object ShuffleSize {

  /** The size of `plan` when it reads a shuffle stage that has run; None otherwise. */
  def of(plan: SparkPlan): Option[ShuffleSize] = plan match {
    case stage: ShuffleQueryStageExec => measured(stage)(bytes => bytes.toSeq)
    case read: AQEShuffleReadExec =>
      read.child match {
        case stage: ShuffleQueryStageExec =>
          measured(stage) { bytes =>
            read.partitionSpecs.map {
              case CoalescedPartitionSpec(start, end, _) => bytes.slice(start, end).sum
              case p: PartialReducerPartitionSpec => p.dataSize
              // Partial map ranges and the like: bounded by the whole shuffle.
              case _ => bytes.sum
            }
          }
        case _ => None
      }
    case _ => None
  }

  /** The stage's total bytes and the largest of the partitions `read` makes of its bytes. */
  private def measured(stage: ShuffleQueryStageExec)(
      read: Array[Long] => Seq[Long]
  ): Option[ShuffleSize] =
    if (!stage.isMaterialized) None
    else
      stage.mapStats.map { stats =>
        val bytes = stats.bytesByPartitionId
        val partitions = read(bytes)
        ShuffleSize(bytes.sum, if (partitions.isEmpty) 0L else partitions.max)
      }
}
