package io.ballista.spark

import java.net.URI
import java.net.http.{HttpClient, HttpRequest, HttpResponse}

import io.ballista.spark.jni.{NativeEngine, NativeLibrary}
import org.apache.spark.sql.{DataFrame, SparkSession}
import org.apache.spark.sql.ballista.Fallbacks
import org.json4s._
import org.json4s.jackson.JsonMethods
import org.scalatest.concurrent.Eventually._
import org.scalatest.funsuite.AnyFunSuite
import org.scalatest.time.{Seconds, Span}

/** The Ballista tab of the Spark UI and its REST API, fetched over HTTP from the running UI. */
class UiSuite extends AnyFunSuite {

  implicit private val formats: Formats = DefaultFormats

  private def spark: SparkSession = SparkFixture.session

  private val http = HttpClient.newHttpClient()

  private val FallbackQueryDescription = "ui-suite: query with a fallback"
  private val NativeQueryDescription = "ui-suite: fully native query"

  /** The executions of both queries: the listener records them asynchronously. */
  private val patience = timeout(Span(30, Seconds))

  /** Runs both queries once, under descriptions that identify their SQL executions. */
  private lazy val queries: (DataFrame, DataFrame) = {
    SparkFixture.sampleTable(spark, "ui_sample")
    spark.conf.set("spark.ballista.enabled", "true")
    // lag() is not native: its window and the projection above it stay in Spark.
    val withFallback = run(
      FallbackQueryDescription,
      "SELECT k, lag(v) OVER (ORDER BY k, v) AS previous FROM ui_sample"
    )
    val native =
      run(NativeQueryDescription, "SELECT k, sum(v), count(*) FROM ui_sample GROUP BY k")
    (withFallback, native)
  }

  private def run(description: String, sql: String): DataFrame = {
    spark.sparkContext.setJobDescription(description)
    try {
      val df = spark.sql(sql)
      df.collect()
      df
    } finally {
      spark.sparkContext.setJobDescription(null)
    }
  }

  private def get(path: String): HttpResponse[String] = {
    val ui = spark.sparkContext.uiWebUrl.getOrElse(fail("the Spark UI is not enabled"))
    val request = HttpRequest.newBuilder(URI.create(ui + path)).GET().build()
    http.send(request, HttpResponse.BodyHandlers.ofString())
  }

  /** The JSON at `path`, which must be served with `status`. */
  private def getJson(path: String, status: Int = 200): JValue = {
    val response = get(path)
    assert(response.statusCode == status, s"$path: ${response.body}")
    val contentType = response.headers.firstValue("Content-Type").orElse("")
    assert(contentType.startsWith("application/json"), s"$path: $contentType")
    JsonMethods.parse(response.body)
  }

  private def items(json: JValue): List[JValue] = json match {
    case JArray(values) => values
    case other => fail(s"not a JSON array: $other")
  }

  private def execution(description: String): JValue = {
    val found = items(getJson("/ballista/api/executions"))
      .filter(e => (e \ "description").extract[String] == description)
    assert(found.size == 1, s"executions described '$description': $found")
    found.head
  }

  /** An execution's fallbacks as Spark's report gives them: (operator, reason) pairs. */
  private def fallbackPairs(fallbacks: JValue): List[(String, String)] =
    items(fallbacks).map(f => (f \ "operator").extract[String] -> (f \ "reason").extract[String])

  private def expectedFallbacks(df: DataFrame): List[(String, String)] =
    Fallbacks.of(df.queryExecution.executedPlan).toList

  private def operators(node: JValue): List[JValue] =
    node :: items(node \ "children").flatMap(operators)

  test("executors: each reports its native version, library, Flight endpoint and memory") {
    eventually(patience) {
      val driver = items(getJson("/ballista/api/executors"))
        .find(e => (e \ "executorId").extract[String] == "driver")
        .getOrElse(fail("the driver's executor is not listed"))
      assert((driver \ "nativeVersion").extract[String] == NativeEngine.version())
      assert((driver \ "nativeLibraryPath").extract[String] == NativeLibrary.loadedPath())
      assert((driver \ "host").extract[String].nonEmpty)
      // The Flight shuffle server of the driver's executor (local mode) on its host.
      val endpoint = (driver \ "flightEndpoint").extract[String]
      assert(endpoint.matches(".+:\\d+"), endpoint)
      // -1 while the native library cannot tell.
      val inUse = (driver \ "nativeMemoryInUse").extract[Long]
      val peak = (driver \ "nativeMemoryPeak").extract[Long]
      assert(inUse >= -1 && peak >= -1)
      if (inUse >= 0) assert(peak >= inUse)
      assert((driver \ "reportedAt").extract[Long] > 0)
    }
  }

  test("executors report again periodically") {
    def reportedAt: Long = eventually(patience) {
      items(getJson("/ballista/api/executors"))
        .map(e => (e \ "reportedAt").extract[Long])
        .headOption
        .getOrElse(fail("no executor listed"))
    }
    val first = reportedAt
    // The default interval is 5 seconds.
    eventually(timeout(Span(20, Seconds))) { assert(reportedAt > first) }
  }

