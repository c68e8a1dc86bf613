package io.ballista.spark

import java.util.concurrent.ConcurrentLinkedQueue

import scala.collection.JavaConverters._

import io.ballista.spark.jni.{NativeEngine, NativeLog}
import org.apache.logging.log4j.LogManager
import org.apache.logging.log4j.core.{LogEvent, Logger => CoreLogger}
import org.apache.logging.log4j.core.appender.AbstractAppender
import org.apache.logging.log4j.core.config.Property
import org.apache.spark.sql.{DataFrame, SparkSession}
import org.apache.spark.sql.ballista.execution.BallistaParquetScanExec
import org.apache.spark.sql.execution.SparkPlan
import org.scalatest.concurrent.Eventually._
import org.scalatest.funsuite.AnyFunSuite
import org.scalatest.time.{Seconds, Span}

/**
 * Native operators' SQL metrics (checked against what known data must give) and the
 * cancellation of tasks blocked in native code.
 */
class MetricsSuite extends AnyFunSuite {

  private def spark: SparkSession = SparkFixture.session

  /** ids 0 until `rows`, sorted, with `k = id % 10`, in row groups of about 100 rows. */
  private def numbers(name: String, rows: Long): Unit = {
    val path = SparkFixture.tempDir("ballista-metrics").resolve(s"$name.parquet").toString
    spark.conf.set("spark.ballista.enabled", "false")
    spark
      .range(0, rows, 1, 1)
      .selectExpr("id", "id % 10 AS k")
      .write
      .option("parquet.block.size", "1024")
      .parquet(path)
    spark.read.parquet(path).createOrReplaceTempView(name)
    spark.conf.set("spark.ballista.enabled", "true")
  }

  private def native(df: DataFrame, nodeName: String): SparkPlan =
    SparkFixture
      .operators(df.queryExecution.executedPlan)
      .find(_.nodeName == nodeName)
      .getOrElse(fail(s"no $nodeName in ${df.queryExecution.executedPlan}"))

  private def metric(plan: SparkPlan, name: String): Long =
    plan.metrics.getOrElse(name, fail(s"${plan.nodeName} has no metric $name")).value

  test("scan and filter report their own output rows, bytes and pruned row groups") {
    numbers("metered", 10000)
    val df = SparkFixture.assertSameAsSpark(
      spark,
      "SELECT id FROM metered WHERE id >= 9000 AND k = 3",
      ordered = false
    )
    val scan = native(df, "BallistaParquetScan")
    val filter = native(df, "BallistaFilter")
    // Row groups hold consecutive ids: statistics skip those below 9000, and the scan
    // returns the rows of the row groups it reads (at least the 1000 ids >= 9000).
    assert(metric(scan, "numRowGroupsPruned") > 0)
    val scanned = metric(scan, "numOutputRows")
    assert(scanned >= 1000 && scanned < 10000, s"scan rows $scanned")
    assert(metric(scan, "bytesScanned") > 0)
    assert(metric(filter, "numOutputRows") == 100)
    assert(metric(filter, "numOutputBatches") >= 1)
    assert(metric(filter, "nativeTime") > 0)
  }

  test("aggregations report rows and peak memory") {
    numbers("grouped", 5000)
    val df = SparkFixture.assertSameAsSpark(
      spark,
      "SELECT k, count(*), sum(id) FROM grouped GROUP BY k",
      ordered = false
    )
    val aggregates = SparkFixture
      .operators(df.queryExecution.executedPlan)
      .filter(_.nodeName == "BallistaHashAggregate")
    assert(aggregates.size == 2)
    // Both phases output one row per key (the partial one per task) and count the memory
    // of their hash tables.
    aggregates.foreach { a =>
      assert(metric(a, "numOutputRows") >= 10, a)
      assert(metric(a, "peakMemory") > 0, a)
    }
  }

