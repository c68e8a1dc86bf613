package io.ballista.spark

import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.Fallbacks
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

/**
 * `%` and `pmod` on every integral and floating-point type (zero divisors, MIN_VALUE % -1,
 * negative operands, NaN, infinities, -0.0, nulls) evaluated natively and by Spark.
 */
class ArithmeticSuite extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val spark: SparkSession = SparkFixture.session

  override def beforeAll(): Unit = {
    val dir = SparkFixture.tempDir("ballista-arith").resolve("nums.parquet").toString
    spark.conf.set("spark.ballista.enabled", "false")
    spark
      .sql("""
        SELECT id,
          CAST(a AS TINYINT) AS b1, CAST(n AS TINYINT) AS b2,
          CAST(a AS SMALLINT) AS s1, CAST(n AS SMALLINT) AS s2,
          CAST(a AS INT) AS i1, CAST(n AS INT) AS i2,
          CAST(a AS BIGINT) AS l1, CAST(n AS BIGINT) AS l2,
          CAST(x AS FLOAT) AS f1, CAST(y AS FLOAT) AS f2, x AS d1, y AS d2,
          CAST(a AS DECIMAL(10,2)) AS dec1, CAST(n AS DECIMAL(5,1)) AS dec2
        FROM VALUES
          (1, 7, 3, 5.5D, 2.0D), (2, -7, 3, -5.5D, 2.0D), (3, 7, -3, 5.5D, -2.0D),
          (4, -7, -3, -5.5D, -2.0D), (5, 7, 0, 1.0D, 0.0D), (6, 0, 5, 1.0D, -0.0D),
          (7, NULL, 3, NULL, 2.0D), (8, 4, NULL, 3.0D, NULL), (9, -1, -1, CAST('NaN' AS DOUBLE), 2.0D),
          (10, 1, 1, 2.0D, CAST('NaN' AS DOUBLE)), (11, -1, 2, CAST('Infinity' AS DOUBLE), 3.0D),
          (12, 5, 2, 2.5D, CAST('-Infinity' AS DOUBLE)), (13, -6, 3, -0.0D, 3.0D),
          (14, -1, -2, -1.0D, CAST('Infinity' AS DOUBLE)), (15, 100, 7, 1e300D, 1e-300D)
        AS t(id, a, n, x, y)""")
      .unionByName(
        spark.sql("""
          SELECT 100 AS id, CAST(-128 AS TINYINT) AS b1, CAST(-1 AS TINYINT) AS b2,
            CAST(-32768 AS SMALLINT) AS s1, CAST(-1 AS SMALLINT) AS s2,
            -2147483648 AS i1, -1 AS i2, -9223372036854775808L AS l1, -1L AS l2,
            CAST(-1.5 AS FLOAT) AS f1, CAST(0.25 AS FLOAT) AS f2, -0.0D AS d1, 1.0D AS d2,
            CAST(1.00 AS DECIMAL(10,2)) AS dec1, CAST(0.3 AS DECIMAL(5,1)) AS dec2
          UNION ALL
          SELECT 101, CAST(-1 AS TINYINT), CAST(-128 AS TINYINT), CAST(-1 AS SMALLINT),
            CAST(-32768 AS SMALLINT), -1, -2147483648, -1L, -9223372036854775808L,
            CAST(7.0 AS FLOAT), CAST(-0.0 AS FLOAT), 7.0D, CAST('-Infinity' AS DOUBLE),
            NULL, NULL""")
      )
      .repartition(2)
      .write
      .parquet(dir)
    spark.read.parquet(dir).createOrReplaceTempView("nums")
  }

  override def afterAll(): Unit = spark.conf.unset("spark.sql.ansi.enabled")

  private def checkNative(sql: String): Unit = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
    val plan = df.queryExecution.executedPlan
    assert(SparkFixture.nativeOperatorNames(df).contains("BallistaProject"), s"$plan")
    assert(Fallbacks.of(plan).isEmpty, s"${Fallbacks.of(plan)}\n$plan")
  }

  private def checkInSpark(sql: String, reason: String): Unit = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
    val plan = df.queryExecution.executedPlan
    val fallbacks = Fallbacks.of(plan)
    assert(fallbacks.exists(_._2.contains(reason)), s"$fallbacks\n$plan")
  }

  private val Columns = Seq("b", "s", "i", "l", "f", "d")

  test("% on integral and floating-point types") {
    checkNative(
      "SELECT id, " + Columns.map(c => s"${c}1 % ${c}2, ${c}2 % ${c}1").mkString(", ") +
        " FROM nums"
    )
    checkNative("SELECT id, mod(i1, i2), i1 % 3, l1 % -1L, d1 % 0.0D, i1 % 2L FROM nums")
  }

  test("pmod on integral and floating-point types") {
    checkNative(
      "SELECT id, " +
        Columns.map(c => s"pmod(${c}1, ${c}2), pmod(${c}2, ${c}1)").mkString(", ") +
        " FROM nums"
    )
    checkNative("SELECT id, pmod(i1, 3), pmod(l1, -5L), pmod(d1, -0.0D) FROM nums")
  }

  test("% and pmod in filters and aggregates") {
    checkNative("SELECT id FROM nums WHERE pmod(i1, 4) = 1 OR l1 % 2 = -1")
    checkNative("SELECT pmod(i1, 3) AS g, count(*), sum(l1 % 5) FROM nums GROUP BY pmod(i1, 3)")
  }

  test("decimals and ANSI mode stay in Spark") {
    checkInSpark("SELECT id, dec1 % dec2 FROM nums", "not supported natively")
    checkInSpark("SELECT id, pmod(dec1, dec2) FROM nums", "not supported natively")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try {
      checkInSpark("SELECT id, i1 % i2, pmod(d1, d2) FROM nums WHERE i2 <> 0 AND d2 <> 0", "ANSI")
    } finally {
      spark.conf.unset("spark.sql.ansi.enabled")
    }
  }
}
