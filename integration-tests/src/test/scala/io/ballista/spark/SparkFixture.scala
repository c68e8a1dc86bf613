package io.ballista.spark

import java.nio.file.{Files, Path}

import org.apache.spark.sql.{DataFrame, Row, SparkSession}
import org.apache.spark.sql.execution.SparkPlan
import org.apache.spark.sql.execution.adaptive.{AdaptiveSparkPlanExec, QueryStageExec}
import org.scalatest.Assertions._

/** The Spark session the suites share (one SparkContext per JVM), with the plugin enabled. */
object SparkFixture {

  def session: SparkSession =
    SparkSession.getActiveSession.filter(!_.sparkContext.isStopped).getOrElse(create("ballista"))

  def create(pluginClass: String): SparkSession =
    SparkSession
      .builder()
      .master("local[2]")
      .appName("ballista-integration-tests")
      .config("spark.plugins", pluginClass)
      .config("spark.sql.shuffle.partitions", "4")
      // UiSuite reads the Spark UI; port 0 binds a free port, so concurrent runs do not clash.
      .config("spark.ui.enabled", "true")
      .config("spark.ui.port", "0")
      .config("spark.sql.session.timeZone", "UTC")
      .getOrCreate()

  def tempDir(prefix: String): Path = {
    val dir = Files.createTempDirectory(prefix)
    dir.toFile.deleteOnExit()
    dir
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
    spark.conf.set("spark.ballista.enabled", "false")
    val vanillaDf = spark.sql(sql)
    val vanilla = vanillaDf.collect().toSeq
    assert(nativeOperatorNames(vanillaDf).isEmpty, "native operators ran while disabled")
    spark.conf.set("spark.ballista.enabled", "true")
    val nativeDf = spark.sql(sql)
    val native = nativeDf.collect().toSeq
    assert(nativeDf.schema == vanillaDf.schema)
    val (expected, actual) =
      if (ordered) (vanilla, native) else (sortRows(vanilla), sortRows(native))
    assert(actual.size == expected.size, s"row count differs for: $sql")
    expected.zip(actual).zipWithIndex.foreach { case ((e, a), i) =>
      assert(a == e, s"row $i differs for: $sql\n spark:  $e\n native: $a")
    }
    nativeDf
  }

  private def sortRows(rows: Seq[Row]): Seq[Row] = rows.sortBy(_.toString)
}
