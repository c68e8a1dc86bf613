package org.apache.spark.sql.ballista.execution

import scala.collection.JavaConverters._
import scala.util.control.NonFatal
import scala.util.hashing.MurmurHash3

import io.ballista.spark.jni.{Allocators, NativeLibrary, NativePlan}
import io.ballista.spark.proto.{Filter => PFilter, Limit => PLimit, ParquetScan, Plan, PlanNode}
import org.apache.hadoop.conf.Configuration
import org.apache.hadoop.fs.FileStatus
import org.apache.parquet.hadoop.ParquetFileReader
import org.apache.parquet.hadoop.metadata.BlockMetaData
import org.apache.parquet.hadoop.util.HadoopInputFile
import org.apache.spark.internal.Logging
import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.serde.{ExprSerde, NotNative, TypeSerde}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{
  And,
  Attribute,
  AttributeSeq,
  AttributeSet,
  Expression,
  PredicateHelper
}
import org.apache.spark.sql.catalyst.plans.QueryPlan
import org.apache.spark.sql.execution.datasources.HadoopFsRelation
import org.apache.spark.sql.types.StructType

/**
 * Estimates how many rows of a Parquet table pass a filter, by running the filter natively
 * over a sample of the table's rows: the first `RowsPerSample` rows of up to `Samples` row
 * groups spread over up to `Samples` files spread over the table. The table's row count comes
 * from the sampled files' footers, scaled to all files by their sizes.
 *
 * Spark's own estimate of a filtered scan is the size of the whole scan (it knows no
 * selectivity without collected column statistics), so a join whose side a filter makes small
 * is planned as a shuffle of both sides.
 */
object SampledScanRows extends Logging with PredicateHelper {

  val Samples = 4
  val RowsPerSample = 16384

  /**
   * Rows sampled, rows of them the filter kept, the table's estimated rows, and the time the
   * sample took.
   */
  final case class Sample(scanned: Long, passed: Long, tableRows: Double, millis: Long = 0) {

    /**
     * The rows that pass, at the upper end of what the sample allows (about two standard
     * deviations above the count, and never zero): a broadcast should not come out larger than
     * planned because the sample was lucky.
     */
    def upperRows: Double =
      if (scanned == 0) tableRows
      else tableRows * math.min(1.0, (passed + 2 * math.sqrt(passed.toDouble) + 3) / scanned)
  }

  /**
   * The sample of `condition` over `relation` (whose output attributes are `output`), or None
   * when the relation or the filter is not one the native engine reads, or the sample fails.
   */
  def sample(
      session: SparkSession,
      relation: HadoopFsRelation,
      output: Seq[Attribute],
      condition: Expression
  ): Option[Sample] = {
    val partitionAttrs = output.filter(a => relation.partitionSchema.fieldNames.contains(a.name))
    val dataAttrs = output.filterNot(partitionAttrs.contains)
    val (partitionFilters, dataFilters) =
      splitConjunctivePredicates(condition).partition(
        _.references.subsetOf(AttributeSet(partitionAttrs))
      )
    if (dataFilters.isEmpty) return None
    val filter = dataFilters.reduce(And)
    val read = dataAttrs.filter(a => dataFilters.exists(_.references.contains(a)))
    try {
      BallistaParquetScanExec.requireNativeReadable(relation)
      val files = relation.location
        .listFiles(partitionFilters, Nil)
        .flatMap(dir => dir.files.map(f => (f.fileStatus, dir.values)))
        .sortBy(_._1.getPath.toString)
      if (files.isEmpty) return Some(Sample(0, 0, 0))
      val conf = session.sessionState.conf
      val key = CacheKey(
        QueryPlan.normalizeExpressions(filter, AttributeSeq(output)).canonicalized,
        FilesDigest(files.map(_._1)),
        conf.sessionLocalTimeZone,
        conf.caseSensitiveAnalysis
      )
      Option(cache.synchronized(cache.get(key))).orElse {
        val sampled = run(session, relation, files, read, partitionAttrs, filter)
        cache.synchronized(cache.put(key, sampled))
        Some(sampled)
      }
    } catch {
      case e: NotNative =>
        logDebug(s"Ballista: no sample of filter $condition: ${e.reason}")
        None
      case NonFatal(e) =>
        logWarning(s"Ballista: sampling filter $condition failed, planning without it", e)
        None
    }
  }

  /**
   * What identifies a sample: the filter (without its attributes' ids, so that another query's
   * equal filter over the same table finds it), the files it read (a file written since, or
   * one more, makes another key) and the settings its evaluation depends on.
   */
  final private case class CacheKey(
      filter: Expression,
      files: FilesDigest,
      timeZone: String,
      caseSensitive: Boolean
  )

