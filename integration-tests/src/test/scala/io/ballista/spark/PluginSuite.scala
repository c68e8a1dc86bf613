package io.ballista.spark

import io.ballista.spark.jni.{NativeEngine, NativePlan}
import org.apache.spark.{JobExecutionStatus, SparkException, SparkJobInfo}
import org.apache.spark.sql.{DataFrame, Row, SparkSession}
import org.apache.spark.sql.ballista.execution.{
  BallistaExec,
  BallistaShuffleExchangeExec,
  BallistaSingleTaskReadExec,
  BallistaSortExec
}
import org.apache.spark.sql.catalyst.plans.physical.RangePartitioning
import org.apache.spark.sql.execution.{FormattedMode, SparkPlan}
import org.scalatest.concurrent.Eventually._
import org.scalatest.funsuite.AnyFunSuite
import org.scalatest.time.{Seconds, Span}

/** Enabling and disabling the plugin, and errors surfacing as Spark exceptions. */
class PluginSuite extends AnyFunSuite {

  private def spark: SparkSession = SparkFixture.session

  private def sampleTable(name: String): String = SparkFixture.sampleTable(spark, name)

  test("spark.plugins=ballista registers the extensions without spark.sql.extensions") {
    val extensions = spark.sparkContext.getConf.get("spark.sql.extensions")
    assert(extensions.split(",").contains(classOf[BallistaSessionExtensions].getName))
    sampleTable("sample")
    val df = SparkFixture.assertSameAsSpark(
      spark,
      "SELECT k, sum(v), count(*) FROM sample WHERE id > 10 GROUP BY k",
      ordered = false
    )
    assert(SparkFixture.nativeOperatorNames(df).contains("BallistaHashAggregate"))
  }

  test("spark.ballista.enabled=false runs vanilla Spark") {
    sampleTable("sample_off")
    spark.conf.set("spark.ballista.enabled", "false")
    val df = spark.sql("SELECT k, sum(v) FROM sample_off GROUP BY k")
    df.collect()
    assert(SparkFixture.nativeOperatorNames(df).isEmpty)
    spark.conf.set("spark.ballista.enabled", "true")
  }

  test("a corrupt Parquet file fails the query with a Spark exception; the session survives") {
    val path = sampleTable("corrupt")
    val dataFile = new java.io.File(path).listFiles().filter(_.getName.endsWith(".parquet")).head
    java.nio.file.Files.write(dataFile.toPath, "PAR1 not really parquet PAR1".getBytes("UTF-8"))
    spark.conf.set("spark.ballista.enabled", "true")
    val error = intercept[SparkException] {
      spark.sql("SELECT sum(v) FROM corrupt WHERE id > 0").collect()
    }
    assert(error.getMessage.nonEmpty)
    assert(spark.range(10).count() == 10)
    eventually(timeout(Span(30, Seconds))) { assert(NativeEngine.openPlanCount() == 0) }
  }

  test("a missing Parquet file fails the query with a Spark exception") {
    val path = sampleTable("missing")
    new java.io.File(path).listFiles().filter(_.getName.endsWith(".parquet")).foreach(_.delete())
    spark.conf.set("spark.ballista.enabled", "true")
    val error = intercept[SparkException] {
      spark.sql("SELECT sum(v) FROM missing WHERE id > 0").collect()
    }
    assert(error.getMessage.nonEmpty)
    eventually(timeout(Span(30, Seconds))) { assert(NativeEngine.openPlanCount() == 0) }
  }