  /** The messages the native library logs (through `NativeLog`) while `body` runs. */
  private def nativeLogDuring(body: => Unit): Seq[String] = {
    val messages = new ConcurrentLinkedQueue[String]()
    val appender = new AbstractAppender("ballista-test", null, null, true, Property.EMPTY_ARRAY) {
      override def append(event: LogEvent): Unit =
        messages.add(event.getMessage.getFormattedMessage)
    }
    appender.start()
    val logger = LogManager.getLogger(NativeLog.LOGGER_NAME).asInstanceOf[CoreLogger]
    logger.addAppender(appender)
    try body
    finally logger.removeAppender(appender)
    messages.asScala.toSeq
  }

  test("cancelling a job stops a task blocked in native code; the next query succeeds") {
    numbers("exploding", 200000)
    val logged = nativeLogDuring(cancelExplodingJoin())
    // The native engine's own log line, through the JVM's log4j2 configuration.
    assert(logged.exists(_.contains("native task plan cancelled")), logged)
  }

  private def cancelExplodingJoin(): Unit = {
    // 20,000 rows per key on both sides: 4 billion joined rows, counted inside one native
    // plan per task (broadcast hash join + partial count), far longer than the test waits.
    SparkFixture.cancelWhileNative(
      spark,
      "SELECT count(*) FROM exploding a JOIN exploding b ON a.k = b.k"
    )
    SparkFixture.assertSameAsSpark(
      spark,
      "SELECT k, count(*) FROM exploding WHERE id < 100 GROUP BY k",
      ordered = false
    )
  }

  test("a broadcast's hash table is built once per executor; each task counts its own rows") {
    numbers("probed", 20000)
    numbers("dims", 10)
    // Small splits: the probing scan runs as many tasks, each joining with the broadcast.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "8k")
    try {
      val sql = "SELECT /*+ BROADCAST(d) */ p.id, d.id AS d FROM probed p JOIN dims d " +
        "ON p.k = d.k WHERE d.id < 5"
      var df: DataFrame = null
      val logged = nativeLogDuring {
        df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
      }
      val plan = df.queryExecution.executedPlan
      val tasks = SparkFixture
        .operators(plan)
        .collect { case s: BallistaParquetScanExec if s.output.size == 2 => s }
        .map(_.filePartitions.size)
        .max
      assert(tasks > 2, s"$tasks tasks")
      val shared = logged.filter(_.contains("shared by this process's tasks"))
      assert(shared.size == 1, logged)
      // The tasks' copies of the join share one table, but each reports only its own rows.
      val join = native(df, "BallistaHashJoin")
      assert(metric(join, "numOutputRows") == 10000)
      assert(metric(join, "nativeTime") > 0)
    } finally spark.conf.unset("spark.sql.files.maxPartitionBytes")
  }

  test("the counting allocator's peak is close to what the operators reserved") {
    numbers("many_groups", 1000000)
    NativeEngine.resetNativeMemoryPeak()
    val before = NativeEngine.nativeMemoryInUse()
    // Two rows per group: a large hash table in each task's partial aggregation.
    val df = spark.sql("SELECT id % 500000 AS g, count(*) FROM many_groups GROUP BY g")
    df.collect()
    val allocated = NativeEngine.nativeMemoryPeak() - before
    val reserved = SparkFixture
      .operators(df.queryExecution.executedPlan)
      .filter(_.nodeName.startsWith("Ballista"))
      .map(_.metrics.get("peakMemory").map(_.value).getOrElse(0L))
      .max
    info(s"native peak allocated $allocated bytes; largest operator reservation $reserved bytes")
    assert(reserved > (1 << 20), s"reserved $reserved")
    // What the engine reserves is its estimate of what it allocates: both count the hash
    // table; the allocator also counts input batches and buffers no operator reserves.
    assert(allocated >= reserved / 2 && allocated <= reserved * 4, s"$allocated vs $reserved")
  }
}
