package org.apache.spark.sql.ballista.execution

import io.ballista.spark.proto.{
  AggregateFunction => PAggregateFunction,
  AggregateFunctionKind,
  EvalMode => PEvalMode,
  FrameBound,
  FrameBoundKind,
  PlanNode,
  RankingFunctionKind,
  Window => PWindow,
  WindowFrame => PWindowFrame,
  WindowFrameUnits,
  WindowFunction => PWindowFunction
}
import org.apache.spark.sql.ballista.serde.{AggregateSerde, ExprSerde, NotNative, TypeSerde}
import org.apache.spark.sql.catalyst.expressions.{
  Alias,
  Attribute,
  CurrentRow,
  DenseRank,
  Expression,
  NamedExpression,
  RangeFrame,
  Rank,
  RowFrame,
  RowNumber,
  SortOrder,
  SpecifiedWindowFrame,
  UnboundedFollowing,
  UnboundedPreceding,
  WindowExpression,
  WindowSpecDefinition
}
import org.apache.spark.sql.catalyst.expressions.aggregate.{AggregateExpression, Max, Min}
import org.apache.spark.sql.catalyst.util.truncatedString
import org.apache.spark.sql.execution.{SparkPlan, UnaryExecNode}
import org.apache.spark.sql.execution.window.WindowExec
import org.apache.spark.sql.internal.SQLConf
import org.apache.spark.sql.types.{DoubleType, FloatType, IntegerType}

/**
 * Spark's `WindowExec`: `row_number`, `rank`, `dense_rank` and the aggregates `sum`, `avg`,
 * `count`, `min`, `max` over ROWS frames and RANGE frames bounded by UNBOUNDED or CURRENT ROW.
 * The input is sorted by the partition keys, then the order keys (Spark's required ordering);
 * the output is the input's columns, then the window functions' results.
 */
case class BallistaWindowExec(
    windowExpression: Seq[NamedExpression],
    partitionSpec: Seq[Expression],
    orderSpec: Seq[SortOrder],
    child: SparkPlan,
    original: WindowExec,
    parentFallback: Option[String] = None
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaWindow"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String =
    s"${truncatedString(windowExpression, "[", ", ", "]", 25)} " +
      s"partition=${truncatedString(partitionSpec, "[", ", ", "]", 25)} " +
      s"order=${truncatedString(orderSpec, "[", ", ", "]", 25)}"

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override def planNode(children: Seq[PlanNode]): PlanNode =
    BallistaWindowExec.windowNode(
      children.head,
      windowExpression,
      partitionSpec,
      orderSpec,
      child.output,
      conf
    )
}

object BallistaWindowExec {

  /** The native window for `window` (whose child is native), or [[NotNative]] with why not. */
  def translate(window: WindowExec, conf: SQLConf): BallistaWindowExec = {
    windowNode(
      PlanNode.getDefaultInstance,
      window.windowExpression,
      window.partitionSpec,
      window.orderSpec,
      window.child.output,
      conf
    )
    TypeSerde.schema(window.output)
    BallistaWindowExec(
      window.windowExpression,
      window.partitionSpec,
      window.orderSpec,
      window.child,
      window
    )
  }

  def windowNode(
      input: PlanNode,
      windowExpression: Seq[NamedExpression],
      partitionSpec: Seq[Expression],
      orderSpec: Seq[SortOrder],
      inputAttrs: Seq[Attribute],
      conf: SQLConf
  ): PlanNode = {
    val w = PWindow.newBuilder().setInput(input)
    partitionSpec.foreach(p => w.addPartitionBy(ExprSerde.toProto(p, inputAttrs)))
    orderSpec.foreach(o => w.addOrderBy(BallistaSortExec.orderProto(o, inputAttrs)))
    windowExpression.foreach(e => w.addFunctions(function(e, orderSpec.nonEmpty, inputAttrs, conf)))
    PlanNode.newBuilder().setWindow(w).build()
  }

