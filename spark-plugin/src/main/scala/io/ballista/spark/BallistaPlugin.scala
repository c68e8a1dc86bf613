package io.ballista.spark

import java.util.{Map => JMap}

import scala.collection.JavaConverters._

import io.ballista.spark.jni.{NativeEngine, NativeLibrary}
import org.apache.spark.SparkContext
import org.apache.spark.api.plugin.{DriverPlugin, ExecutorPlugin, PluginContext, SparkPlugin}
import org.apache.spark.internal.Logging
import org.apache.spark.sql.ballista.ui.{
  BallistaStatusStore,
  BallistaTab,
  ExecutorNativeStatus,
  NativeStatusReporter
}
import org.apache.spark.sql.ballista.execution.SparkMemoryBroker
import org.apache.spark.sql.ballista.shuffle.FlightShuffleService
import org.apache.spark.sql.internal.StaticSQLConf

/**
 * Ballista for Spark: runs supported parts of Spark SQL plans in the native engine.
 *
 * Enable with `--conf spark.plugins=ballista` (or this class's full name). The driver side
 * registers [[BallistaSessionExtensions]] itself, so `spark.sql.extensions` need not be set;
 * the executor side loads the native library.
 */
class BallistaPlugin extends SparkPlugin {
  override def driverPlugin(): DriverPlugin = new BallistaDriverPlugin

  override def executorPlugin(): ExecutorPlugin = new BallistaExecutorPlugin
}

/**
 * Adds the session extensions to the application's configuration before any session exists, and
 * sets up the Ballista tab of the Spark UI, which the executors' reports feed.
 */
class BallistaDriverPlugin extends DriverPlugin with Logging {
  @volatile private var store: Option[BallistaStatusStore] = None
  @volatile private var driverReporter: Option[NativeStatusReporter] = None

  override def init(sc: SparkContext, ctx: PluginContext): JMap[String, String] = {
    val conf = ctx.conf()
    val key = StaticSQLConf.SPARK_SESSION_EXTENSIONS.key
    val ours = classOf[BallistaSessionExtensions].getName
    val existing = conf.getOption(key).toSeq.flatMap(_.split(",")).map(_.trim).filter(_.nonEmpty)
    if (!existing.contains(ours)) {
      conf.set(key, (existing :+ ours).mkString(","))
    }
    BallistaConf.RuntimeFilterSettings.foreach { case (k, v) => conf.setIfMissing(k, v) }
    logInfo(
      s"Ballista for Spark ${BallistaPlugin.version} active on the driver " +
        s"(${BallistaConf.Enabled.key}=${conf.get(BallistaConf.Enabled.key, "true")})"
    )
    if (!conf.getBoolean("spark.memory.offHeap.enabled", defaultValue = false)) {
      logWarning(
        "Ballista: spark.memory.offHeap.enabled is not true, so Spark's memory manager does not " +
          "see native memory and native operators cannot spill when memory is short. " +
          "Recommended: --conf spark.memory.offHeap.enabled=true " +
          "--conf spark.memory.offHeap.size=<about 2/3 of the executor's memory>, with " +
          "spark.executor.memory lowered by as much."
      )
    }
    val statusStore = BallistaTab.install(sc)
    store = Some(statusStore)
    // In local mode the driver's own executor reports as "driver" through the executor plugin.
    if (!sc.isLocal && NativeStatusReporter.tryLoadNativeLibrary()) {
      val reporter = new NativeStatusReporter(
        ctx.executorID(),
        ctx.hostname(),
        BallistaConf.UiExecutorUpdateInterval.get(conf).toLong,
        statusStore.updateExecutor
      )
      reporter.start()
      driverReporter = Some(reporter)
    }
    // Handed to every executor plugin's init.
    FlightShuffleService.driverConf(conf).asJava
  }

  /** Executors' reports of their native engine, for the Ballista tab. */
  override def receive(message: AnyRef): AnyRef = {
    message match {
      case status: ExecutorNativeStatus => store.foreach(_.updateExecutor(status))
      case other => logWarning(s"Ballista: unexpected message ${other.getClass.getName}")
    }
    // A one-way message: no reply.
    null
  }

  override def shutdown(): Unit = driverReporter.foreach(_.stop())
}

/**
 * Loads the native library when the executor starts, so a broken install fails early, then
 * reports the native engine's status to the driver's Ballista tab periodically.
 */
class BallistaExecutorPlugin extends ExecutorPlugin with Logging {
  @volatile private var reporter: Option[NativeStatusReporter] = None

  override def init(ctx: PluginContext, extraConf: JMap[String, String]): Unit = {
    NativeLibrary.load()
    SparkMemoryBroker.configureExecutor(ctx.conf())
    val host = FlightShuffleService.executorHost
    FlightShuffleService.start(host, ctx.conf(), extraConf)
    logInfo(
      s"Ballista for Spark ${BallistaPlugin.version} active on executor " +
        s"${ctx.executorID()}: native engine ${NativeEngine.version()} from " +
        s"${NativeLibrary.loadedPath()}"
    )
    val statusReporter = new NativeStatusReporter(
      ctx.executorID(),
      host,
      BallistaConf.UiExecutorUpdateInterval.get(ctx.conf()).toLong,
      status => ctx.send(status)
    )
    statusReporter.start()
    reporter = Some(statusReporter)
  }

  override def shutdown(): Unit = reporter.foreach(_.stop())
}

object BallistaPlugin {

  /** The plugin's version, from the jar's manifest when packaged. */
  def version: String =
    Option(classOf[BallistaPlugin].getPackage.getImplementationVersion).getOrElse("dev")
}
