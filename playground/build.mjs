// Builds the playground into dist/ (gitignored), which the gateway serves (gateway/playground.py):
//   dist/index.html            the page, naming its bundle by content hash (a rebuild is never served stale)
//   dist/playground/app-*.js   src/main.js and CodeMirror, bundled and minified
//   dist/playground/app-*.css
//   dist/docs/                 Swagger UI's own files, so that /docs needs no CDN
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

const dist = "dist";
rmSync(dist, { recursive: true, force: true });

const result = await build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  entryNames: "[name]-[hash]",
  outdir: `${dist}/playground`,
  metafile: true,
});

const outputs = Object.keys(result.metafile.outputs).map((path) => basename(path));
const named = (extension) => outputs.find((name) => name.endsWith(extension));
const page = readFileSync("src/index.html", "utf8")
  .replace("{{app.js}}", `/playground/${named(".js")}`)
  .replace("{{app.css}}", `/playground/${named(".css")}`);
writeFileSync(`${dist}/index.html`, page);

mkdirSync(`${dist}/docs`, { recursive: true });
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"]) {
  copyFileSync(`node_modules/swagger-ui-dist/${file}`, `${dist}/docs/${file}`);
}
console.log(`playground built into ${dist}/: ${outputs.join(", ")}`);