  private def function(
      expr: NamedExpression,
      ordered: Boolean,
      input: Seq[Attribute],
      conf: SQLConf
  ): PWindowFunction = {
    val (function, spec) = expr match {
      case Alias(WindowExpression(f, s: WindowSpecDefinition), _) => (f, s)
      case other => NotNative(s"window expression ${other.sql} is not supported natively")
    }
    val b = PWindowFunction
      .newBuilder()
      .setName(TypeSerde.columnName(expr.toAttribute))
      .setResultType(TypeSerde.dataType(expr.dataType))
    function match {
      case _: RowNumber => b.setRanking(RankingFunctionKind.RANKING_FUNCTION_KIND_ROW_NUMBER)
      case _: Rank => b.setRanking(RankingFunctionKind.RANKING_FUNCTION_KIND_RANK)
      case _: DenseRank => b.setRanking(RankingFunctionKind.RANKING_FUNCTION_KIND_DENSE_RANK)
      case a: AggregateExpression =>
        if (a.isDistinct) NotNative("DISTINCT window aggregates are not supported natively")
        if (a.filter.isDefined) NotNative("FILTER in window aggregates is not supported natively")
        b.setAggregate(aggregate(a, input, conf))
      case other => NotNative(s"window function ${other.prettyName} is not supported natively")
    }
    spec.frameSpecification match {
      case f: SpecifiedWindowFrame => b.setFrame(frame(f, ordered))
      case other => NotNative(s"window frame $other is not supported natively")
    }
    b.build()
  }

  /**
   * The aggregate as for a partial aggregation over the window's input; `min`/`max` of floats
   * too, which the native window computes with Spark's NaN and -0.0 rules.
   */
  private def aggregate(
      a: AggregateExpression,
      input: Seq[Attribute],
      conf: SQLConf
  ): PAggregateFunction = a.aggregateFunction match {
    case m @ (_: Min | _: Max) if Seq(FloatType, DoubleType).contains(m.children.head.dataType) =>
      val kind =
        if (m.isInstanceOf[Max]) AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_MAX
        else AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_MIN
      PAggregateFunction
        .newBuilder()
        .setKind(kind)
        .addArgs(ExprSerde.toProto(m.children.head, input))
        .addArgTypes(TypeSerde.dataType(m.children.head.dataType))
        .setResultType(TypeSerde.dataType(m.dataType))
        .setEvalMode(PEvalMode.EVAL_MODE_LEGACY)
        .setName(TypeSerde.columnName(a.resultAttribute))
        .build()
    case _ => AggregateSerde.toProto(a, Some(input), conf)
  }

  private def frame(f: SpecifiedWindowFrame, ordered: Boolean): PWindowFrame = {
    val units = f.frameType match {
      case RowFrame => WindowFrameUnits.WINDOW_FRAME_UNITS_ROWS
      case RangeFrame =>
        // Without ORDER BY, every row is a peer of every other: not worth a native case.
        if (!ordered && (f.lower == CurrentRow || f.upper == CurrentRow)) {
          NotNative("RANGE frame at CURRENT ROW without ORDER BY is not supported natively")
        }
        WindowFrameUnits.WINDOW_FRAME_UNITS_RANGE
    }
    PWindowFrame
      .newBuilder()
      .setUnits(units)
      .setLower(bound(f.lower, f))
      .setUpper(bound(f.upper, f))
      .build()
  }

  private def bound(e: Expression, f: SpecifiedWindowFrame): FrameBound = {
    val b = FrameBound.newBuilder()
    e match {
      case UnboundedPreceding => b.setKind(FrameBoundKind.FRAME_BOUND_KIND_UNBOUNDED_PRECEDING)
      case UnboundedFollowing => b.setKind(FrameBoundKind.FRAME_BOUND_KIND_UNBOUNDED_FOLLOWING)
      case CurrentRow => b.setKind(FrameBoundKind.FRAME_BOUND_KIND_CURRENT_ROW)
      case offset if f.frameType == RowFrame && offset.foldable && offset.dataType == IntegerType =>
        val n = offset.eval()
        if (n == null) NotNative("null window frame offset")
        b.setKind(FrameBoundKind.FRAME_BOUND_KIND_OFFSET).setOffset(n.asInstanceOf[Int].toLong)
      case other =>
        NotNative(s"RANGE frame bound ${other.sql} (a value offset) is not supported natively")
    }
    b.build()
  }
}
