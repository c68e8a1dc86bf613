package io.ballista.spark.jni;

import java.io.IOException;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Loads the native engine ({@code libballista_spark.so}) into the JVM, once.
 *
 * <p>Where the library comes from, in this order:
 *
 * <ol>
 *   <li>the path in the system property {@value #PATH_PROPERTY}, else in the environment variable
 *       {@value #PATH_ENV};
 *   <li>the classpath resource {@value #RESOURCE}, which the build puts into the ballista-jvm jar:
 *       loaded in place when it is a plain file, otherwise extracted to a temporary file that is
 *       deleted as soon as it is loaded (the loaded library stays mapped; nothing is left behind in
 *       the temporary directory even when the JVM is killed). Profilers that read symbols from the
 *       library file need {@value #PATH_PROPERTY} pointing at an unpacked copy.
 * </ol>
 */
public final class NativeLibrary {
  /** System property naming the library file to load instead of the bundled one. */
  public static final String PATH_PROPERTY = "ballista.native.library";

  /** Environment variable naming the library file, used when {@value #PATH_PROPERTY} is unset. */
  public static final String PATH_ENV = "BALLISTA_NATIVE_LIBRARY";

  /** Classpath resource of the bundled library (built for Linux on x86-64 only). */
  public static final String RESOURCE = "/linux-x86_64/libballista_spark.so";

  private static final Logger LOG = LoggerFactory.getLogger(NativeLibrary.class);

  private static volatile String loadedPath;

  private NativeLibrary() {}

  /**
   * Loads the library unless it is already loaded; safe to call any number of times.
   *
   * @throws UnsatisfiedLinkError when the library cannot be found or loaded (the message says why,
   *     including the platform when the bundled library does not fit it)
   */
  public static synchronized void load() {
    if (loadedPath != null) {
      return;
    }
    String path = System.getProperty(PATH_PROPERTY);
    if (path == null || path.isEmpty()) {
      path = System.getenv(PATH_ENV);
    }
    Path extracted = null;
    if (path != null && !path.isEmpty()) {
      path = Paths.get(path).toAbsolutePath().toString();
    } else {
      URL url = bundledLibrary();
      path = plainFile(url);
      if (path == null) {
        extracted = extract(url);
        path = extracted.toString();
      }
    }
    try {
      System.load(path);
    } finally {
      if (extracted != null) {
        deleteExtracted(extracted);
      }
    }
    loadedPath = path;
    NativeLog.start();
    LOG.info(
        "Ballista native engine {} loaded from {} (native log level {})",
        NativeEngine.version(),
        path,
        NativeLog.levelName());
  }

  /**
   * Returns the absolute path of the library file that was loaded (an extracted copy no longer
   * exists there: it is deleted once loaded).
   *
   * @return the path, or {@code null} before {@link #load()} has succeeded
   */
  public static String loadedPath() {
    return loadedPath;
  }

  private static URL bundledLibrary() {
    String os = System.getProperty("os.name", "?");
    String arch = System.getProperty("os.arch", "?");
    String platform = "os.name=" + os + ", os.arch=" + arch;
    boolean linux = os.toLowerCase(Locale.ROOT).startsWith("linux");
    boolean x86_64 = arch.equals("amd64") || arch.equals("x86_64");
    if (!linux || !x86_64) {
      throw new UnsatisfiedLinkError(
          "Ballista's native library is built for Linux x86-64 only, this JVM runs on "
              + platform
              + "; set -D"
              + PATH_PROPERTY
              + "=/path/to/libballista_spark.so"
              + " to use a library built for this platform");
    }
    URL url = NativeLibrary.class.getResource(RESOURCE);
    if (url == null) {
      throw new UnsatisfiedLinkError(
          "Ballista's native library "
              + RESOURCE
              + " is not on the classpath ("
              + platform
              + "); build it with dev/build-native.sh, or set -D"
              + PATH_PROPERTY);
    }
    return url;
  }

  /** The path of the bundled library when it is a plain file, else null (inside a jar). */
  private static String plainFile(URL url) {
    if ("file".equals(url.getProtocol())) {
      try {
        return Paths.get(url.toURI()).toAbsolutePath().toString();
      } catch (URISyntaxException | IllegalArgumentException e) {
        // Not a plain path after all: extract it like a jar entry.
      }
    }
    return null;
  }

  private static void deleteExtracted(Path file) {
    try {
      Files.deleteIfExists(file);
    } catch (IOException e) {
      LOG.debug("cannot delete the extracted native library {}: {}", file, e.toString());
    }
  }

  private static Path extract(URL url) {
    try {
      Path file = Files.createTempFile("libballista_spark", ".so");
      file.toFile().deleteOnExit();
      try (InputStream in = url.openStream()) {
        Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
      }
      return file.toAbsolutePath();
    } catch (IOException e) {
      UnsatisfiedLinkError error =
          new UnsatisfiedLinkError("cannot extract Ballista's native library " + url + ": " + e);
      error.initCause(e);
      throw error;
    }
  }
}