  test("partitioned tables: partition columns and partition pruning are native") {
    val path = SparkFixture.tempDir("ballista-partitioned").resolve("t.parquet").toString
    spark.conf.set("spark.ballista.enabled", "false")
    spark
      .range(0, 500)
      .selectExpr(
        "id",
        "CAST(id AS DECIMAL(12,2)) AS v",
        "CAST(id % 4 AS INT) AS part",
        "CASE WHEN id % 3 = 0 THEN 'x' ELSE 'y' END AS tag"
      )
      .write
      .partitionBy("part", "tag")
      .parquet(path)
    spark.read.parquet(path).createOrReplaceTempView("partitioned")
    val grouped = SparkFixture.assertSameAsSpark(
      spark,
      "SELECT part, tag, count(*), sum(v), max(id) FROM partitioned GROUP BY part, tag",
      ordered = false
    )
    assert(SparkFixture.nativeOperatorNames(grouped).contains("BallistaParquetScan"))
    assert(SparkFixture.nativeOperatorNames(grouped).count(_ == "BallistaHashAggregate") == 2)
    val pruned = SparkFixture.assertSameAsSpark(
      spark,
      "SELECT id, v, part FROM partitioned WHERE part = 2 AND tag = 'x' AND v > 10",
      ordered = false
    )
    assert(SparkFixture.nativeOperatorNames(pruned).contains("BallistaFilter"))
  }

  test("cancelling a job stops its native plans and releases them; the next query succeeds") {
    sampleTable("cancelled")
    spark.udf.register("slow", (x: Long) => { Thread.sleep(20); x })
    spark.conf.set("spark.ballista.enabled", "true")
    val query = new Thread(() => {
      spark.sparkContext.setJobGroup("ballista-cancel", "cancel test", interruptOnCancel = true)
      try spark.sql("SELECT sum(slow(id)) FROM cancelled WHERE id >= 0").collect()
      catch { case _: Throwable => () }
    })
    query.start()
    // The native scans are running while the slow UDF consumes their batches.
    eventually(timeout(Span(30, Seconds))) { assert(NativeEngine.openPlanCount() > 0) }
    spark.sparkContext.cancelJobGroup("ballista-cancel")
    query.join(60000)
    assert(!query.isAlive, "the cancelled query did not stop")
    eventually(timeout(Span(30, Seconds))) { assert(NativeEngine.openPlanCount() == 0) }
    assert(
      spark.sql("SELECT count(*) FROM cancelled WHERE id >= 0").collect().head.getLong(0) == 1000
    )
  }

  test("native above Spark above native in one task (nested native plans)") {
    sampleTable("nested")
    spark.udf.register("plus_one", (x: Long) => x + 1)
    spark.conf.set("spark.ballista.enabled", "true")
    // SORT BY sorts within partitions: no exchange between the native sort, the Spark UDF
    // projection and the native scan below it.
    val df = SparkFixture.assertSameAsSpark(
      spark,
      "SELECT plus_one(id) AS x, v FROM nested WHERE id > 3 SORT BY x DESC",
      ordered = true
    )
    val native = SparkFixture.nativeOperatorNames(df)
    assert(native.contains("BallistaSort") && native.contains("BallistaParquetScan"), native)
  }

  test("a native plan reading a native shuffle fetches its blocks itself: one plan per task") {
    sampleTable("one_plan")
    val sql = "SELECT k, sum(v), count(*) FROM one_plan WHERE id > 10 GROUP BY k"
    val (schema, expected) = {
      val df = SparkFixture.vanilla(spark, sql)
      (df.schema, df.collect().toSeq)
    }
    spark.conf.set("spark.ballista.enabled", "true")
    val group = "one-plan-per-task"
    val started = NativePlan.startedCount()
    spark.sparkContext.setJobGroup(group, group)
    val df =
      try SparkFixture.assertNativeGives(spark, sql, schema, expected, ordered = false)
      finally spark.sparkContext.clearJobGroup()
    val plans = NativePlan.startedCount() - started
    assert(
      SparkFixture.operators(df.queryExecution.executedPlan).exists {
        case _: BallistaShuffleExchangeExec => true
        case _ => false
      },
      "no native shuffle"
    )
    // Every task of the query (the map stage's and the reading stage's) ran one native plan.
    val tracker = spark.sparkContext.statusTracker
    val tasks = succeededJobs(group)
      .flatMap(_.stageIds)
      .flatMap(tracker.getStageInfo)
      .map(_.numCompletedTasks)
    assert(tasks.length >= 2, "a map stage and a stage reading it")
    assert(plans == tasks.sum, s"$plans native plans for ${tasks.sum} tasks")
  }