  test("executions: native operator and fallback counts, fallbacks with their reasons") {
    val (withFallback, native) = queries
    eventually(patience) {
      val fallbackRun = execution(FallbackQueryDescription)
      assert((fallbackRun \ "status").extract[String] == "succeeded", fallbackRun)
      assert((fallbackRun \ "nativeOperators").extract[Int] > 0)
      val expected = expectedFallbacks(withFallback)
      assert(expected.map(_._1).toSet == Set("Window", "Project"), expected)
      assert(fallbackPairs(fallbackRun \ "fallbacks") == expected)
      assert((fallbackRun \ "fallbackOperators").extract[Int] == expected.size)
      assert((fallbackRun \ "durationMs").extract[Long] >= 0)

      val nativeRun = execution(NativeQueryDescription)
      assert((nativeRun \ "status").extract[String] == "succeeded", nativeRun)
      assert((nativeRun \ "nativeOperators").extract[Int] > 0)
      assert((nativeRun \ "fallbackOperators").extract[Int] == 0)
      assert(expectedFallbacks(native).isEmpty)
    }
  }

  test("executions/<id>: the plan tree marks native operators and fallbacks") {
    queries
    val id = eventually(patience)((execution(FallbackQueryDescription) \ "id").extract[Long])
    val detail = getJson(s"/ballista/api/executions/$id")
    assert((detail \ "id").extract[Long] == id)
    val nodes = items(detail \ "plan").flatMap(operators)
    val native = nodes.filter(n => (n \ "native").extract[Boolean])
    assert(
      native.nonEmpty && native.forall(n => (n \ "name").extract[String].startsWith("Ballista"))
    )
    assert(nodes.map(n => (n \ "name").extract[String]).contains("BallistaParquetScan"))
    val window = nodes.find(n => (n \ "name").extract[String] == "Window").get
    assert((window \ "native").extract[Boolean] == false)
    assert((window \ "fallbackReason").extract[String].contains("lag"))
    // Adaptive execution's plumbing is left out of the tree.
    assert(!nodes.exists(n => (n \ "name").extract[String].contains("AdaptiveSparkPlan")))
    assert(getJson(s"/ballista/api/executions?id=$id") == detail)
  }

  test("fallbacks: every fallback with its execution, and counts per reason") {
    val (withFallback, _) = queries
    val id = eventually(patience)((execution(FallbackQueryDescription) \ "id").extract[Long])
    val report = getJson("/ballista/api/fallbacks")
    val ofExecution = items(report \ "fallbacks")
      .filter(f => (f \ "executionId").extract[Long] == id)
    val expected = expectedFallbacks(withFallback)
    assert(fallbackPairs(JArray(ofExecution)) == expected)
    val byReason = items(report \ "byReason")
      .map(r => (r \ "reason").extract[String] -> (r \ "count").extract[Int])
      .toMap
    expected.foreach { case (_, reason) => assert(byReason.getOrElse(reason, 0) >= 1, byReason) }
    assert((report \ "total").extract[Int] == items(report \ "fallbacks").size)
  }

  test("a failed execution shows as failed, with its error") {
    val description = "ui-suite: failing query"
    intercept[Exception](run(description, "SELECT raise_error('ui-suite boom')"))
    eventually(patience) {
      val failed = execution(description)
      assert((failed \ "status").extract[String] == "failed", failed)
      assert((failed \ "error").extract[String].contains("ui-suite boom"), failed)
    }
  }

  test("unknown executions and endpoints are 404 with a JSON error") {
    for (path <- Seq("executions/999999999", "executions/abc", "executions?id=-1", "nothing")) {
      val error = getJson(s"/ballista/api/$path", status = 404)
      assert((error \ "error").extract[String].nonEmpty)
    }
  }

  test("the Ballista tab shows executors, executions, fallbacks and plans") {
    val (withFallback, _) = queries
    val id = eventually(patience)((execution(FallbackQueryDescription) \ "id").extract[Long])
    val page = get("/ballista/")
    assert(page.statusCode == 200)
    val html = page.body
    def escaped(text: String): String = scala.xml.Utility.escape(text)
    assert(html.contains("Ballista"))
    assert(html.contains("<td>driver</td>"))
    assert(html.contains(escaped(NativeEngine.version())))
    assert(html.contains(escaped(FallbackQueryDescription)))
    assert(html.contains(escaped(NativeQueryDescription)))
    assert(html.contains(s"/SQL/execution/?id=$id"))
    expectedFallbacks(withFallback).foreach { case (_, reason) =>
      assert(html.contains(escaped(reason)), reason)
    }
    assert(html.contains("BallistaParquetScan [native]"))
    // The tab is in every page's navigation bar.
    assert(get("/jobs/").body.contains("/ballista/"))
  }
}
