package org.apache.spark.sql.ballista.ui

import javax.servlet.http.{HttpServlet, HttpServletRequest}

import scala.xml.Node

import org.apache.spark.SparkContext
import org.apache.spark.internal.Logging
import org.apache.spark.sql.internal.StaticSQLConf
import org.apache.spark.ui.{SparkUI, SparkUITab, UIUtils, WebUI, WebUIPage}
import org.apache.spark.util.Utils

/** The "Ballista" tab of the Spark UI (at `/ballista/`), with its REST API under `/ballista/api`. */
class BallistaTab(ui: SparkUI, val store: BallistaStatusStore) extends SparkUITab(ui, "ballista") {
  attachPage(new BallistaPage(this))
}

object BallistaTab extends Logging {

  /** Where the REST API is served, under the UI's root. */
  val ApiPath = "/ballista/api"

  /**
   * Sets up the Ballista tab for an application: a store fed by a listener, and the tab and its
   * REST API if the application has a UI. Returns the store, for the executors' reports.
   */
  def install(sc: SparkContext): BallistaStatusStore = {
    val store = new BallistaStatusStore(sc.conf.get(StaticSQLConf.UI_RETAINED_EXECUTIONS))
    sc.addSparkListener(new BallistaExecutionListener(store))
    sc.ui.foreach { ui =>
      ui.attachTab(new BallistaTab(ui, store))
      attachServlet(ui, ApiPath, new BallistaApiServlet(store))
      logInfo(s"Ballista: UI tab at ${ui.webUrl}/ballista/, REST API at ${ui.webUrl}$ApiPath")
    }
    store
  }

  /**
   * `WebUI.attachHandler(contextPath, servlet, pathSpec)`, called reflectively: Scala cannot
   * resolve that overloaded method at compile time, since its other overloads name Jetty types,
   * which Spark shades and so are not on the compile classpath under their original names.
   */
  private def attachServlet(ui: WebUI, contextPath: String, servlet: HttpServlet): Unit = {
    val attach = classOf[WebUI].getMethod(
      "attachHandler",
      classOf[String],
      classOf[HttpServlet],
      classOf[String]
    )
    attach.invoke(ui, contextPath, servlet, "/")
  }
}

/**
 * The tab's page: each executor's native engine, then the SQL executions with their native
 * operators, fallbacks and plan trees.
 */
class BallistaPage(tab: BallistaTab) extends WebUIPage("") {

  override def render(request: HttpServletRequest): Seq[Node] = {
    val uiRoot = UIUtils.prependBaseUri(request, tab.basePath)
    val api = uiRoot + BallistaTab.ApiPath
    val executions = tab.store.executions
    val content =
      <h4>Executors</h4> ++ executorsTable(tab.store.executors) ++
        <h4>SQL executions</h4> ++ totals(executions) ++ executionsTable(uiRoot, executions) ++
        <p>As JSON: <a href={s"$api/executors"}>executors</a>,
          <a href={s"$api/executions"}>executions</a>,
          <a href={s"$api/fallbacks"}>fallbacks</a>.</p>
    UIUtils.headerSparkPage(request, "Ballista", content, tab)
  }

  private def executorsTable(executors: Seq[ExecutorNativeStatus]): Seq[Node] = {
    val headers = Seq(
      "Executor ID",
      "Host",
      "Native version",
      "Native library",
      "Flight endpoint",
      "Native memory in use",
      "Native memory peak",
      "Reported at"
    )
    def row(e: ExecutorNativeStatus): Seq[Node] =
      <tr>
        <td>{e.executorId}</td>
        <td>{e.host}</td>
        <td>{e.nativeVersion}</td>
        <td>{e.nativeLibraryPath}</td>
        <td>{e.flightEndpoint.getOrElse("not started")}</td>
        <td>{bytes(e.nativeMemoryInUse)}</td>
        <td>{bytes(e.nativeMemoryPeak)}</td>
        <td>{UIUtils.formatDate(e.reportedAt)}</td>
      </tr>
    UIUtils.listingTable(headers, row, executors, id = Some("ballista-executors"))
  }

  private def bytes(n: Long): String = if (n < 0) "unknown" else Utils.bytesToString(n)

  private def totals(executions: Seq[ExecutionSummary]): Seq[Node] = {
    val native = executions.map(_.nativeOperatorCount).sum
    val fallbacks = executions.map(_.fallbackCount).sum
    <p id="ballista-totals">
      Over the last {executions.size} executions: <strong>{native}</strong> native operators,
      <strong>{fallbacks}</strong> operators left in Spark (fallbacks).
    </p>
  }

  private def executionsTable(uiRoot: String, executions: Seq[ExecutionSummary]): Seq[Node] = {
    val headers = Seq(
      "ID",
      "Description",
      "Status",
      "Duration",
      "Native operators",
      "Fallbacks",
      "Fallback reasons",
      "Plan"
    )
    // The SQL tab's page of the same execution.
    val sqlExecutionPage = s"$uiRoot/SQL/execution/"
    def row(e: ExecutionSummary): Seq[Node] =
      <tr>
        <td><a href={s"$sqlExecutionPage?id=${e.id}"}>{e.id}</a></td>
        <td>{e.description}</td>
        <td>{e.status}{e.error.toSeq.map(err => <div>{err}</div>)}</td>
        <td>{e.durationMs.map(UIUtils.formatDuration).getOrElse("")}</td>
        <td>{e.nativeOperatorCount}</td>
        <td>{e.fallbackCount}</td>
        <td><ul>{e.fallbacks.map(f => <li><strong>{f.operator}</strong>: {f.reason}</li>)}</ul></td>
        <td>{planTree(e.plan)}</td>
      </tr>
    UIUtils.listingTable(headers, row, executions, id = Some("ballista-executions"))
  }

  /** The plan as an indented tree, native operators in bold with a "native" mark. */
  private def planTree(roots: Seq[OperatorNode]): Seq[Node] = {
    def lines(node: OperatorNode, depth: Int): Seq[Node] = {
      val indent = "  " * depth
      val name =
        if (node.native) <strong>{node.name} [native]</strong> else <span>{node.name}</span>
      val reason = node.fallbackReason.map(r => s" [stays in Spark: $r]").getOrElse("")
      Seq(<span>{indent}{name}{reason}{"\n"}</span>) ++
        node.children.flatMap(lines(_, depth + 1))
    }
    if (roots.isEmpty) Nil
    else <details><summary>plan</summary><pre>{roots.flatMap(lines(_, 0))}</pre></details>
  }
}
