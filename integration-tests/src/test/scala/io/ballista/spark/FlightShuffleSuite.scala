package io.ballista.spark

import java.io.File
import java.nio.file.Files

import scala.collection.JavaConverters._
import scala.collection.mutable.ArrayBuffer
import scala.concurrent.{Await, Future}
import scala.concurrent.ExecutionContext.Implicits.global
import scala.concurrent.duration._

import org.apache.spark.FetchFailed
import org.apache.spark.scheduler.{
  SparkListener,
  SparkListenerJobStart,
  SparkListenerStageCompleted,
  SparkListenerTaskEnd
}
import org.apache.spark.sql.{DataFrame, Row, SparkSession}
import org.apache.spark.sql.ballista.execution.BallistaShuffleExchangeExec
import org.apache.spark.sql.ballista.shuffle.BallistaShuffleManager
import org.apache.spark.sql.types.StructType
import org.scalatest.BeforeAndAfterAll
import org.scalatest.concurrent.Eventually._
import org.scalatest.funsuite.AnyFunSuite
import org.scalatest.time.{Seconds, Span}

/**
 * Native shuffles over Arrow Flight in a real cluster: Spark's `local-cluster` mode, two
 * executor processes (each with its own Flight server) besides the driver, with Ballista's
 * shuffle manager. Results are compared with vanilla Spark's in the same application; executor
 * loss and corrupt map output files must end in Spark re-running the lost map tasks, not in
 * wrong results.
 *
 * Executors are started from the Spark distribution in SPARK_HOME (dev/test.sh points it at
 * the pyspark install) with the plugin's jar on their class path.
 */
class FlightShuffleSuite extends AnyFunSuite with BeforeAndAfterAll {

  private val ShuffleQueries = Seq(3, 5, 9, 10, 13, 18, 21)

  private var spark: SparkSession = _

  override def beforeAll(): Unit = {
    SparkFixture.stop()
    val sparkHome = sys.env.getOrElse(
      "SPARK_HOME",
      fail("SPARK_HOME is not set: local-cluster executors start from a Spark 3.5 distribution")
    )
    assert(new File(sparkHome, "jars").isDirectory, s"no Spark distribution in $sparkHome")
    spark = SparkFixture
      .builder("ballista")
      .master("local-cluster[2,1,2048]")
      .config("spark.shuffle.manager", classOf[BallistaShuffleManager].getName)
      .config("spark.executor.extraClassPath", pluginJar)
      // Spark's launcher looks for a source build's directories without it.
      .config("spark.executorEnv.SPARK_SCALA_VERSION", "2.12")
      .config("spark.driver.extraClassPath", pluginJar)
      .config("spark.ballista.shuffle.flight.retryWaitMs", "100")
      .config("spark.ballista.shuffle.flight.maxRetries", "2")
      // Broadcasts would hide the shuffles of small tables.
      .config("spark.sql.autoBroadcastJoinThreshold", "-1")
      .getOrCreate()
    Tpch.register(spark)
  }

  override def afterAll(): Unit = SparkFixture.stop()

  /** The plugin's packaged jar (with the native library), for the executors' class path. */
  private def pluginJar: String = {
    val source = new File(
      classOf[BallistaPlugin].getProtectionDomain.getCodeSource.getLocation.toURI
    )
    val jar =
      if (source.isFile) Some(source)
      else
        Option(new File("../spark-plugin/target").listFiles()).toSeq.flatten.find { f =>
          f.getName.startsWith("ballista-spark-") && f.getName.endsWith(".jar")
        }
    jar.map(_.getAbsolutePath).getOrElse(fail(s"no packaged plugin jar next to $source"))
  }

  /** Runs `body` and returns it with the tasks that ended while it ran. */
  private def withTaskEnds[T](body: => T): (T, Seq[SparkListenerTaskEnd]) = {
    val ends = ArrayBuffer[SparkListenerTaskEnd]()
    val marker = s"ballista-marker-${System.nanoTime()}"
    @volatile var markerSeen = false
    val listener = new SparkListener {
      override def onTaskEnd(end: SparkListenerTaskEnd): Unit = ends.synchronized(ends += end)
      override def onJobStart(start: SparkListenerJobStart): Unit =
        if (Option(start.properties).exists(_.getProperty(MarkerKey) == marker)) markerSeen = true
    }
    spark.sparkContext.addSparkListener(listener)
    try {
      val result = body
      // Listeners get events in order, asynchronously: once a later job's start arrives, so
      // have the task ends of everything before it.
      spark.sparkContext.setLocalProperty(MarkerKey, marker)
      try spark.sparkContext.parallelize(Seq(1), 1).count()
      finally spark.sparkContext.setLocalProperty(MarkerKey, null)
      eventually(timeout(Span(30, Seconds)))(assert(markerSeen))
      (result, ends.synchronized(ends.toList))
    } finally spark.sparkContext.removeSparkListener(listener)
  }

