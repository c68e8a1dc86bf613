package org.apache.spark.sql.ballista.execution

import scala.collection.JavaConverters._

import io.ballista.spark.proto.{
  AggregateMode => PAggregateMode,
  Expand => PExpand,
  ExpandProjection,
  Filter => PFilter,
  HashAggregate => PHashAggregate,
  Limit => PLimit,
  NamedExpr,
  ParquetScan,
  PlanNode,
  Projection,
  ScanFile,
  Sort => PSort,
  SortOrder => PSortOrder
}
import io.ballista.spark.BallistaConf
import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.serde.{ExprSerde, NotNative, TypeSerde}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{
  Ascending,
  Attribute,
  AttributeSet,
  Expression,
  NamedExpression,
  NullsFirst,
  PlanExpression,
  SortOrder
}
import org.apache.spark.sql.catalyst.plans.physical.Partitioning
import org.apache.spark.sql.catalyst.util.truncatedString
import org.apache.spark.sql.execution.{
  FileSourceScanExec,
  FilterExec,
  LeafExecNode,
  PartitionedFileUtil,
  ProjectExec,
  SparkPlan,
  UnaryExecNode
}
import org.apache.spark.sql.execution.aggregate.{BaseAggregateExec, SortAggregateExec}
import org.apache.spark.sql.execution.datasources.{
  FilePartition,
  FileScanRDD,
  HadoopFsRelation,
  PartitionDirectory
}
import org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat
import org.apache.spark.sql.execution.metric.SQLMetric
import org.apache.spark.sql.internal.SQLConf
import org.apache.spark.sql.types.StructType

/** Spark's Parquet `FileSourceScanExec`, read natively over the same file splits. */
case class BallistaParquetScanExec(
    original: FileSourceScanExec,
    pruningPredicates: Seq[Expression],
    partitionFilters: Seq[Expression],
    parentFallback: Option[String] = None
) extends BallistaExec
    with LeafExecNode {

  override def nodeName: String = "BallistaParquetScan"

  override lazy val metrics: Map[String, SQLMetric] =
    NativeMetrics.operator(sparkContext) ++ NativeMetrics.scan(sparkContext)

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String = {
    val paths = original.relation.location.rootPaths.map(_.toString)
    s"${truncatedString(output, "[", ",", "]", 25)} paths=${paths.mkString(",")} " +
      s"pruning=${truncatedString(pruningPredicates, "[", ",", "]", 25)}" +
      (if (partitionFilters.isEmpty) ""
       else s" partitions=${truncatedString(partitionFilters, "[", ",", "]", 25)}")
  }

  /**
   * The file splits Spark plans for this scan, one task each. Partition filters are this
   * operator's own (a field, so that Spark runs their subqueries — dynamic partition pruning —
   * before the plan executes, and rules that rewrite them reach them).
   */
  @transient lazy val filePartitions: Seq[FilePartition] = {
    val scan = original.copy(partitionFilters = partitionFilters)
    val relation = scan.relation
    val dynamicPruning = partitionFilters.exists(_.exists(_.isInstanceOf[PlanExpression[_]]))
    if (scan.bucketedScan || scan.optionalBucketSet.isDefined || dynamicPruning) {
      // Spark's own read RDD: its bucket grouping and pruning, its dynamic partition pruning.
      scan.inputRDD match {
        case rdd: FileScanRDD => rdd.filePartitions
        case other =>
          throw new IllegalStateException(s"unexpected scan RDD ${other.getClass.getName}")
      }
    } else {
      // The splits of Spark's non-bucketed read RDD, without building its row reader (which
      // broadcasts the Hadoop configuration, at every planning of the scan).
      val session = relation.sparkSession
      val selected = scan.selectedPartitions
      val maxSplitBytes = BallistaParquetScanExec.maxSplitBytes(session, selected)
      val splits = selected.toSeq.flatMap { partition =>
        partition.files.flatMap { file =>
          val path = file.getPath
          val splitable = relation.fileFormat.isSplitable(session, relation.options, path)
          PartitionedFileUtil.splitFiles(
            session,
            file,
            path,
            splitable,
            maxSplitBytes,
            partition.values
          )
        }
      }
      FilePartition.getFilePartitions(
        session,
        splits.sortBy(_.length)(Ordering[Long].reverse),
        maxSplitBytes
      )
    }
  }

  /** The scan without its files: they are each task's (`scanFiles`, in `Plan.scan_files`). */
  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val scan = ParquetScan
      .newBuilder()
      .setDataSchema(TypeSerde.schema(original.requiredSchema))
      .setPartitionSchema(TypeSerde.schema(original.relation.partitionSchema))
      .setCaseSensitive(conf.caseSensitiveAnalysis)
    pruningPredicates.foreach(p => scan.addPruningPredicates(ExprSerde.toProto(p, output)))
    PlanNode.newBuilder().setParquetScan(scan).build()
  }

  /** The files task `partition` reads. */
  def scanFiles(partition: Int): Seq[ScanFile] = {
    val partitionSchema = original.relation.partitionSchema
    filePartitions(partition).files.toSeq.map { file =>
      BallistaParquetScanExec.scanFile(
        file.toPath.toUri.toString,
        file.start,
        file.length,
        file.fileSize,
        file.modificationTime,
        file.partitionValues,
        partitionSchema
      )
    }
  }
}

