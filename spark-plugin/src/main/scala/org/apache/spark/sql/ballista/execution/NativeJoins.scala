package org.apache.spark.sql.ballista.execution

import scala.collection.JavaConverters._

import io.ballista.spark.proto.{
  BuildSide => PBuildSide,
  Expr,
  HashJoin => PHashJoin,
  JoinType => PJoinType,
  PlanNode,
  SortMergeJoin => PSortMergeJoin
}
import org.apache.spark.sql.ballista.ShuffleSize
import org.apache.spark.sql.ballista.serde.{ExprSerde, NotNative, TypeSerde}
import org.apache.spark.sql.catalyst.expressions.Expression
import org.apache.spark.sql.catalyst.optimizer.{BuildLeft, BuildRight, BuildSide}
import org.apache.spark.sql.catalyst.plans._
import org.apache.spark.sql.catalyst.util.truncatedString
import org.apache.spark.sql.execution.{BinaryExecNode, SparkPlan}
import org.apache.spark.sql.execution.adaptive.BroadcastQueryStageExec
import org.apache.spark.sql.execution.joins.{BaseJoinExec, BroadcastHashJoinExec}

/** What Spark's equi-joins have in common, as plan messages. */
object JoinSerde {

  def joinType(t: JoinType): PJoinType = t match {
    case Inner => PJoinType.JOIN_TYPE_INNER
    case LeftOuter => PJoinType.JOIN_TYPE_LEFT_OUTER
    case RightOuter => PJoinType.JOIN_TYPE_RIGHT_OUTER
    case FullOuter => PJoinType.JOIN_TYPE_FULL_OUTER
    case LeftSemi => PJoinType.JOIN_TYPE_LEFT_SEMI
    case LeftAnti => PJoinType.JOIN_TYPE_LEFT_ANTI
    case other => NotNative(s"join type $other is not supported natively yet")
  }

  /** Checks that the join's keys, condition and output translate against its inputs. */
  def check(join: BaseJoinExec): Unit = {
    joinType(join.joinType)
    if (join.leftKeys.isEmpty) NotNative("join without equality keys")
    join.leftKeys.zip(join.rightKeys).foreach { case (l, r) =>
      if (l.dataType != r.dataType) NotNative("join keys of different types")
    }
    keysAndCondition(join.leftKeys, join.rightKeys, join.condition, join.left, join.right)
    TypeSerde.schema(join.output)
  }

  /** The join's keys, each bound to its side, and its condition, bound to both sides. */
  def keysAndCondition(
      leftKeys: Seq[Expression],
      rightKeys: Seq[Expression],
      condition: Option[Expression],
      left: SparkPlan,
      right: SparkPlan
  ): (Seq[Expr], Seq[Expr], Option[Expr]) = (
    leftKeys.map(k => ExprSerde.toProto(k, left.output)),
    rightKeys.map(k => ExprSerde.toProto(k, right.output)),
    condition.map(c => ExprSerde.toProto(c, left.output ++ right.output))
  )
}