  private val MarkerKey = "ballista.test.marker"

  private def flightMetric(df: DataFrame, name: String): Long =
    SparkFixture
      .operators(df.queryExecution.executedPlan)
      .collect { case e: BallistaShuffleExchangeExec => e.metrics.get(name).map(_.value) }
      .flatten
      .sum

  private def vanillaAnswer(sql: String): (StructType, Seq[Row]) = {
    val df = SparkFixture.vanilla(spark, sql)
    (df.schema, df.collect().toSeq)
  }

  test("TPC-H queries with native shuffles over Arrow Flight give vanilla Spark's results") {
    ShuffleQueries.foreach { q =>
      val sql = Tpch.query(q)
      val (schema, expected) = vanillaAnswer(sql)
      val (df, ends) =
        withTaskEnds(SparkFixture.assertNativeGives(spark, sql, schema, expected, ordered = true))
      assert(
        SparkFixture.nativeOperatorNames(df).contains("BallistaShuffleExchange"),
        s"Q$q has no native shuffle"
      )
      assert(flightMetric(df, "flightBlocksFetched") > 0, s"Q$q fetched nothing over Flight")
      assert(flightMetric(df, "flightBytesFetched") > 0, s"Q$q fetched no bytes over Flight")
      // Two executors: some blocks come from the other one (the task metrics of Spark's UI).
      val remote =
        ends.flatMap(e => Option(e.taskMetrics)).map(_.shuffleReadMetrics.remoteBytesRead).sum
      assert(remote > 0, s"Q$q read no shuffle bytes from another executor")
    }
  }

  test("an executor reads its own map outputs from their files and fetches the others") {
    // Every reduce task reads all its blocks (a join may stop reading when its build side is
    // empty), and two shuffles of several map tasks spread blocks over both executors.
    val sql = "SELECT l_suppkey % 10 AS k, count(*), sum(l_quantity) " +
      "FROM (SELECT /*+ REPARTITION(4) */ * FROM lineitem) GROUP BY 1"
    val (schema, expected) = vanillaAnswer(sql)
    val key = BallistaConf.FlightReadLocalBlocks.key
    // (blocks fetched over Flight, Spark's local and remote blocks read)
    def run(readLocal: Boolean): (Long, Long, Long) = {
      spark.conf.set(key, readLocal.toString)
      try {
        val (df, ends) =
          withTaskEnds(
            SparkFixture.assertNativeGives(spark, sql, schema, expected, ordered = false)
          )
        val reads = ends.flatMap(e => Option(e.taskMetrics)).map(_.shuffleReadMetrics)
        (
          flightMetric(df, "flightBlocksFetched"),
          reads.map(_.localBlocksFetched).sum,
          reads.map(_.remoteBlocksFetched).sum
        )
      } finally spark.conf.unset(key)
    }
    val (fetchedAll, localBefore, remoteBefore) = run(readLocal = false)
    assert(fetchedAll == localBefore + remoteBefore)
    val (fetched, local, remote) = run(readLocal = true)
    assert(local > 0 && remote > 0, s"local $local, remote $remote")
    assert(fetched == remote)
  }

  test("round-robin and range repartitioning over Flight keep every row") {
    Seq(
      "SELECT l_orderkey, l_linenumber, l_quantity FROM (SELECT /*+ REPARTITION(7) */ * FROM lineitem)",
      "SELECT o_orderkey, o_totalprice FROM (SELECT /*+ REPARTITION_BY_RANGE(5, o_totalprice) */ * FROM orders)"
    ).foreach { sql =>
      val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
      assert(SparkFixture.nativeOperatorNames(df).contains("BallistaShuffleExchange"), sql)
      assert(flightMetric(df, "flightBlocksFetched") > 0, sql)
    }
  }