object BallistaParquetScanExec {

  /** Fails with the reason (`NotNative`) where the native scan cannot read `relation`. */
  def requireNativeReadable(relation: HadoopFsRelation): Unit = {
    if (relation.fileFormat.getClass != classOf[ParquetFileFormat]) {
      NotNative(s"file format ${relation.fileFormat} is not supported natively")
    }
    val schemes = relation.location.rootPaths.map(p => Option(p.toUri.getScheme).getOrElse("file"))
    schemes
      .find(_ != "file")
      .foreach(s => NotNative(s"file system '$s' is not supported natively yet"))
  }

  /**
   * The size of a native scan's splits: its files' bytes (each counted with Spark's cost of
   * opening a file) split evenly over a multiple of the slots, in as few splits as
   * `ScanMaxSplitBytes` allows. Spark caps splits at `spark.sql.files.maxPartitionBytes`
   * (128 MiB) for readers whose memory grows with them; a native task's cost of starting is
   * what small splits multiply (TPC-H Q1 at scale factor 10: 2.85 s in 19 tasks, 2.54 s in 4),
   * and a count of splits that does not divide by the slots leaves a slot idle at the end.
   */
  def maxSplitBytes(session: SparkSession, selected: Seq[PartitionDirectory]): Long = {
    val conf = session.sessionState.conf
    val cap = BallistaConf.ScanMaxSplitBytes.get(conf)
    if (cap == 0 || conf.contains(SQLConf.FILES_MAX_PARTITION_BYTES.key)) {
      FilePartition.maxSplitBytes(session, selected)
    } else {
      val openCost = conf.filesOpenCostInBytes
      val slots =
        math.max(1, conf.filesMinPartitionNum.getOrElse(session.leafNodeDefaultParallelism))
      val total = selected.iterator.flatMap(_.files).map(_.getLen + openCost).sum
      def ceilDiv(a: Long, b: Long): Long = (a + b - 1) / b
      val splits = math.max(1L, ceilDiv(ceilDiv(total, cap), slots)) * slots
      math.max(openCost, ceilDiv(total, splits))
    }
  }

  /** The byte range `start`, `length` of a file, with its partition's values, for a scan. */
  def scanFile(
      path: String,
      start: Long,
      length: Long,
      fileSize: Long,
      modificationTime: Long,
      partitionValues: InternalRow,
      partitionSchema: StructType
  ): ScanFile = {
    val f = ScanFile
      .newBuilder()
      .setPath(path)
      .setStart(start)
      .setLength(length)
      .setFileSize(fileSize)
      .setModificationTime(modificationTime)
    partitionSchema.fields.zipWithIndex.foreach { case (field, i) =>
      f.addPartitionValues(
        ExprSerde.literal(partitionValues.get(i, field.dataType), field.dataType)
      )
    }
    f.build()
  }
}

/** Spark's `FilterExec`. */
case class BallistaFilterExec(
    condition: Expression,
    child: SparkPlan,
    original: FilterExec,
    parentFallback: Option[String] = None
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaFilter"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String = condition.sql

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val filter = PFilter
      .newBuilder()
      .setInput(children.head)
      .setPredicate(ExprSerde.toProto(condition, child.output))
    PlanNode.newBuilder().setFilter(filter).build()
  }
}

/** Spark's `ProjectExec`. */
case class BallistaProjectExec(
    projectList: Seq[NamedExpression],
    child: SparkPlan,
    original: ProjectExec,
    parentFallback: Option[String] = None
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaProject"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String = truncatedString(projectList, "[", ", ", "]", 25)

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val projection = Projection.newBuilder().setInput(children.head)
    projectList.foreach(e => projection.addExprs(ExprSerde.named(e, child.output)))
    PlanNode.newBuilder().setProjection(projection).build()
  }
}

/**
 * Spark's `HashAggregateExec`, `SortAggregateExec` or `ObjectHashAggregateExec` in its partial
 * or final phase, with Spark's aggregation buffer layout between the two (see `AggregateSerde`).
 *
 * A sort aggregate's output is sorted by its grouping keys (ascending, nulls first), which
 * Spark's parents rely on without sorting again; the native hash aggregate does not keep any
 * order, so its output is sorted by the part of that ordering the output columns express.
 */