/** Spark's `BroadcastHashJoinExec` and `ShuffledHashJoinExec`. */
case class BallistaHashJoinExec(
    leftKeys: Seq[Expression],
    rightKeys: Seq[Expression],
    joinType: JoinType,
    buildSide: BuildSide,
    condition: Option[Expression],
    isNullAwareAntiJoin: Boolean,
    left: SparkPlan,
    right: SparkPlan,
    original: SparkPlan,
    parentFallback: Option[String] = None
) extends BallistaExec
    with BinaryExecNode {

  override def nodeName: String = "BallistaHashJoin"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String =
    s"$joinType $nativeBuildSide keys=${truncatedString(leftKeys, "[", ", ", "]", 25)}=" +
      s"${truncatedString(rightKeys, "[", ", ", "]", 25)}" +
      condition.map(c => s" condition=${c.sql}").getOrElse("") +
      (if (isNullAwareAntiJoin) " null-aware" else "")

  override protected def withNewChildrenInternal(
      newLeft: SparkPlan,
      newRight: SparkPlan
  ): SparkPlan = copy(left = newLeft, right = newRight)

  /**
   * The side each task builds its hash table from. A broadcast join builds from the broadcast,
   * unless each task's own input is a measured shuffle read under half the broadcast's bytes
   * (a broadcast adaptive execution chose by estimate, of a large aggregate, say, against a
   * few rows): the task then hashes its own rows and streams the broadcast through them. For
   * an inner or outer join the rows out are the same, because no unmatched broadcast row is
   * ever output (Spark only broadcasts the side an outer join does not keep) and a shuffle read
   * has no order to keep; the task hashes less. (Spark pushes semi and anti joins below the
   * shuffles of their streamed side, so they keep the broadcast's build side.)
   */
  def nativeBuildSide: BuildSide = (original, joinType) match {
    case (_: BroadcastHashJoinExec, Inner | LeftOuter | RightOuter) =>
      val (broadcast, streamed, streamedSide) =
        if (buildSide == BuildLeft) (left, right, BuildRight) else (right, left, BuildLeft)
      (broadcastBytes(broadcast), ShuffleSize.of(streamed)) match {
        case (Some(bytes), Some(read)) if read.largestPartition * 2 < bytes => streamedSide
        case _ => buildSide
      }
    case _ => buildSide
  }

  private def broadcastBytes(plan: SparkPlan): Option[BigInt] = plan match {
    case stage: BroadcastQueryStageExec if stage.isMaterialized =>
      Some(stage.getRuntimeStatistics.sizeInBytes)
    case _ => None
  }

  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val join = PHashJoin
      .newBuilder()
      .setLeft(children(0))
      .setRight(children(1))
      .setJoinType(JoinSerde.joinType(joinType))
      .setBuildSide(
        if (nativeBuildSide == BuildLeft) PBuildSide.BUILD_SIDE_LEFT
        else PBuildSide.BUILD_SIDE_RIGHT
      )
      .setNullAware(isNullAwareAntiJoin)
    val (l, r, c) = JoinSerde.keysAndCondition(leftKeys, rightKeys, condition, left, right)
    join.addAllLeftKeys(l.asJava).addAllRightKeys(r.asJava)
    c.foreach(join.setCondition)
    PlanNode.newBuilder().setHashJoin(join).build()
  }
}

/** Spark's `SortMergeJoinExec`: both inputs arrive sorted by their keys. */
case class BallistaSortMergeJoinExec(
    leftKeys: Seq[Expression],
    rightKeys: Seq[Expression],
    joinType: JoinType,
    condition: Option[Expression],
    left: SparkPlan,
    right: SparkPlan,
    original: SparkPlan,
    parentFallback: Option[String] = None
) extends BallistaExec
    with BinaryExecNode {

  override def nodeName: String = "BallistaSortMergeJoin"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String =
    s"$joinType keys=${truncatedString(leftKeys, "[", ", ", "]", 25)}=" +
      s"${truncatedString(rightKeys, "[", ", ", "]", 25)}" +
      condition.map(c => s" condition=${c.sql}").getOrElse("")

  override protected def withNewChildrenInternal(
      newLeft: SparkPlan,
      newRight: SparkPlan
  ): SparkPlan = copy(left = newLeft, right = newRight)

  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val join = PSortMergeJoin
      .newBuilder()
      .setLeft(children(0))
      .setRight(children(1))
      .setJoinType(JoinSerde.joinType(joinType))
    val (l, r, c) = JoinSerde.keysAndCondition(leftKeys, rightKeys, condition, left, right)
    join.addAllLeftKeys(l.asJava).addAllRightKeys(r.asJava)
    c.foreach(join.setCondition)
    PlanNode.newBuilder().setSortMergeJoin(join).build()
  }
}