  test("native map outputs are Spark shuffle files in the executors' local directories") {
    SparkFixture.assertSameAsSpark(spark, Tpch.query(3), ordered = true)
    val files = executorFiles().map(_.getFileName.toString)
    assert(files.exists(f => f.startsWith("shuffle_") && f.endsWith(".data")), files.take(20))
    assert(files.exists(f => f.startsWith("shuffle_") && f.endsWith(".index")), files.take(20))
  }

  test("corrupt map output files give a fetch failure and the map stage runs again") {
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try {
      val sql = Tpch.query(13)
      val (schema, expected) = vanillaAnswer(sql)
      spark.conf.set("spark.ballista.enabled", "true")
      val df = spark.sql(sql)
      df.collect()
      // The plan's map outputs exist now; the next run of the same plan only reads them.
      val dataFiles = executorFiles()
        .filter(p => p.getFileName.toString.matches("shuffle_\\d+_\\d+_0\\.data"))
        .toList
      assert(dataFiles.nonEmpty)
      dataFiles.foreach { p =>
        val bytes = Files.readAllBytes(p)
        // Truncated and garbled: a reader that trusted the bytes would return wrong rows.
        Files.write(p, bytes.take(bytes.length / 2).map(b => (b ^ 0x5a).toByte))
      }
      val (rows, ends) = withTaskEnds(df.collect().toSeq)
      assert(df.schema == schema)
      assert(rows == expected)
      assert(ends.exists(_.reason.isInstanceOf[FetchFailed]), "no fetch failure was reported")
    } finally spark.conf.set("spark.sql.adaptive.enabled", "true")
  }

  test("a query still gives vanilla Spark's results when an executor is killed while it runs") {
    val sql = Tpch.query(18)
    val (schema, expected) = vanillaAnswer(sql)
    spark.conf.set("spark.ballista.enabled", "true")
    val killed = new java.util.concurrent.atomic.AtomicBoolean(false)
    // Once the first map stage is done (its output on both executors), kill one executor
    // process outright, as a machine failure would.
    val killer = new SparkListener {
      override def onStageCompleted(stage: SparkListenerStageCompleted): Unit =
        if (stage.stageInfo.failureReason.isEmpty && killed.compareAndSet(false, true)) {
          executorProcesses.headOption.foreach(_.destroyForcibly())
        }
    }
    spark.sparkContext.addSparkListener(killer)
    try {
      val query = Future(spark.sql(sql).collect().toSeq)
      val rows = Await.result(query, 5.minutes)
      assert(killed.get(), "no executor was killed")
      assert(spark.sql(sql).schema == schema)
      assert(rows == expected)
    } finally spark.sparkContext.removeSparkListener(killer)
    // The cluster replaces the lost executor; later queries still run on two.
    eventually(timeout(Span(120, Seconds))) {
      assert(spark.sparkContext.getExecutorMemoryStatus.size == 3)
    }
  }

  /**
   * The files in the executors' local directories. The workers choose the directories and
   * tell the executors in SPARK_EXECUTOR_DIRS, which a query reads on the executors (Spark's own
   * `reflect`: the test's classes are not on the executors' class path).
   */
  private def executorFiles(): Seq[java.nio.file.Path] = {
    val dirs = spark
      .range(0, 64, 1, 16)
      .selectExpr("reflect('java.lang.System', 'getenv', 'SPARK_EXECUTOR_DIRS') AS dirs")
      .distinct()
      .collect()
      .flatMap(row => Option(row.getString(0)).toSeq.flatMap(_.split(File.pathSeparator)))
      .filter(d => d.nonEmpty && d != "null")
    assert(dirs.nonEmpty, "the executors have no SPARK_EXECUTOR_DIRS")
    dirs.toSeq.distinct.flatMap { dir =>
      val root = new File(dir).toPath
      if (!Files.exists(root)) Nil
      else Files.walk(root).iterator().asScala.filter(Files.isRegularFile(_)).toList
    }
  }

  /** The executor JVMs the local cluster's workers started (children of this process). */
  private def executorProcesses: Seq[ProcessHandle] =
    ProcessHandle
      .current()
      .descendants()
      .iterator()
      .asScala
      .filter(_.info().commandLine().orElse("").contains("CoarseGrainedExecutorBackend"))
      .toSeq
}
