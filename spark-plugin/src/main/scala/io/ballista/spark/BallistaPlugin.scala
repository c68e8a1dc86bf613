package io.ballista.spark

import java.util.{Collections, Map => JMap}

import io.ballista.spark.jni.{NativeEngine, NativeLibrary}
import org.apache.spark.SparkContext
import org.apache.spark.api.plugin.{DriverPlugin, ExecutorPlugin, PluginContext, SparkPlugin}
import org.apache.spark.internal.Logging
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

/** Adds the session extensions to the application's configuration before any session exists. */
class BallistaDriverPlugin extends DriverPlugin with Logging {
  override def init(sc: SparkContext, ctx: PluginContext): JMap[String, String] = {
    val conf = ctx.conf()
    val key = StaticSQLConf.SPARK_SESSION_EXTENSIONS.key
    val ours = classOf[BallistaSessionExtensions].getName
    val existing = conf.getOption(key).toSeq.flatMap(_.split(",")).map(_.trim).filter(_.nonEmpty)
    if (!existing.contains(ours)) {
      conf.set(key, (existing :+ ours).mkString(","))
    }
    logInfo(
      s"Ballista for Spark ${BallistaPlugin.version} active on the driver " +
        s"(${BallistaConf.Enabled.key}=${conf.get(BallistaConf.Enabled.key, "true")})"
    )
    Collections.emptyMap()
  }
}

/** Loads the native library when the executor starts, so a broken install fails early. */
class BallistaExecutorPlugin extends ExecutorPlugin with Logging {
  override def init(ctx: PluginContext, extraConf: JMap[String, String]): Unit = {
    NativeLibrary.load()
    logInfo(
      s"Ballista for Spark ${BallistaPlugin.version} active on executor " +
        s"${ctx.executorID()}: native engine ${NativeEngine.version()} from " +
        s"${NativeLibrary.loadedPath()}"
    )
  }
}

object BallistaPlugin {

  /** The plugin's version, from the jar's manifest when packaged. */
  def version: String =
    Option(classOf[BallistaPlugin].getPackage.getImplementationVersion).getOrElse("dev")
}