  /** The jobs of job group `group`, once the status tracker has seen them all succeed. */
  private def succeededJobs(group: String): Seq[SparkJobInfo] = {
    val tracker = spark.sparkContext.statusTracker
    eventually(timeout(Span(30, Seconds))) {
      val jobs = tracker.getJobIdsForGroup(group).toSeq.flatMap(tracker.getJobInfo)
      assert(jobs.nonEmpty && jobs.forall(_.status == JobExecutionStatus.SUCCEEDED))
      jobs
    }
  }

  /**
   * Runs `sql` natively with `confs` set, checks its rows (in order) against `expected`, and
   * returns its executed plan and how many jobs it ran.
   */
  private def orderedWith(
      sql: String,
      vanilla: DataFrame,
      expected: Seq[Row],
      confs: (String, String)*
  ): (SparkPlan, Int) = {
    confs.foreach { case (k, v) => spark.conf.set(k, v) }
    val group = s"ordered-${System.nanoTime()}"
    spark.sparkContext.setJobGroup(group, group)
    val df =
      try SparkFixture.assertNativeGives(spark, sql, vanilla.schema, expected, ordered = true)
      finally {
        spark.sparkContext.clearJobGroup()
        confs.foreach { case (k, _) => spark.conf.unset(k) }
      }
    (df.queryExecution.executedPlan, succeededJobs(group).length)
  }

  private def hasRangeExchange(plan: SparkPlan): Boolean =
    SparkFixture.operators(plan).exists {
      case e: BallistaShuffleExchangeExec => e.outputPartitioning.isInstanceOf[RangePartitioning]
      case _ => false
    }

  private val rangedSql =
    "SELECT k, count(*) AS c, sum(v) AS s FROM ranged GROUP BY k ORDER BY s DESC, k"

  test("ORDER BY over a small measured input runs no sampling job: all rows in one partition") {
    sampleTable("ranged")
    val vanilla = SparkFixture.vanilla(spark, rangedSql)
    val expected = vanilla.collect().toSeq
    val exchangeKept = "spark.ballista.sort.smallFinalSortInOneTask" -> "false"
    val (sampledPlan, sampled) = orderedWith(
      rangedSql,
      vanilla,
      expected,
      exchangeKept,
      "spark.ballista.exchange.unsampledRangeMaxBytes" -> "0"
    )
    val (unsampledPlan, unsampled) = orderedWith(
      rangedSql,
      vanilla,
      expected,
      exchangeKept,
      "spark.ballista.exchange.unsampledRangeMaxBytes" -> "16m"
    )
    Seq(sampledPlan, unsampledPlan).foreach { plan =>
      assert(hasRangeExchange(plan), s"no native range exchange:\n$plan")
    }
    assert(unsampled == sampled - 1, s"$unsampled jobs unsampled, $sampled sampled")
  }

  test("a small final ORDER BY is read and sorted by one task, without an exchange") {
    sampleTable("ranged")
    val vanilla = SparkFixture.vanilla(spark, rangedSql)
    val expected = vanilla.collect().toSeq
    val (withExchange, exchangeJobs) = orderedWith(
      rangedSql,
      vanilla,
      expected,
      "spark.ballista.sort.smallFinalSortInOneTask" -> "false"
    )
    val (plan, jobs) = orderedWith(rangedSql, vanilla, expected)
    assert(hasRangeExchange(withExchange), s"no native range exchange:\n$withExchange")
    assert(!hasRangeExchange(plan), s"a range exchange is left:\n$plan")
    val operators = SparkFixture.operators(plan)
    assert(operators.exists(_.isInstanceOf[BallistaSingleTaskReadExec]), plan)
    assert(operators.exists(_.isInstanceOf[BallistaSortExec]), plan)
    // The range exchange's stage is gone: one job fewer.
    assert(jobs == exchangeJobs - 1, s"$jobs jobs without the exchange, $exchangeJobs with it")
    // An input above the threshold keeps its exchange.
    val (largePlan, _) = orderedWith(
      rangedSql,
      vanilla,
      expected,
      "spark.ballista.exchange.unsampledRangeMaxBytes" -> "1"
    )
    assert(hasRangeExchange(largePlan), s"no native range exchange over a larger input")
  }

