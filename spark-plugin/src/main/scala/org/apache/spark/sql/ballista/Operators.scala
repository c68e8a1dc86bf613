package org.apache.spark.sql.ballista

import org.apache.spark.sql.ballista.execution._
import org.apache.spark.sql.ballista.serde.{AggregateSerde, ExprSerde, NotNative, TypeSerde}
import org.apache.spark.sql.catalyst.expressions.{Attribute, PlanExpression}
import org.apache.spark.sql.catalyst.expressions.aggregate.{Final, Partial}
import org.apache.spark.sql.catalyst.optimizer.BuildLeft
import org.apache.spark.sql.catalyst.trees.TreeNodeTag
import org.apache.spark.sql.execution.{
  ExpandExec,
  FileSourceScanExec,
  FilterExec,
  GlobalLimitExec,
  InSubqueryExec,
  LocalLimitExec,
  LocalTableScanExec,
  ProjectExec,
  SortExec,
  SparkPlan,
  TakeOrderedAndProjectExec,
  UnionExec
}
import org.apache.spark.sql.execution.adaptive.QueryStageExec
import org.apache.spark.sql.execution.aggregate.{
  BaseAggregateExec,
  HashAggregateExec,
  ObjectHashAggregateExec,
  SortAggregateExec
}
import org.apache.spark.sql.execution.exchange.{
  BroadcastExchangeExec,
  ReusedExchangeExec,
  ShuffleExchangeExec
}
import org.apache.spark.sql.execution.joins.{
  BroadcastHashJoinExec,
  ShuffledHashJoinExec,
  SortMergeJoinExec
}
import org.apache.spark.sql.execution.window.WindowExec
import org.apache.spark.sql.internal.SQLConf
import org.apache.spark.sql.types.StructType

/** Translation of single Spark operators into native ones. */
object Operators {

  /** The native operator for `operator` (whose children are already translated), or why not. */
  def translate(operator: SparkPlan, conf: SQLConf): Either[String, SparkPlan] =
    try {
      Right(ExprSerde.checking(translateOrThrow(operator, conf)))
    } catch {
      case e: NotNative => Left(e.reason)
    }

