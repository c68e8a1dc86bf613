/**
 * The plugin under its short name, so that `--conf spark.plugins=ballista` works as is.
 * Spark instantiates plugins by class name; this one is in the default package.
 */
class ballista extends io.ballista.spark.BallistaPlugin
