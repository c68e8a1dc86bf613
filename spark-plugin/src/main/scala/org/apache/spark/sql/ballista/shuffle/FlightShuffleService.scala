package org.apache.spark.sql.ballista.shuffle

import java.security.SecureRandom
import java.util.{Map => JMap}

import io.ballista.spark.BallistaConf
import io.ballista.spark.jni.NativeEngine
import org.apache.spark.{SparkConf, SparkEnv}
import org.apache.spark.internal.Logging
import org.apache.spark.storage.BlockManagerId
import org.apache.spark.util.Utils

/**
 * This process's Arrow Flight shuffle server (native, started by the executor plugin) and the
 * application's secret that every Flight call carries.
 *
 * The secret is Spark's `spark.authenticate` secret when authentication is on; otherwise the
 * driver generates one per application ([[driverConf]]) and Spark hands it to the executors'
 * plugins with their configuration.
 */
object FlightShuffleService extends Logging {

  /** The key of the generated secret in the plugin's executor configuration. */
  val TokenKey = "ballista.shuffle.flight.token"

  @volatile private var server: Option[(String, Int)] = None
  @volatile private var secret: Option[String] = None

  /** What the driver plugin hands the executors' plugins: a new secret, unless Spark's is used. */
  def driverConf(conf: SparkConf): Map[String, String] =
    if (conf.getBoolean("spark.authenticate", defaultValue = false)) Map.empty
    else {
      val bytes = new Array[Byte](32)
      new SecureRandom().nextBytes(bytes)
      Map(TokenKey -> bytes.map(b => f"${b & 0xff}%02x").mkString)
    }

  /** Starts the server on `host` (the executor's) with the application's secret. */
  def start(host: String, conf: SparkConf, extraConf: JMap[String, String]): Unit = synchronized {
    if (server.isEmpty) {
      val token = Option(SparkEnv.get)
        .map(_.securityManager)
        .filter(_.isAuthenticationEnabled())
        .flatMap(sm => Option(sm.getSecretKey()))
        .orElse(Option(extraConf.get(TokenKey)))
        .getOrElse(
          throw new IllegalStateException(
            "no secret for the Arrow Flight shuffle server: the driver's Ballista plugin did " +
              "not hand one over (is spark.plugins=ballista set for the whole application?)"
          )
        )
      val port = NativeEngine.startShuffleServer(host, BallistaConf.FlightPort.get(conf), token)
      secret = Some(token)
      server = Some((host, port))
      logInfo(s"Ballista Arrow Flight shuffle server listening on $host:$port")
    }
  }

  /**
   * The executor's host, as its block manager advertises it (the plugin context's `hostname`
   * needs a server-mode RPC environment, which executors outside local mode do not have).
   */
  def executorHost: String =
    Option(SparkEnv.get)
      .flatMap(env => Option(env.blockManager))
      .flatMap(bm => Option(bm.blockManagerId))
      .map(_.host)
      .getOrElse(Utils.localHostName())

  /** `host:port` of this process's server, once started. */
  def endpoint: Option[String] = server.map { case (host, port) => s"$host:$port" }

  /** The secret for Flight calls; the server must have been started in this process. */
  def token: String = secret.getOrElse(throw notStarted)

  /**
   * Where this process's map outputs are fetched from, as the location of their map status:
   * the executor of `blockManager` with the Flight server's host and port (reduce tasks get
   * the endpoint with the map status; executor loss is still tracked by executor id).
   */
  def location(blockManager: BlockManagerId): BlockManagerId = server match {
    case Some((host, port)) =>
      BlockManagerId(blockManager.executorId, host, port, blockManager.topologyInfo)
    case None => throw notStarted
  }

  /** Makes a committed map output servable. */
  def register(shuffleId: Int, mapId: Long, dataFile: String, indexFile: String): Unit =
    NativeEngine.registerMapOutput(shuffleId, mapId, dataFile, indexFile)

  /** Stops serving a shuffle (no-op where no server runs). */
  def forgetShuffle(shuffleId: Int): Unit =
    if (server.isDefined) NativeEngine.removeShuffle(shuffleId)

  private def notStarted =
    new IllegalStateException(
      "the Arrow Flight shuffle server is not running in this process: native shuffles need " +
        "spark.plugins=ballista on every executor"
    )
}