  private def translateOrThrow(operator: SparkPlan, conf: SQLConf): SparkPlan =
    operator match {
      case scan: FileSourceScanExec => parquetScan(scan)

      case filter: FilterExec =>
        requireNativeChild(filter.child)
        ExprSerde.toProto(filter.condition, filter.child.output)
        BallistaFilterExec(filter.condition, filter.child, filter)

      case project: ProjectExec =>
        requireNativeChild(project.child)
        project.projectList.foreach(e => ExprSerde.named(e, project.child.output))
        TypeSerde.schema(project.output)
        BallistaProjectExec(project.projectList, project.child, project)

      case agg: HashAggregateExec => hashAggregate(agg, conf)
      // Spark picks a sort aggregate when a buffer is not mutable in UnsafeRow (min/max of
      // strings) or its input is already sorted (replaceHashWithSortAgg). The native hash
      // aggregate computes the same buffers and sorts its output to keep the ordering.
      case agg: SortAggregateExec => hashAggregate(agg, conf)
      // Spark's aggregation of functions with object buffers (of those, the native side
      // computes bloom_filter_agg, whose buffer is the serialized filter).
      case agg: ObjectHashAggregateExec => hashAggregate(agg, conf)

      // Sorting pays off natively whatever the input, so a Spark input (e.g. a shuffle) is
      // read as Arrow.
      case sort: SortExec =>
        sort.sortOrder.foreach(o => ExprSerde.toProto(o.child, sort.child.output))
        BallistaSortExec(sort.sortOrder, sort.child, sort)

      case top: TakeOrderedAndProjectExec =>
        top.sortOrder.foreach(o => ExprSerde.toProto(o.child, top.child.output))
        top.projectList.foreach(e => ExprSerde.named(e, top.child.output))
        TypeSerde.schema(top.output)
        BallistaTakeOrderedAndProjectExec(
          top.limit,
          top.offset,
          top.sortOrder,
          top.projectList,
          top.child,
          top
        )

      case limit: LocalLimitExec =>
        requireNativeChild(limit.child)
        BallistaLimitExec(limit.limit, 0, limit.child, limit)
      case limit: GlobalLimitExec =>
        requireNativeChild(limit.child)
        // Spark returns rows [offset, limit) of the input; a limit of -1 means all.
        val n = if (limit.limit < 0) Int.MaxValue else math.max(limit.limit - limit.offset, 0)
        BallistaLimitExec(n, limit.offset, limit.child, limit)

      case expand: ExpandExec =>
        requireNativeChild(expand.child)
        expand.projections.foreach(_.foreach(e => ExprSerde.toProto(e, expand.child.output)))
        TypeSerde.schema(expand.output)
        BallistaExpandExec(expand.projections, expand.child, expand)

      case w: WindowExec =>
        requireNativeChild(w.child)
        BallistaWindowExec.translate(w, conf)

      case union: UnionExec =>
        union.children.foreach(requireNativeChild)
        TypeSerde.schema(union.output)
        BallistaUnionExec(union.children, union)

      case join: BroadcastHashJoinExec =>
        checkHashJoin(join)
        val build = if (join.buildSide == BuildLeft) join.left else join.right
        if (!isNativeBroadcast(build)) NotNative("its broadcast is not native")
        BallistaHashJoinExec(
          join.leftKeys,
          join.rightKeys,
          join.joinType,
          join.buildSide,
          join.condition,
          join.isNullAwareAntiJoin,
          join.left,
          join.right,
          join
        )

      case join: ShuffledHashJoinExec =>
        JoinSerde.check(join)
        BallistaHashJoinExec(
          join.leftKeys,
          join.rightKeys,
          join.joinType,
          ReplaceSortMergeJoin.nativeBuildSide(join),
          join.condition,
          isNullAwareAntiJoin = false,
          join.left,
          join.right,
          join
        )

      case join: SortMergeJoinExec =>
        JoinSerde.check(join)
        BallistaSortMergeJoinExec(
          join.leftKeys,
          join.rightKeys,
          join.joinType,
          join.condition,
          join.left,
          join.right,
          join
        )

      case exchange: BroadcastExchangeExec =>
        if (!exchange.getTagValue(NativeConsumerTag).contains(true)) {
          NotNative("the join reading it stays in Spark")
        }
        TypeSerde.schema(exchange.child.output)
        BallistaBroadcastExchangeExec(exchange.mode, exchange.child)

      case exchange: ShuffleExchangeExec =>
        requireNativeChild(exchange.child)
        NativeShuffle.check(exchange.outputPartitioning, exchange.child.output)
        TypeSerde.schema(exchange.child.output)
        BallistaShuffleExchangeExec(
          exchange.outputPartitioning,
          exchange.child,
          exchange.shuffleOrigin,
          exchange.advisoryPartitionSize
        )

      case other => NotNative(s"${other.nodeName} is not supported natively yet")
    }

  /** Marks a broadcast whose consumer is a join that runs natively. */
  val NativeConsumerTag: TreeNodeTag[Boolean] = TreeNodeTag[Boolean]("ballista.nativeConsumer")

  /**
   * Marks the broadcasts of `plan` that native hash joins will read: a broadcast is native
   * exactly when its join is, and is translated before its join is (bottom-up).
   */
  def markNativeBroadcasts(plan: SparkPlan): Unit = plan.foreach {
    case join: BroadcastHashJoinExec =>
      val build = if (join.buildSide == BuildLeft) join.left else join.right
      build match {
        case exchange: BroadcastExchangeExec =>
          if (ExprSerde.supported(checkHashJoin(join))) {
            exchange.setTagValue(NativeConsumerTag, true)
          }
        case _ =>
      }
    case _ =>
  }

  private def checkHashJoin(join: BroadcastHashJoinExec): Unit = {
    JoinSerde.check(join)
    if (join.isNullAwareAntiJoin && join.leftKeys.size != 1) {
      NotNative("null-aware anti join with several keys")
    }
  }

  private def isNativeBroadcast(plan: SparkPlan): Boolean = plan match {
    case _: BallistaBroadcastExchangeExec => true
    case s: QueryStageExec => isNativeBroadcast(s.plan)
    case r: ReusedExchangeExec => isNativeBroadcast(r.child)
    case _ => false
  }

