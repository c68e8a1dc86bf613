package io.ballista.spark

import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.execution.window.WindowExec
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

/**
 * Window functions run natively and by Spark on the same Parquet data (null partition and
 * order keys, ties, decimals that overflow, doubles with NaN, -0.0 and infinities): Spark's
 * answer is the expectation. Small batches make partitions and frames cross batch boundaries.
 */
class WindowSuite extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val spark: SparkSession = SparkFixture.session

  override def beforeAll(): Unit = {
    val dir = SparkFixture.tempDir("ballista-window")
    spark.conf.set("spark.ballista.enabled", "false")
    spark
      .sql("""
        SELECT id, p, o, CAST(d AS DECIMAL(12,2)) AS d, CAST(h AS DECIMAL(38,0)) AS h,
               CAST(x AS DOUBLE) AS x, CAST(x AS FLOAT) AS f, s
        FROM VALUES
          (1, 1, 10, 1.25, '90000000000000000000000000000000000000', '1.5', 'a'),
          (2, 1, 10, 2.50, '90000000000000000000000000000000000000', 'NaN', 'b'),
          (3, 1, 20, NULL, '1', '-0.0', NULL),
          (4, 1, NULL, 3.33, '2', '0.0', 'c'),
          (5, 1, 30, 4.01, NULL, '2.25', 'a'),
          (6, 2, 5, 1.00, '-90000000000000000000000000000000000000', 'Infinity', 'z'),
          (7, 2, 5, 1.00, '-90000000000000000000000000000000000000', '-Infinity', 'y'),
          (8, 2, 6, -7.77, '5', NULL, 'x'),
          (9, NULL, 1, 0.01, '7', 'NaN', 'n'),
          (10, NULL, NULL, NULL, NULL, NULL, NULL),
          (11, NULL, 1, 99.99, '3', '-1.0', 'm'),
          (12, 3, 0, 5.55, '4', '0.0', 'q'),
          (13, 3, 0, 6.66, '4', '-0.0', 'r'),
          (14, 3, 1, 7.77, '4', 'NaN', 'r')
        AS t(id, p, o, d, h, x, s)""")
      .repartition(3)
      .write
      .parquet(dir.resolve("t.parquet").toString)
    spark
      .range(0, 3000)
      .selectExpr(
        "id",
        "id % 7 AS p",
        "id % 13 AS o",
        "CAST(id * 37 % 1000 AS DECIMAL(12,2)) AS d",
        "CAST(id % 5 AS DOUBLE) / 4 AS x"
      )
      .repartition(4)
      .write
      .parquet(dir.resolve("big.parquet").toString)
    Seq("t", "big").foreach { t =>
      spark.read.parquet(dir.resolve(s"$t.parquet").toString).createOrReplaceTempView(t)
    }
    spark.conf.set("spark.ballista.batchSize", "5")
  }

  override def afterAll(): Unit = {
    spark.conf.unset("spark.ballista.batchSize")
    spark.conf.unset("spark.sql.optimizer.windowGroupLimitThreshold")
  }

  private def check(sql: String): Unit = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
    val native = SparkFixture.nativeOperatorNames(df)
    assert(
      native.contains("BallistaWindow"),
      s"the window did not run natively for: $sql\n${df.queryExecution.executedPlan}"
    )
    val sparkWindows = SparkFixture.operators(df.queryExecution.executedPlan).collect {
      case w: WindowExec => w
    }
    assert(sparkWindows.isEmpty, s"windows left in Spark for: $sql\n$sparkWindows")
  }

  private def checkInSpark(sql: String): Unit = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
    assert(!SparkFixture.nativeOperatorNames(df).contains("BallistaWindow"))
  }

  test("row_number, rank and dense_rank with ties and null keys") {
    check("""
      SELECT id, p, o,
        row_number() OVER (PARTITION BY p ORDER BY o, id) AS rn,
        rank() OVER (PARTITION BY p ORDER BY o) AS r,
        dense_rank() OVER (PARTITION BY p ORDER BY o) AS dr,
        rank() OVER (PARTITION BY p ORDER BY o DESC NULLS LAST) AS r_desc,
        dense_rank() OVER (ORDER BY s) AS dr_s
      FROM t""")
  }

  test("ranks over doubles: NaNs tie, -0.0 ties with 0.0") {
    check("""
      SELECT id, x,
        rank() OVER (ORDER BY x) AS r,
        dense_rank() OVER (PARTITION BY p ORDER BY x DESC) AS dr,
        count(x) OVER (ORDER BY x) AS running
      FROM t""")
  }

  test("aggregates over the default frames, running (with peers) and whole partition") {
    check("""
      SELECT id, p, o,
        sum(o) OVER (PARTITION BY p ORDER BY o) AS s,
        count(d) OVER (PARTITION BY p ORDER BY o) AS c,
        count(1) OVER (PARTITION BY p) AS c_all,
        avg(o) OVER (PARTITION BY p ORDER BY o) AS a,
        min(s) OVER (PARTITION BY p ORDER BY o) AS mn,
        max(d) OVER (PARTITION BY p) AS mx,
        sum(id) OVER () AS total
      FROM t""")
  }

  test("decimal sums and averages, with sums that overflow to null") {
    check("""
      SELECT id, p, d, h,
        sum(d) OVER (PARTITION BY p ORDER BY o, id) AS sd,
        avg(d) OVER (PARTITION BY p ORDER BY o, id) AS ad,
        avg(d) OVER (PARTITION BY p) AS ad_all,
        sum(h) OVER (PARTITION BY p ORDER BY o, id) AS sh,
        sum(h) OVER (PARTITION BY p ORDER BY o, id ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
          AS sh_next,
        avg(h) OVER (PARTITION BY p) AS ah
      FROM t""")
  }

  test("doubles and floats with NaN, infinities and -0.0") {
    check("""
      SELECT id, p, x,
        sum(x) OVER (PARTITION BY p ORDER BY o, id) AS sx,
        sum(x) OVER (PARTITION BY p ORDER BY o, id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
          AS sx2,
        avg(x) OVER (PARTITION BY p) AS ax,
        min(x) OVER (PARTITION BY p ORDER BY o, id) AS mnx,
        max(x) OVER (PARTITION BY p ORDER BY o, id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING)
          AS mxx,
        max(f) OVER (PARTITION BY p) AS mxf,
        min(f) OVER (PARTITION BY p ORDER BY o, id) AS mnf,
        sum(f) OVER (PARTITION BY p ORDER BY o, id) AS sf
      FROM t""")
  }

  test("ROWS frames and RANGE frames at CURRENT ROW") {
    check("""
      SELECT id, p, o,
        sum(id) OVER w1 AS a, count(d) OVER w1 AS b,
        sum(d) OVER w2 AS c, max(s) OVER w2 AS e,
        sum(id) OVER w3 AS g, min(id) OVER w3 AS h,
        avg(x) OVER w4 AS i, count(x) OVER w4 AS j,
        sum(id) OVER w5 AS k, count(id) OVER w5 AS l,
        sum(id) OVER w6 AS m
      FROM t
      WINDOW
        w1 AS (PARTITION BY p ORDER BY o, id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING),
        w2 AS (PARTITION BY p ORDER BY o, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
        w3 AS (PARTITION BY p ORDER BY o, id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING),
        w4 AS (PARTITION BY p ORDER BY o, id ROWS BETWEEN 1 FOLLOWING AND 3 FOLLOWING),
        w5 AS (PARTITION BY p ORDER BY o RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING),
        w6 AS (PARTITION BY p ORDER BY o RANGE BETWEEN CURRENT ROW AND CURRENT ROW)""")
  }

  test("several windows with different partitionings in one query") {
    val sql = """
      SELECT id, p, o, d,
        sum(d) OVER (PARTITION BY p ORDER BY id) AS by_p,
        rank() OVER (PARTITION BY o ORDER BY d) AS by_o,
        row_number() OVER (ORDER BY id) AS overall,
        avg(x) OVER (PARTITION BY p, o) AS by_p_o
      FROM big"""
    check(sql)
    val df = spark.sql(sql)
    df.collect()
    val windows = SparkFixture.nativeOperatorNames(df).count(_ == "BallistaWindow")
    assert(windows >= 3, df.queryExecution.executedPlan.toString)
  }

  test("windows over an aggregation, with a filter on the rank") {
    spark.conf.set("spark.sql.optimizer.windowGroupLimitThreshold", "-1")
    try {
      check("""
        SELECT * FROM (
          SELECT p, o, sum(d) AS total,
            rank() OVER (PARTITION BY p ORDER BY sum(d) DESC) AS r
          FROM big GROUP BY p, o)
        WHERE r <= 3""")
    } finally spark.conf.unset("spark.sql.optimizer.windowGroupLimitThreshold")
  }

  test("RANGE frames with value offsets stay in Spark") {
    checkInSpark("""
      SELECT id, sum(id) OVER (PARTITION BY p ORDER BY o RANGE BETWEEN 1 PRECEDING AND CURRENT ROW)
      FROM t""")
  }

  test("window functions without a native implementation stay in Spark") {
    checkInSpark("SELECT id, lag(id) OVER (PARTITION BY p ORDER BY id) FROM t")
  }

  test("a window above Spark's WindowGroupLimit (rank-limit optimization)") {
    SparkFixture.assertSameAsSpark(
      spark,
      """SELECT * FROM (
           SELECT id, p, row_number() OVER (PARTITION BY p ORDER BY id) AS rn FROM big)
         WHERE rn <= 2""",
      ordered = false
    )
  }
}