case class BallistaHashAggregateExec(
    groupingExpressions: Seq[NamedExpression],
    functions: Seq[io.ballista.spark.proto.AggregateFunction],
    resultExpressions: Seq[NamedExpression],
    resultInput: Seq[Attribute],
    isFinal: Boolean,
    child: SparkPlan,
    original: BaseAggregateExec,
    parentFallback: Option[String] = None
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaHashAggregate"

  /**
   * A sort aggregate's ordering: Spark's (the grouping keys, through the result's aliases) as
   * far as it refers to output columns only, which the plan node sorts by. Nothing for a hash
   * aggregate.
   */
  override def outputOrdering: Seq[SortOrder] = original match {
    case _: SortAggregateExec =>
      val outputSet = AttributeSet(output)
      super.outputOrdering.takeWhile(_.child.references.subsetOf(outputSet))
    case _ => Nil
  }

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String = {
    val phase = if (isFinal) "final" else "partial"
    s"$phase keys=${truncatedString(groupingExpressions, "[", ", ", "]", 25)} " +
      s"functions=${truncatedString(original.aggregateExpressions, "[", ", ", "]", 25)}"
  }

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val agg = PHashAggregate
      .newBuilder()
      .setInput(children.head)
      .addAllFunctions(functions.asJava)
    if (isFinal) {
      agg.setMode(PAggregateMode.AGGREGATE_MODE_FINAL)
      // The final phase's input starts with the grouping columns, in order.
      groupingExpressions.zip(child.output).foreach { case (g, attr) =>
        agg.addGrouping(
          NamedExpr
            .newBuilder()
            .setExpr(ExprSerde.toProto(attr, child.output))
            .setName(TypeSerde.columnName(g.toAttribute))
        )
      }
      resultExpressions.foreach(e => agg.addResultExprs(ExprSerde.named(e, resultInput)))
    } else {
      agg.setMode(PAggregateMode.AGGREGATE_MODE_PARTIAL)
      groupingExpressions.foreach(g => agg.addGrouping(ExprSerde.named(g, child.output)))
    }
    val node = PlanNode.newBuilder().setHashAggregate(agg).build()
    val ordering = outputOrdering
    if (ordering.isEmpty) node else BallistaSortExec.sortNode(node, ordering, output, None)
  }
}

/**
 * Spark's `SortExec`: sorts each task's partition (a global sort's range exchange comes
 * before). With `fetch`, keeps the first rows only (top-k).
 */
case class BallistaSortExec(
    sortOrder: Seq[SortOrder],
    child: SparkPlan,
    original: SparkPlan,
    fetch: Option[Int] = None,
    parentFallback: Option[String] = None
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaSort"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String =
    truncatedString(sortOrder, "[", ", ", "]", 25) + fetch.map(f => s" fetch=$f").getOrElse("")

  // Sorting keeps the input's columns and partitions, whatever `original` was.
  override def output: Seq[Attribute] = child.output
  override def outputPartitioning: Partitioning = child.outputPartitioning

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override def planNode(children: Seq[PlanNode]): PlanNode =
    BallistaSortExec.sortNode(children.head, sortOrder, child.output, fetch)
}

object BallistaSortExec {
  def orderProto(order: SortOrder, input: Seq[Attribute]): PSortOrder =
    PSortOrder
      .newBuilder()
      .setExpr(ExprSerde.toProto(order.child, input))
      .setAscending(order.direction == Ascending)
      .setNullsFirst(order.nullOrdering == NullsFirst)
      .build()

  def sortNode(
      input: PlanNode,
      order: Seq[SortOrder],
      inputAttrs: Seq[Attribute],
      fetch: Option[Int]
  ): PlanNode = {
    val sort = PSort.newBuilder().setInput(input)
    order.foreach(o => sort.addOrder(orderProto(o, inputAttrs)))
    fetch.foreach(f => sort.setFetch(f.toLong))
    PlanNode.newBuilder().setSort(sort).build()
  }
}

/** Spark's `LocalLimitExec` and `GlobalLimitExec`, within each task. */
case class BallistaLimitExec(
    limit: Int,
    offset: Int,
    child: SparkPlan,
    original: SparkPlan,
    parentFallback: Option[String] = None
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaLimit"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String = s"limit=$limit offset=$offset"

  override def output: Seq[Attribute] = child.output

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override def planNode(children: Seq[PlanNode]): PlanNode =
    BallistaLimitExec.limitNode(children.head, limit, offset)
}

object BallistaLimitExec {
  def limitNode(input: PlanNode, limit: Int, offset: Int): PlanNode = {
    val l = PLimit.newBuilder().setInput(input).setLimit(limit.toLong).setOffset(offset.toLong)
    PlanNode.newBuilder().setLimit(l).build()
  }
}

/** Spark's `ExpandExec`: one output row per projection for every input row. */
case class BallistaExpandExec(
    projections: Seq[Seq[Expression]],
    child: SparkPlan,
    original: SparkPlan,
    parentFallback: Option[String] = None
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaExpand"

  override protected def copyWithParentFallback(reason: String): BallistaExec =
    copy(parentFallback = Some(reason))

  override protected def describe: String = s"${projections.size} projections"

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val expand = PExpand.newBuilder().setInput(children.head).setSchema(TypeSerde.schema(output))
    projections.foreach { projection =>
      val p = ExpandProjection.newBuilder()
      projection.foreach(e => p.addExprs(ExprSerde.toProto(e, child.output)))
      expand.addProjections(p)
    }
    PlanNode.newBuilder().setExpand(expand).build()
  }
}