  /** Row-based operators in the middle of a plan stay in Spark unless their input is native. */
  private def requireNativeChild(child: SparkPlan): Unit = child match {
    case p if NativePlanRDD.producesArrow(p) =>
    // Small constant tables (also what adaptive execution leaves of empty inputs).
    case _: LocalTableScanExec =>
    case other => NotNative(s"its input ${other.nodeName} is not native")
  }

  private def parquetScan(scan: FileSourceScanExec): BallistaExec = {
    val relation = scan.relation
    BallistaParquetScanExec.requireNativeReadable(relation)
    scan.partitionFilters.flatMap(_.find(_.isInstanceOf[PlanExpression[_]])).foreach {
      case _: InSubqueryExec =>
      case other => NotNative(s"partition filter subquery ${other.prettyName}")
    }
    val expected = scan.requiredSchema.fields.toSeq ++ relation.partitionSchema.fields.toSeq
    val matches = scan.output.size == expected.size &&
      scan.output.zip(expected).forall { case (a, f) =>
        a.name == f.name && a.dataType == f.dataType
      }
    if (!matches) NotNative("scan outputs metadata or reordered columns")
    checkScanTypes(scan.requiredSchema)
    checkScanTypes(relation.partitionSchema)
    // Filters Spark pushed into the scan only prune row groups here; those that cannot be
    // translated are left out (the filter above the scan still applies every one).
    val pruning = scan.dataFilters.filter { f =>
      try {
        ExprSerde.toProto(f, scan.output)
        true
      } catch {
        case _: NotNative => false
      }
    }
    BallistaParquetScanExec(scan, pruning, scan.partitionFilters)
  }

  // Timestamps are read as microseconds (INT96 as Spark writes it by default, or INT64
  // TIMESTAMP_MICROS/MILLIS), in UTC for TimestampType and without zone for TimestampNTZType.
  private def checkScanTypes(schema: StructType): Unit =
    schema.fields.foreach(f => TypeSerde.dataType(f.dataType))

  private def hashAggregate(agg: BaseAggregateExec, conf: SQLConf): BallistaExec = {
    val modes = agg.aggregateExpressions.map(_.mode).distinct
    val isFinal = agg.requiredChildDistributionExpressions.isDefined
    val expectedMode = if (isFinal) Final else Partial
    if (modes.exists(_ != expectedMode)) {
      NotNative(s"aggregation modes ${modes.mkString(",")} are not supported natively")
    }
    val grouping = agg.groupingExpressions
    // Spark's buffer layout: the grouping columns, then each function's buffer columns.
    val bufferWidth = agg.aggregateExpressions.map(_.aggregateFunction.aggBufferAttributes.size).sum
    if (isFinal) {
      if (
        agg.child.output.size != grouping.size + bufferWidth ||
        agg.initialInputBufferOffset != grouping.size
      ) {
        NotNative("final aggregation input does not have Spark's buffer layout")
      }
      val functions = agg.aggregateExpressions.map(e => AggregateSerde.toProto(e, None, conf))
      val resultInput: Seq[Attribute] = grouping.map(_.toAttribute) ++ agg.aggregateAttributes
      agg.resultExpressions.foreach(e => ExprSerde.named(e, resultInput))
      TypeSerde.schema(agg.output)
      BallistaHashAggregateExec(
        grouping,
        functions,
        agg.resultExpressions,
        resultInput,
        isFinal = true,
        agg.child,
        agg
      )
    } else {
      requireNativeChild(agg.child)
      if (agg.output.size != grouping.size + bufferWidth) {
        NotNative("partial aggregation output is not Spark's buffer layout")
      }
      grouping.foreach(g => ExprSerde.named(g, agg.child.output))
      val functions =
        agg.aggregateExpressions.map(e => AggregateSerde.toProto(e, Some(agg.child.output), conf))
      TypeSerde.schema(agg.output)
      BallistaHashAggregateExec(
        grouping,
        functions,
        agg.resultExpressions,
        Nil,
        isFinal = false,
        agg.child,
        agg
      )
    }
  }
}
