package org.apache.spark.sql.ballista.ui

import java.nio.charset.StandardCharsets
import javax.servlet.http.{HttpServlet, HttpServletRequest, HttpServletResponse}

import org.json4s._
import org.json4s.jackson.JsonMethods

/**
 * The Ballista tab's data as JSON, for scripts, under `/ballista/api`:
 *
 *  - `executors`: each executor's native engine (version, library, Flight endpoint, memory);
 *  - `executions`: the retained SQL executions with their native operator and fallback counts;
 *  - `executions/<id>` (or `executions?id=<id>`): one execution, with its plan tree;
 *  - `fallbacks`: every fallback of the retained executions, and how many there are per reason.
 *
 * Unknown paths and execution ids get status 404 with `{"error": "..."}`.
 */
class BallistaApiServlet(store: BallistaStatusStore) extends HttpServlet {
  import BallistaApiServlet._

  override def doGet(request: HttpServletRequest, response: HttpServletResponse): Unit = {
    // Jetty maps this servlet at "/", so the whole path below the API's root is the servlet path.
    val path = request.getRequestURI.stripPrefix(request.getContextPath).stripSuffix("/")
    val (status, body) = path match {
      case "" => ok(JObject("endpoints" -> JArray(Endpoints.map(JString(_)).toList)))
      case "/executors" => ok(JArray(store.executors.map(executorJson).toList))
      case "/executions" =>
        Option(request.getParameter("id")) match {
          case Some(id) => execution(id)
          case None => ok(JArray(store.executions.map(executionJson(_, withPlan = false)).toList))
        }
      case p if p.startsWith("/executions/") => execution(p.stripPrefix("/executions/"))
      case "/fallbacks" => ok(fallbacksJson(store.executions))
      case _ => notFound(s"no such endpoint: ${request.getRequestURI}")
    }
    response.setStatus(status)
    response.setContentType("application/json")
    response.setCharacterEncoding(StandardCharsets.UTF_8.name)
    response.getWriter.write(JsonMethods.pretty(body))
  }

  private def execution(id: String): (Int, JValue) =
    scala.util.Try(id.toLong).toOption.flatMap(store.execution) match {
      case Some(e) => ok(executionJson(e, withPlan = true))
      case None => notFound(s"no SQL execution with id $id")
    }
}

object BallistaApiServlet {

  private val Endpoints = Seq("executors", "executions", "executions/<id>", "fallbacks")

  private def ok(body: JValue): (Int, JValue) = (HttpServletResponse.SC_OK, body)

  private def notFound(message: String): (Int, JValue) =
    (HttpServletResponse.SC_NOT_FOUND, JObject("error" -> JString(message)))

  private def nullable[T](value: Option[T])(toJson: T => JValue): JValue =
    value.map(toJson).getOrElse(JNull)

  def executorJson(e: ExecutorNativeStatus): JValue = JObject(
    "executorId" -> JString(e.executorId),
    "host" -> JString(e.host),
    "nativeVersion" -> JString(e.nativeVersion),
    "nativeLibraryPath" -> JString(e.nativeLibraryPath),
    "flightEndpoint" -> nullable(e.flightEndpoint)(JString(_)),
    "nativeMemoryInUse" -> JLong(e.nativeMemoryInUse),
    "nativeMemoryPeak" -> JLong(e.nativeMemoryPeak),
    "reportedAt" -> JLong(e.reportedAt)
  )

  def executionJson(e: ExecutionSummary, withPlan: Boolean): JValue = {
    val fields = List[JField](
      "id" -> JLong(e.id),
      "description" -> JString(e.description),
      "status" -> JString(e.status),
      "startTime" -> JLong(e.startTime),
      "endTime" -> nullable(e.endTime)(JLong(_)),
      "durationMs" -> nullable(e.durationMs)(JLong(_)),
      "error" -> nullable(e.error)(JString(_)),
      "nativeOperators" -> JInt(e.nativeOperatorCount),
      "fallbackOperators" -> JInt(e.fallbackCount),
      "fallbacks" -> JArray(e.fallbacks.map(fallbackJson).toList)
    )
    JObject(if (withPlan) fields :+ ("plan" -> JArray(e.plan.map(operatorJson).toList)) else fields)
  }

  private def fallbackJson(f: Fallback): JObject =
    JObject("operator" -> JString(f.operator), "reason" -> JString(f.reason))

  private def operatorJson(node: OperatorNode): JValue = JObject(
    "name" -> JString(node.name),
    "native" -> JBool(node.native),
    "fallbackReason" -> nullable(node.fallbackReason)(JString(_)),
    "children" -> JArray(node.children.map(operatorJson).toList)
  )

  /** Every fallback with its execution's id, and the number of fallbacks per reason. */
  def fallbacksJson(executions: Seq[ExecutionSummary]): JValue = {
    val all = executions.flatMap(e => e.fallbacks.map(e.id -> _))
    val byReason =
      all.groupBy(_._2.reason).toList.sortBy { case (reason, fs) => (-fs.size, reason) }
    JObject(
      "total" -> JInt(all.size),
      "byReason" -> JArray(byReason.map { case (reason, fs) =>
        JObject("reason" -> JString(reason), "count" -> JInt(fs.size))
      }),
      "fallbacks" -> JArray(all.map { case (id, f) =>
        JObject(("executionId" -> JLong(id)) :: fallbackJson(f).obj)
      }.toList)
    )
  }
}
