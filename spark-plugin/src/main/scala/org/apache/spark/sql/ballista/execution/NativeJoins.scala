package org.apache.spark.sql.ballista.execution

import io.ballista.spark.proto.{
  BuildSide => PBuildSide,
  HashJoin => PHashJoin,
  JoinType => PJoinType,
  PlanNode,
  SortMergeJoin => PSortMergeJoin
}
import org.apache.spark.sql.ballista.serde.{ExprSerde, NotNative}
import org.apache.spark.sql.catalyst.expressions.Expression
import org.apache.spark.sql.catalyst.optimizer.{BuildLeft, BuildRight, BuildSide}
import org.apache.spark.sql.catalyst.plans._
import org.apache.spark.sql.catalyst.util.truncatedString
import org.apache.spark.sql.execution.{BinaryExecNode, SparkPlan}

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

  /** Checks that the keys and condition translate against the join's inputs. */
  def check(
      leftKeys: Seq[Expression],
      rightKeys: Seq[Expression],
      t: JoinType,
      condition: Option[Expression],
      left: SparkPlan,
      right: SparkPlan
  ): Unit = {
    joinType(t)
    if (leftKeys.isEmpty) NotNative("join without equality keys")
    leftKeys.foreach(k => ExprSerde.toProto(k, left.output))
    rightKeys.foreach(k => ExprSerde.toProto(k, right.output))
    leftKeys.zip(rightKeys).foreach { case (l, r) =>
      if (l.dataType != r.dataType) NotNative("join keys of different types")
    }
    condition.foreach(c => ExprSerde.toProto(c, left.output ++ right.output))
  }
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
    s"$joinType $buildSide keys=${truncatedString(leftKeys, "[", ", ", "]", 25)}=" +
      s"${truncatedString(rightKeys, "[", ", ", "]", 25)}" +
      condition.map(c => s" condition=${c.sql}").getOrElse("") +
      (if (isNullAwareAntiJoin) " null-aware" else "")

  override protected def withNewChildrenInternal(
      newLeft: SparkPlan,
      newRight: SparkPlan
  ): SparkPlan = copy(left = newLeft, right = newRight)

  override def planNode(children: Seq[PlanNode], partition: Int): PlanNode = {
    val join = PHashJoin
      .newBuilder()
      .setLeft(children(0))
      .setRight(children(1))
      .setJoinType(JoinSerde.joinType(joinType))
      .setBuildSide(
        if (buildSide == BuildLeft) PBuildSide.BUILD_SIDE_LEFT else PBuildSide.BUILD_SIDE_RIGHT
      )
      .setNullAware(isNullAwareAntiJoin)
    leftKeys.foreach(k => join.addLeftKeys(ExprSerde.toProto(k, left.output)))
    rightKeys.foreach(k => join.addRightKeys(ExprSerde.toProto(k, right.output)))
    condition.foreach(c => join.setCondition(ExprSerde.toProto(c, left.output ++ right.output)))
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

  override def planNode(children: Seq[PlanNode], partition: Int): PlanNode = {
    val join = PSortMergeJoin
      .newBuilder()
      .setLeft(children(0))
      .setRight(children(1))
      .setJoinType(JoinSerde.joinType(joinType))
    leftKeys.foreach(k => join.addLeftKeys(ExprSerde.toProto(k, left.output)))
    rightKeys.foreach(k => join.addRightKeys(ExprSerde.toProto(k, right.output)))
    condition.foreach(c => join.setCondition(ExprSerde.toProto(c, left.output ++ right.output)))
    PlanNode.newBuilder().setSortMergeJoin(join).build()
  }
}
