package io.ballista.spark

import java.nio.file.{Files, Path}

import scala.concurrent.{Await, Future}
import scala.concurrent.ExecutionContext.Implicits.global
import scala.concurrent.duration._

import io.ballista.spark.jni.NativeEngine
import org.apache.spark.SparkException
import org.apache.spark.network.util.JavaUtils
import org.apache.spark.sql.{DataFrame, Row, SparkSession}
import org.apache.spark.sql.execution.SparkPlan
import org.apache.spark.sql.execution.adaptive.{AdaptiveSparkPlanExec, QueryStageExec}
import org.apache.spark.sql.types.StructType
import org.scalatest.Assertions._
import org.scalatest.concurrent.Eventually._
import org.scalatest.time.{Seconds, Span}

/** The Spark session the suites share (one SparkContext per JVM), with the plugin enabled. */
object SparkFixture {

  def session: SparkSession =
    SparkSession.getActiveSession.filter(!_.sparkContext.isStopped).getOrElse(create("ballista"))

  def create(pluginClass: String): SparkSession = builder(pluginClass).getOrCreate()

  /** The shared session's settings, for suites that need an application of their own. */
  def builder(pluginClass: String): SparkSession.Builder =
    SparkSession
      .builder()
      .master("local[2]")
      .appName("ballista-integration-tests")
      .config("spark.plugins", pluginClass)
      // Native shuffles over Arrow Flight, as recommended (PluginSuite also runs without).
      .config(
        "spark.shuffle.manager",
        "org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager"
      )
      .config("spark.sql.shuffle.partitions", "4")
      // UiSuite reads the Spark UI; port 0 binds a free port, so concurrent runs do not clash.
      .config("spark.ui.enabled", "true")
      .config("spark.ui.port", "0")
      .config("spark.sql.session.timeZone", "UTC")

  /** Stops the active application; the next `session` starts a new one. */
  def stop(): Unit = {
    SparkSession.getActiveSession.foreach(_.stop())
    SparkSession.getDefaultSession.foreach(_.stop())
    SparkSession.clearActiveSession()
    SparkSession.clearDefaultSession()
  }

  /** A new directory, deleted with its contents when the JVM exits. */
  def tempDir(prefix: String): Path = {
    val dir = Files.createTempDirectory(prefix)
    tempDirs.add(dir.toFile)
    dir
  }

  // `File.deleteOnExit` skips directories that are not empty: the tests' Parquet files stayed.
  private lazy val tempDirs = {
    val dirs = new java.util.concurrent.ConcurrentLinkedQueue[java.io.File]()
    sys.addShutdownHook(dirs.forEach(d => scala.util.Try(JavaUtils.deleteRecursively(d))))
    dirs
  }

  /**
   * Writes 1000 rows (`id`, decimal `v`, `k` in 0..2) as Parquet with native execution off, and
   * registers them as the temporary view `name`. Returns the Parquet directory.
   */
  def sampleTable(spark: SparkSession, name: String): String = {
    val path = tempDir("ballista-sample").resolve(s"$name.parquet").toString
    spark.conf.set("spark.ballista.enabled", "false")
    spark
      .range(0, 1000)
      .selectExpr("id", "CAST(id AS DECIMAL(12,2)) / 7 AS v", "id % 3 AS k")
      .write
      .parquet(path)
    spark.read.parquet(path).createOrReplaceTempView(name)
    path
  }

  /** Every operator of an executed plan, including those inside AQE query stages. */
  def operators(plan: SparkPlan): Seq[SparkPlan] = plan match {
    case a: AdaptiveSparkPlanExec => operators(a.executedPlan)
    case s: QueryStageExec => s +: operators(s.plan)
    case p => p +: p.children.flatMap(operators)
  }

  def nativeOperatorNames(df: DataFrame): Seq[String] =
    operators(df.queryExecution.executedPlan).map(_.nodeName).filter(_.startsWith("Ballista"))

