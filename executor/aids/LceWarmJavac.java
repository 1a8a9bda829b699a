import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * javac started ahead (executor/sandbox/warm.py): the JVM opens the FIFO named by its argument (the
 * executor then counts it started), and while the job's javac arguments have not come into it, compiles
 * a throwaway hello world in the sandbox's private /tmp, at most twice (the first loads javac's classes;
 * the second has the JIT compile more of the code every compile runs). A job that comes meanwhile waits
 * only for the warm-up compile under way, which is less than a cold javac's start. Then it reads the
 * arguments (NUL-separated) and compiles as the javac launcher does: com.sun.tools.javac.Main.compile,
 * then System.exit with its code.
 */
public final class LceWarmJavac {
    private static final String HELLO =
        "public class Main { public static void main(String[] a) { System.out.println(\"hi\"); } }\n";

    private static final int WARM_UPS = 2;

    private LceWarmJavac() {}

    public static void main(String[] args) throws IOException {
        // As the javac launcher sets it: javac's default class path is then "." (not this class's).
        System.setProperty("application.home", System.getProperty("java.home"));
        ByteArrayOutputStream fed = new ByteArrayOutputStream();
        try (FileInputStream fifo = new FileInputStream(args[0])) {
            for (int i = 0; i < WARM_UPS && fifo.available() == 0; i++) {
                warmUp();
            }
            fifo.transferTo(fed);  // FileInputStream.readAllBytes seeks, which a FIFO refuses
        }
        String[] javacArgs = split(fed.toString(StandardCharsets.UTF_8));
        System.exit(com.sun.tools.javac.Main.compile(javacArgs));
    }

    private static void warmUp() throws IOException {
        Path dir = Files.createTempDirectory(Path.of("/tmp"), "lce-warm-javac");
        try {
            Path source = Files.writeString(dir.resolve("Main.java"), HELLO);
            String[] hello = {"-d", dir.toString(), "-cp", dir.toString(), source.toString()};
            com.sun.tools.javac.Main.compile(hello, new PrintWriter(new StringWriter()));
        } finally {
            try (Stream<Path> files = Files.walk(dir)) {
                files.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
            }
        }
    }

    private static String[] split(String fed) {
        return fed.isEmpty() ? new String[0] : fed.split("\0", -1);
    }
}
