#!/usr/bin/env bash
# Builds the example project in examples/java against the artifact `mvn install` put in the
# local Maven repository, and runs its two programs: a Spark job with the plugin enabled
# programmatically and a query through the Java client API.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT/examples/java"

mvn -B -ntp -q package
classpath="target/classes:$(cat target/classpath.txt)"
# What Spark needs on Java 17 (the root pom's test.jvm.args).
opens=()
for package in java.lang java.lang.invoke java.lang.reflect java.io java.net java.nio java.util \
  java.util.concurrent java.util.concurrent.atomic sun.nio.ch sun.nio.cs sun.security.action \
  sun.util.calendar; do
  opens+=("--add-opens=java.base/$package=ALL-UNNAMED")
done
output=$(java "${opens[@]}" -cp "$classpath" io.ballista.examples.JavaApiQuery)
echo "$output"
grep -q "java api: 2 rows" <<<"$output"
output=$(java "${opens[@]}" -cp "$classpath" io.ballista.examples.SparkWithBallista 2>/dev/null)
echo "$output"
grep -q "spark job: identical results, native plan" <<<"$output"
log "java-example-test: OK"