  /**
   * Runs `sql` with native execution off, then on, and checks that both give exactly the same
   * rows (in order if `ordered`; decimals compared with their scale) and the same schema.
   * Returns the native run's DataFrame for further checks.
   */
  def assertSameAsSpark(spark: SparkSession, sql: String, ordered: Boolean): DataFrame = {
    val vanillaDf = vanilla(spark, sql)
    val vanillaRows = vanillaDf.collect().toSeq
    assertNativeGives(spark, sql, vanillaDf.schema, vanillaRows, ordered)
  }

  /** `sql` with native execution off. */
  def vanilla(spark: SparkSession, sql: String): DataFrame = {
    spark.conf.set("spark.ballista.enabled", "false")
    val df = spark.sql(sql)
    df.collect()
    assert(nativeOperatorNames(df).isEmpty, "native operators ran while disabled")
    df
  }

  /**
   * Runs `sql` natively and checks that it gives exactly `vanillaRows` (what vanilla Spark gave,
   * possibly in another application) with `vanillaSchema`. Returns the native DataFrame.
   */
  def assertNativeGives(
      spark: SparkSession,
      sql: String,
      vanillaSchema: StructType,
      vanillaRows: Seq[Row],
      ordered: Boolean
  ): DataFrame = {
    spark.conf.set("spark.ballista.enabled", "true")
    val nativeDf = spark.sql(sql)
    val native = nativeDf.collect().toSeq
    assert(nativeDf.schema == vanillaSchema)
    val (expected, actual) =
      if (ordered) (vanillaRows, native) else (sortRows(vanillaRows), sortRows(native))
    assert(actual.size == expected.size, s"row count differs for: $sql")
    expected.zip(actual).zipWithIndex.foreach { case ((e, a), i) =>
      assert(a == e, s"row $i differs for: $sql\n spark:  $e\n native: $a")
    }
    nativeDf
  }

  private def sortRows(rows: Seq[Row]): Seq[Row] = rows.sortBy(_.toString)

  /**
   * Runs `sql` (a query that keeps native plans busy for minutes), cancels its job group once
   * a native plan has been running for a few seconds, and checks that the query fails as
   * cancelled and that its native plans are closed. The task threads are not interrupted:
   * only the native cancellation can stop a task blocked in native code.
   */
  def cancelWhileNative(spark: SparkSession, sql: String): Unit = {
    val group = s"ballista-cancel-${System.nanoTime()}"
    val query = Future {
      spark.sparkContext.setJobGroup(group, "cancel test", interruptOnCancel = false)
      try spark.sql(sql).collect()
      finally spark.sparkContext.clearJobGroup()
    }
    // Small jobs (a broadcast) may come first; the long one then runs for minutes.
    eventually(timeout(Span(60, Seconds))) { assert(NativeEngine.openPlanCount() > 0) }
    Thread.sleep(5000)
    assert(NativeEngine.openPlanCount() > 0, "the query ended before it was cancelled")
    spark.sparkContext.cancelJobGroup(group)
    val error = intercept[SparkException](Await.result(query, 60.seconds))
    assert(error.getMessage.toLowerCase.contains("cancel"), error.getMessage)
    eventually(timeout(Span(30, Seconds))) { assert(NativeEngine.openPlanCount() == 0) }
  }
}

/**
 * The TPC-H tables and queries: the test script generates a small scale factor with
 * tpchgen-cli and passes its directory in BALLISTA_TPCH_DIR, the queries' in BALLISTA_QUERY_DIR.
 */
object Tpch {
  val Tables: Seq[String] =
    Seq("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")

  /** Registers every table as a temporary view of `spark`. */
  def register(spark: SparkSession): Unit = {
    val dir = sys.env.getOrElse(
      "BALLISTA_TPCH_DIR",
      fail("BALLISTA_TPCH_DIR is not set: run the tests with dev/test.sh, which makes the data")
    )
    Tables.foreach { t =>
      val path = new java.io.File(dir, s"$t.parquet")
      assert(path.exists(), s"missing TPC-H table $path")
      spark.read.parquet(path.getPath).createOrReplaceTempView(t)
    }
  }

  /** The text of query `n`. */
  def query(n: Int): String = {
    val source =
      scala.io.Source.fromFile(new java.io.File(sys.env("BALLISTA_QUERY_DIR"), f"q$n%02d.sql"))
    try source.mkString
    finally source.close()
  }
}