  /**
   * A table's files in a few bytes (a key must not hold the listing of a table of many files):
   * their number, total size and a hash of every path, size and modification time. Two
   * listings mistaken for one would only cost a planning choice, never a result.
   */
  final private case class FilesDigest(count: Int, bytes: Long, hash: Int)

  private object FilesDigest {
    def apply(files: Seq[FileStatus]): FilesDigest = FilesDigest(
      files.size,
      files.map(_.getLen).sum,
      MurmurHash3.seqHash(files.map(f => (f.getPath.toString, f.getLen, f.getModificationTime)))
    )
  }

  /** The samples of the most recently planned filters: each costs 20 to 70 ms of planning. */
  private val cache = new java.util.LinkedHashMap[CacheKey, Sample](64, 0.75f, true) {
    override def removeEldestEntry(e: java.util.Map.Entry[CacheKey, Sample]): Boolean =
      size() > 256
  }

  private def run(
      session: SparkSession,
      relation: HadoopFsRelation,
      files: Seq[(FileStatus, InternalRow)],
      read: Seq[Attribute],
      partitionAttrs: Seq[Attribute],
      filter: Expression
  ): Sample = {
    val start = System.nanoTime()
    val scanOutput = read ++ partitionAttrs
    val scan = ParquetScan
      .newBuilder()
      .setDataSchema(TypeSerde.schema(StructType(read.map(a => relation.dataSchema(a.name)))))
      .setPartitionSchema(TypeSerde.schema(relation.partitionSchema))
      .setCaseSensitive(session.sessionState.conf.caseSensitiveAnalysis)
      .build()
    val predicate = ExprSerde.toProto(filter, scanOutput)
    val hadoopConf = session.sessionState.newHadoopConfWithOptions(relation.options)
    val sampledFiles = spread(files, Samples)
    val footers = sampledFiles.map { case (f, _) => blocks(f, hadoopConf) }
    val sampledBytes = sampledFiles.map(_._1.getLen).sum
    val sampledRows = footers.flatten.map(_.getRowCount).sum
    val totalBytes = files.map(_._1.getLen).sum
    val tableRows =
      if (sampledBytes == 0) 0.0 else sampledRows.toDouble * totalBytes / sampledBytes
    val groups = spread(
      sampledFiles.zip(footers).flatMap { case (file, bs) =>
        bs.filter(_.getRowCount > 0).map(b => (file, b))
      },
      Samples
    )
    NativeLibrary.load()
    var scanned = 0L
    var passed = 0L
    groups.foreach { case ((status, values), block) =>
      // The row group's first column chunk holds its start: the byte range reads it alone.
      val file = BallistaParquetScanExec.scanFile(
        status.getPath.toUri.toString,
        block.getStartingPos,
        math.max(1L, block.getColumns.get(0).getTotalSize),
        status.getLen,
        status.getModificationTime,
        values,
        relation.partitionSchema
      )
      val scanNode = PlanNode.newBuilder().setParquetScan(scan.toBuilder.addFiles(file))
      val limitNode =
        PlanNode
          .newBuilder()
          .setLimit(PLimit.newBuilder().setLimit(RowsPerSample).setInput(scanNode))
      val filterNode =
        PlanNode
          .newBuilder()
          .setFilter(PFilter.newBuilder().setPredicate(predicate).setInput(limitNode))
      val plan = Plan
        .newBuilder()
        .setRoot(filterNode)
        .setOutputSchema(TypeSerde.schema(scanOutput))
        .setSessionTimezone(session.sessionState.conf.sessionLocalTimeZone)
        .setBatchSize(RowsPerSample)
        .build()
      scanned += math.min(RowsPerSample.toLong, block.getRowCount)
      passed += countRows(plan)
    }
    Sample(scanned, passed, tableRows, (System.nanoTime() - start) / 1000000)
  }

  /** Up to `n` elements spread evenly over `all`, first and last included. */
  private[ballista] def spread[T](all: Seq[T], n: Int): Seq[T] =
    if (all.size <= n) all
    else (0 until n).map(i => all((i.toLong * (all.size - 1) / (n - 1)).toInt)).distinct

  private def blocks(file: FileStatus, conf: Configuration): Seq[BlockMetaData] = {
    val reader = ParquetFileReader.open(HadoopInputFile.fromStatus(file, conf))
    try reader.getFooter.getBlocks.asScala.toSeq
    finally reader.close()
  }

  private def countRows(plan: Plan): Long = {
    val allocator = Allocators.child("ballista-scan-sample")
    try {
      val running = NativePlan.execute(plan.toByteArray, Array.empty, allocator)
      try {
        var rows = 0L
        while (running.hasNext) rows += running.next().getRowCount
        rows
      } finally running.close()
    } finally allocator.close()
  }
}