  test("EXPLAIN FORMATTED describes native operators, not the operators they replace") {
    sampleTable("explained")
    spark.conf.set("spark.ballista.enabled", "true")
    val df = spark.sql("SELECT k, sum(v) FROM explained WHERE id > 10 GROUP BY k")
    df.collect()
    val explained = df.queryExecution.explainString(FormattedMode)
    val natives = SparkFixture.operators(df.queryExecution.executedPlan).collect {
      case native: BallistaExec => native
    }
    assert(natives.exists(_.nodeName == "BallistaHashAggregate"), explained)
    natives.foreach { native =>
      assert(explained.contains(s"Arguments: ${native.argString(25)}\n"), explained)
    }
    // Neither Spark's replaced operators nor the plan's protobuf messages as text.
    assert(!explained.contains("HashAggregate(keys="), explained)
    assert(!explained.contains("AGGREGATE_FUNCTION_KIND"), explained)
  }

  test("invalid settings fail with a message naming the setting") {
    sampleTable("settings")
    spark.conf.set("spark.ballista.enabled", "true")
    try {
      spark.conf.set("spark.ballista.batchSize", "-3")
      val error = intercept[IllegalArgumentException] {
        spark.sql("SELECT sum(v) FROM settings WHERE id > 3").collect()
      }
      assert(error.getMessage.contains("spark.ballista.batchSize"), error.getMessage)
      spark.conf.set("spark.ballista.batchSize", "100")
      SparkFixture.assertSameAsSpark(
        spark,
        "SELECT k, sum(v) FROM settings WHERE id > 3 GROUP BY k",
        ordered = false
      )
    } finally {
      spark.conf.unset("spark.ballista.batchSize")
    }
  }

  test("the fallback report names each operator left in Spark and why") {
    sampleTable("report")
    spark.conf.set("spark.ballista.enabled", "true")
    // lag() is not native: its window stays in Spark, and so does the projection above it (its
    // input is not native); the scan, the shuffle and the sort below it are native.
    val df = spark.sql("SELECT k, lag(v) OVER (ORDER BY k, v) AS previous FROM report")
    df.collect()
    val fallbacks = org.apache.spark.sql.ballista.Fallbacks.of(df.queryExecution.executedPlan)
    val operators = fallbacks.map(_._1).toSet
    // Adaptive execution's plumbing (query stages, shuffle reads) is not reported.
    assert(operators == Set("Window", "Project"), fallbacks)
    assert(fallbacks.toMap.apply("Window").contains("lag"), fallbacks)
    assert(fallbacks.toMap.apply("Project").contains("Window is not native"), fallbacks)
    assert(fallbacks.forall(_._2.nonEmpty))
  }

  test("the plugin also loads by its fully qualified class name") {
    SparkSession.getActiveSession.foreach(_.stop())
    val session = SparkFixture.create(classOf[BallistaPlugin].getName)
    try {
      val extensions = session.sparkContext.getConf.get("spark.sql.extensions")
      assert(extensions.contains(classOf[BallistaSessionExtensions].getName))
    } finally {
      session.stop()
    }
  }

  test("without Ballista's shuffle manager, native exchanges move Arrow blocks through Spark's") {
    SparkFixture.stop()
    val session =
      SparkFixture.builder("ballista").config("spark.shuffle.manager", "sort").getOrCreate()
    try {
      Tpch.register(session)
      Seq(3, 13).foreach { q =>
        val df = SparkFixture.assertSameAsSpark(session, Tpch.query(q), ordered = true)
        val exchanges = SparkFixture.operators(df.queryExecution.executedPlan).collect {
          case e: BallistaShuffleExchangeExec => e
        }
        assert(exchanges.nonEmpty, s"Q$q has no native exchange")
        // Spark's shuffle read the blocks: no Flight metrics, Spark's read metrics filled.
        assert(exchanges.forall(!_.metrics.contains("flightBytesFetched")))
        assert(exchanges.map(_.metrics("recordsRead").value).sum > 0)
      }
    } finally SparkFixture.stop()
  }
}
