package io.ballista.spark

import org.apache.spark.sql.SparkSession
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

/**
 * Casts, timestamps read from Parquet and date/time functions, evaluated natively and by Spark
 * on the same Parquet data (nulls, NaN, ±Infinity, -0.0, extreme integers, malformed and padded
 * strings, dates before 1582 and far from the epoch), in several session time zones: Spark's
 * answer is the expectation.
 */
class CastSuite extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val spark: SparkSession = SparkFixture.session

  private val Project = "BallistaProject"
  private val Scan = "BallistaParquetScan"

  /** Zones with and without daylight saving time, east and west of UTC. */
  private val zones = Seq("UTC", "America/Los_Angeles", "Asia/Kolkata", "Europe/Berlin")

  override def beforeAll(): Unit = {
    val dir = SparkFixture.tempDir("ballista-cast")
    spark.conf.set("spark.ballista.enabled", "false")
    // Ancient dates and timestamps are written as they are (no Julian rebasing).
    spark.conf.set("spark.sql.parquet.datetimeRebaseModeInWrite", "CORRECTED")
    spark.conf.set("spark.sql.parquet.int96RebaseModeInWrite", "CORRECTED")
    spark
      .sql("""
        SELECT * FROM VALUES
          (1, 127Y, 32767S, 2147483647, 9223372036854775807L, CAST(3e9 AS DOUBLE),
             CAST(1.5 AS FLOAT), CAST(99999999999.9 AS DECIMAL(12,1)), ' 1.5 ', true,
             DATE'2024-02-29'),
          (2, -128Y, -32768S, -2147483648, -9223372036854775808L, CAST('NaN' AS DOUBLE),
             CAST('NaN' AS FLOAT), CAST(-3000000000.5 AS DECIMAL(12,1)), '+12', false,
             DATE'1582-10-04'),
          (3, 0Y, 0S, 0, 0L, CAST('Infinity' AS DOUBLE), CAST('-Infinity' AS FLOAT),
             CAST(0.5 AS DECIMAL(12,1)), '2024-1-5', NULL, DATE'1969-12-31'),
          (4, NULL, NULL, NULL, NULL, CAST(-0.0 AS DOUBLE), CAST(-0.0 AS FLOAT), NULL,
             '1e3', NULL, DATE'0001-01-01'),
          (5, 1Y, 300S, 70000, 3000000000L, CAST(-129.9 AS DOUBLE), CAST(1e10 AS FLOAT),
             CAST(-0.9 AS DECIMAL(12,1)), 'abc', true, DATE'9999-12-31'),
          (6, -1Y, -300S, -70000, -3000000000L, CAST(1e-300 AS DOUBLE), NULL,
             CAST(12345678901.2 AS DECIMAL(12,1)), NULL, false, NULL),
          (7, 2Y, 2S, 2, 2L, NULL, CAST(2.5 AS FLOAT), CAST(2.5 AS DECIMAL(12,1)),
             ' 2024-02-03T12:00 ', true, DATE'1500-02-28')
        AS t(id, b, s, i, l, d, f, dec, str, bool, dt)""")
      .repartition(2)
      .write
      .parquet(dir.resolve("numbers.parquet").toString)
    spark
      .sql("""
        SELECT * FROM VALUES
          (1, ' 42 '), (2, '1.9'), (3, '-1.9'), (4, '.'), (5, '-'), (6, ''), (7, '2147483648'),
          (8, '-9223372036854775808'), (9, '9223372036854775808'), (10, '1e5'),
          (11, '  -0.005  '), (12, '99.995'), (13, '1E+2'), (14, '0e100'), (15, 'Infinity'),
          (16, ' tRuE '), (17, 'n'), (18, 'yes'), (19, '0'), (20, '2024'), (21, '2024-02'),
          (22, '2024-02-30'), (23, '2024-02-03 junk'), (24, '2024-02-03junk'),
          (25, '-0001-02-03'), (26, '12345-01-01'), (27, '1500-02-29'), (28, '1600-02-29'),
          (29, NULL), (30, '+7'), (31, '1_000'), (32, '12.'), (33, '0.000000000000000001'),
          (34, '٣٤٥'), (35, '5881580-07-11'), (36, '5881580-07-12')
        AS t(id, str)""")
      .repartition(2)
      .write
      .parquet(dir.resolve("strings.parquet").toString)
    spark
      .sql("""
        SELECT * FROM VALUES
          (1, TIMESTAMP'2024-03-10 01:59:59.999999', TIMESTAMP_NTZ'2024-03-10 01:59:59.5'),
          (2, TIMESTAMP'2024-03-10 10:30:00', TIMESTAMP_NTZ'1969-12-31 23:59:59.999999'),
          (3, TIMESTAMP'1969-12-31 23:59:59.999999', TIMESTAMP_NTZ'1500-01-01 00:00:00'),
          (4, TIMESTAMP'1500-06-15 12:00:00', NULL),
          (5, TIMESTAMP'0001-01-01 00:00:00', TIMESTAMP_NTZ'9999-12-31 23:59:59.999999'),
          (6, NULL, TIMESTAMP_NTZ'2024-10-27 02:30:00'),
          (7, TIMESTAMP'2024-10-27 01:30:00', TIMESTAMP_NTZ'2024-01-01 00:00:00')
        AS t(id, ts, ntz)""")
      .repartition(2)
      .write
      .parquet(dir.resolve("ts_int96.parquet").toString)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    spark.read
      .parquet(dir.resolve("ts_int96.parquet").toString)
      .write
      .parquet(dir.resolve("ts_micros.parquet").toString)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MILLIS")
    spark.read
      .parquet(dir.resolve("ts_int96.parquet").toString)
      .write
      .parquet(dir.resolve("ts_millis.parquet").toString)
    spark.conf.unset("spark.sql.parquet.outputTimestampType")
    Seq("numbers", "strings", "ts_int96", "ts_micros", "ts_millis").foreach { t =>
      spark.read.parquet(dir.resolve(s"$t.parquet").toString).createOrReplaceTempView(t)
    }
  }

  override def afterAll(): Unit = spark.conf.set("spark.sql.session.timeZone", "UTC")

  /** Compares with Spark and checks that the listed operators ran natively. */
  private def check(sql: String, nativeOperators: String*): Unit = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
    val native = SparkFixture.nativeOperatorNames(df)
    nativeOperators.foreach { op =>
      assert(
        native.contains(op),
        s"$op did not run natively for: $sql\n${df.queryExecution.executedPlan}"
      )
    }
  }

  private def inZones(body: => Unit): Unit = zones.foreach { z =>
    spark.conf.set("spark.sql.session.timeZone", z)
    withClue(s"session time zone $z: ")(body)
  }

  test("integral narrowing wraps around") {
    check(
      "SELECT id, CAST(l AS INT), CAST(l AS SMALLINT), CAST(i AS TINYINT), CAST(s AS TINYINT), " +
        "CAST(i AS SMALLINT), CAST(b AS BIGINT) FROM numbers",
      Project
    )
  }

  test("floating point to integral truncates, saturates and maps NaN to 0") {
    check(
      "SELECT id, CAST(d AS INT), CAST(d AS BIGINT), CAST(d AS SMALLINT), CAST(d AS TINYINT), " +
        "CAST(f AS INT), CAST(f AS BIGINT), CAST(f AS SMALLINT), CAST(f AS TINYINT), " +
        "CAST(d AS FLOAT) FROM numbers",
      Project
    )
  }

  test("decimal to integral truncates and wraps through long, to floating point is exact") {
    check(
      "SELECT id, CAST(dec AS BIGINT), CAST(dec AS INT), CAST(dec AS SMALLINT), " +
        "CAST(dec AS TINYINT), CAST(dec AS DOUBLE), CAST(dec AS FLOAT), " +
        "CAST(dec / 7 AS DOUBLE), CAST(CAST(dec AS DECIMAL(38,20)) / 3 AS DOUBLE) FROM numbers",
      Project
    )
  }

  test("booleans to and from numbers and strings") {
    check(
      "SELECT id, CAST(bool AS INT), CAST(bool AS TINYINT), CAST(bool AS DOUBLE), " +
        "CAST(bool AS DECIMAL(3,1)), CAST(bool AS DECIMAL(1,1)), CAST(i AS BOOLEAN), " +
        "CAST(d AS BOOLEAN), CAST(f AS BOOLEAN), CAST(dec AS BOOLEAN), CAST(bool AS STRING) " +
        "FROM numbers",
      Project
    )
  }

  test("integers and dates to strings") {
    check(
      "SELECT id, CAST(b AS STRING), CAST(l AS STRING), CAST(i AS STRING), CAST(dt AS STRING), " +
        "CAST(date_add(dt, 3000000) AS STRING), CAST(date_sub(dt, 1000000) AS STRING) " +
        "FROM numbers",
      Project
    )
  }

  test("strings to integrals, decimals and booleans as Spark parses them") {
    check(
      "SELECT id, CAST(str AS INT), CAST(str AS BIGINT), CAST(str AS SMALLINT), " +
        "CAST(str AS TINYINT), CAST(str AS DECIMAL(5,2)), CAST(str AS DECIMAL(38,18)), " +
        "CAST(str AS DECIMAL(3,0)), CAST(str AS BOOLEAN) FROM strings",
      Project
    )
    check("SELECT id, CAST(str AS INT), CAST(str AS DECIMAL(10,2)) FROM numbers", Project)
  }

  test("strings to dates and dates back to strings") {
    check(
      "SELECT id, CAST(str AS DATE), CAST(CAST(str AS DATE) AS STRING), to_date(str) " +
        "FROM strings",
      Project
    )
    check("SELECT id, CAST(str AS DATE) FROM numbers", Project)
  }

  test("date functions") {
    check(
      "SELECT id, year(dt), month(dt), day(dt), quarter(dt), dayofweek(dt), " +
        // Days far from the epoch as strings: java.sql.Date cannot hold them.
        "CAST(date_add(dt, i) AS STRING), CAST(date_sub(dt, s) AS STRING), date_add(dt, 30), " +
        "datediff(dt, DATE'2000-01-01'), " +
        "datediff(DATE'1970-01-01', dt), datediff(date_add(dt, b), dt) FROM numbers",
      Project
    )
    check("SELECT id FROM numbers WHERE dt > DATE'2000-01-01' - INTERVAL '90' DAY", Scan)
  }

  test("timestamps Spark wrote as INT96, TIMESTAMP_MICROS and TIMESTAMP_MILLIS are read natively") {
    inZones {
      Seq("ts_int96", "ts_micros", "ts_millis").foreach { t =>
        check(s"SELECT * FROM $t", Scan)
        check(s"SELECT id, ts, ntz FROM $t WHERE ts > TIMESTAMP'1970-01-01 00:00:00'", Scan)
      }
    }
  }

  test("timestamps to dates, dates to timestamps, time fields in the session time zone") {
    inZones {
      Seq("ts_int96", "ts_millis").foreach { t =>
        check(
          "SELECT id, CAST(ts AS DATE), CAST(ntz AS DATE), hour(ts), minute(ts), second(ts), " +
            "hour(ntz), minute(ntz), second(ntz), year(ts), month(ts), dayofweek(ts), " +
            s"CAST(CAST(ts AS DATE) AS TIMESTAMP), CAST(CAST(ntz AS DATE) AS TIMESTAMP_NTZ) FROM $t",
          Project
        )
      }
      check(
        "SELECT id, CAST(dt AS TIMESTAMP), CAST(dt AS TIMESTAMP_NTZ), " +
          "hour(CAST(dt AS TIMESTAMP)) FROM numbers",
        Project
      )
    }
  }
}
