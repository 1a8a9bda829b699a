// The playground page: a session's code in the editor, autosaved; runs with their output live; test cases.
import "./style.css";
import { ApiError, call, saveKey, savedKey } from "./api.js";
import { CodeEditor } from "./editor.js";
import { follow, interact } from "./runs.js";
import { TestsPanel } from "./tests.js";

const AUTOSAVE_DELAY_MS = 600;
const LAST_LANGUAGE = "lce.language";
const LABELS = {
  python: "Python", javascript: "JavaScript", c: "C", cpp: "C++", go: "Go", java: "Java", php: "PHP", ruby: "Ruby",
};

const $ = (id) => document.getElementById(id);
const page = {
  languages: new Map(), // id -> summary (GET /languages)
  templates: new Map(), // id -> template_code
  languageId: null,
  sessionId: null,
  running: false,
  pendingSave: null, // the debounce timer
  saving: Promise.resolve(), // the last save queued (never rejects: queueSave's caller hears of failures)
  dirty: false, // edited since the last save
  channel: null, // the interactive run's WebSocket, while it runs
  attempt: 1,
};
const editor = new CodeEditor($("editor"), { onChange: scheduleSave, onRun: () => runProgram() });
const tests = new TestsPanel($("cases"), $("tests-summary"));

// --- notices: what went wrong, in words --------------------------------------------------------------

function notify(message, action = null) {
  $("notice-text").textContent = message;
  const button = $("notice-action");
  button.hidden = !action;
  if (action) {
    button.textContent = action.label;
    button.onclick = () => {
      $("notice").hidden = true;
      action.run();
    };
  }
  $("notice").hidden = false;
}

function showError(error) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    notify(`Something went wrong in the page: ${error.message}`);
    return;
  }
  if (error.status === 401) {
    notify(error.message, { label: "Enter a key", run: () => askForKey(error.message) });
    askForKey(error.message);
  } else if (error.status === 409 && /closed/.test(error.serverMessage)) {
    const goOn = () => startSession(editor.text()).catch(showError);
    notify(error.message, { label: "Start a new session with this code", run: goOn });
  } else {
    notify(error.message);
  }
}

$("notice-close").onclick = () => ($("notice").hidden = true);

// --- the API key -------------------------------------------------------------------------------------

function askForKey(reason = "") {
  const dialog = $("key-dialog");
  if (dialog.open) return;
  if (reason) $("key-reason").textContent = reason;
  $("key-input").value = savedKey();
  dialog.showModal();
}

$("key-button").onclick = () => askForKey();
$("key-dialog").addEventListener("close", () => {
  const choice = $("key-dialog").returnValue;
  if (choice === "save" || choice === "forget") {
    saveKey(choice === "save" ? $("key-input").value.trim() : "");
    location.reload(); // everything the page shows is read again with the new key
  }
});

function showKeyState() {
  $("key-button").textContent = savedKey() ? "API key ✓" : "API key";
}

// --- languages and sessions --------------------------------------------------------------------------

function languageName(id) {
  return page.languages.get(id)?.name;
}

async function template(id) {
  if (!page.templates.has(id)) page.templates.set(id, (await call("GET", `/languages/${id}`)).template_code);
  return page.templates.get(id);
}

function setSessionInUrl(id) {
  const url = new URL(location.href);
  if (id) url.searchParams.set("session", id);
  else url.searchParams.delete("session");
  history.replaceState(null, "", url);
}

function showSaveState(text, failed = false) {
  $("save-state").textContent = text;
  $("save-state").classList.toggle("failed", failed);
}

/** A new session of the picked language holding `source`; its id goes into the URL. */
async function startSession(source) {
  const created = await call("POST", "/code-sessions", { language_id: page.languageId, source_code: source });
  page.sessionId = created.session_id;
  setSessionInUrl(page.sessionId);
  showSaveState("Saved");
  return page.sessionId;
}

function scheduleSave() {
  page.dirty = true;
  clearTimeout(page.pendingSave);
  showSaveState("Editing…");
  page.pendingSave = setTimeout(() => {
    page.pendingSave = null;
    queueSave().catch((error) => {
      showSaveState("Not saved", true);
      showError(error);
    });
  }, AUTOSAVE_DELAY_MS);
}

/** One save at a time, in order: the first creates the session, the next ones find it. */
function queueSave() {
  const saved = page.saving.then(save);
  page.saving = saved.catch(() => {});
  return saved;
}

async function save() {
  if (!page.dirty && page.sessionId) return;
  const source = editor.text();
  page.dirty = false; // an edit while this is on its way marks it again
  showSaveState("Saving…");
  try {
    if (page.sessionId) await call("PATCH", `/code-sessions/${page.sessionId}`, { source_code: source });
    else await startSession(source);
  } catch (error) {
    page.dirty = true;
    throw error;
  }
  showSaveState(page.dirty ? "Editing…" : "Saved");
}

/** Saves now what is not saved yet (a session created if none), so that a run runs what is on screen. */
async function flushSave() {
  clearTimeout(page.pendingSave);
  page.pendingSave = null;
  await queueSave();
  return page.sessionId;
}

async function switchLanguage(id) {
  clearTimeout(page.pendingSave);
  page.pendingSave = null;
  await page.saving; // a save on its way belongs to the language left behind
  page.dirty = false;
  page.languageId = id;
  localStorage.setItem(LAST_LANGUAGE, id);
  editor.load(languageName(id), await template(id));
  document.body.dataset.language = languageName(id);
  // A session holds one language: the next edit or run starts a new one.
  page.sessionId = null;
  setSessionInUrl(null);
  showSaveState("");
}

async function loadLanguages() {
  const { languages } = await call("GET", "/languages");
  const select = $("language");
  for (const language of languages) {
    page.languages.set(language.id, language);
    const option = document.createElement("option");
    option.value = language.id;
    option.dataset.name = language.name;
    option.textContent = `${LABELS[language.name] || language.name} (${language.runtime} ${language.version})`;
    select.append(option);
  }
}

async function openSession(id) {
  // From the link: only ever a path segment. The page goes on with the id the server answers.
  const session = await call("GET", `/code-sessions/${encodeURIComponent(id)}`);
  page.sessionId = session.session_id;
  page.languageId = session.language_id;
  $("language").value = session.language_id;
  editor.load(session.language_name, session.source_code);
  document.body.dataset.language = session.language_name;
  showSaveState("Saved");
  if (session.status !== "ACTIVE") {
    showError(new ApiError(409, "This session is closed: it can no longer be saved or run.", {
      serverMessage: "closed",
    }));
  }
}

async function openDefault() {
  const remembered = localStorage.getItem(LAST_LANGUAGE);
  const python = [...page.languages.values()].find((language) => language.name === "python");
  const id = page.languages.has(remembered) ? remembered : (python || page.languages.values().next().value).id;
  $("language").value = id;
  await switchLanguage(id);
}

$("language").onchange = () => switchLanguage($("language").value).catch(showError);

// --- output and status -------------------------------------------------------------------------------

function write(text, kind) {
  const output = $("output");
  const last = output.lastChild;
  if (last && last.className === kind) last.append(text); // a text node more: no copy of what is there
  else {
    const span = document.createElement("span");
    span.className = kind;
    span.textContent = text;
    output.append(span);
  }
  output.scrollTop = output.scrollHeight;
}

function showStatus(status, details = []) {
  const line = $("status");
  line.replaceChildren();
  const badge = document.createElement("span");
  badge.className = `badge ${status}`;
  badge.textContent = status;
  line.append(badge);
  for (const [label, value] of details) {
    if (value === null || value === undefined || value === "") continue;
    const item = document.createElement("span");
    item.dataset.field = label;
    item.textContent = `${label}: ${value}`;
    line.append(item);
  }
}

function showWarnings(warnings) {
  $("warnings").replaceChildren(
    ...(warnings || []).map((warning) => {
      const item = document.createElement("li");
      item.textContent = typeof warning === "string" ? warning : JSON.stringify(warning);
      return item;
    }),
  );
}

function memory(kb) {
  if (!kb) return null;
  return kb >= 1024 ? `${(kb / 1024).toFixed(1)} MB` : `${kb} KB`;
}

function showResult(result) {
  const details = [
    ["time", result.execution_time_ms != null ? `${result.execution_time_ms} ms` : null],
    ["memory", memory(result.memory_kb)],
    ["exit code", result.exit_code],
    ["reason", result.reason],
  ];
  if (result.tests_total) details.push(["tests", `${result.tests_passed}/${result.tests_total} passed`]);
  showStatus(result.status, details);
  showWarnings(result.warnings);
  if (result.stdout_truncated || result.stderr_truncated) write("\n[output cut at the limit]\n", "note");
  if (result.tests) tests.showResults(result.tests);
}

function onEvent(kind, data) {
  if (kind === "status") {
    if (data.attempt && data.attempt > page.attempt) {
      page.attempt = data.attempt;
      $("output").replaceChildren();
      write(`[the run is being retried: attempt ${data.attempt}]\n`, "note");
    }
    showStatus(data.status, [["reason", data.reason]]);
  } else if (kind === "stdout") {
    write(data.data, "out");
  } else if (kind === "stderr") {
    write(data.data, "err");
  } else if (kind === "test") {
    tests.showVerdict(data);
  }
}

// --- runs --------------------------------------------------------------------------------------------

function parseArgs(text) {
  const args = [];
  for (const match of text.matchAll(/"((?:\\.|[^"\\])*)"|'([^']*)'|(\S+)/g)) {
    args.push(match[1] !== undefined ? match[1].replace(/\\(.)/g, "$1") : (match[2] ?? match[3]));
  }
  return args;
}

function setRunning(running) {
  page.running = running;
  $("run").disabled = running;
  $("run-tests").disabled = running;
}

async function start(body, judge) {
  if (page.running) return;
  setRunning(true);
  $("notice").hidden = true;
  $("output").replaceChildren();
  showWarnings([]);
  page.attempt = 1;
  if (judge) tests.clearResults();
  showStatus("QUEUED");
  try {
    const sessionId = await flushSave();
    const created = await call("POST", `/code-sessions/${sessionId}/run`, body);
    showWarnings(created.warnings);
    showResult(body.interactive ? await typeTo(created.execution_id) : await follow(created.execution_id, onEvent));
  } catch (error) {
    showStatus("NOT RUN");
    showError(error);
  } finally {
    setRunning(false);
  }
}

async function typeTo(executionId) {
  page.channel = interact(executionId, onEvent, showError);
  $("typing").hidden = false;
  $("typed").focus();
  try {
    return await page.channel.result;
  } finally {
    page.channel = null;
    $("typing").hidden = true;
  }
}

function runProgram() {
  const body = {};
  const stdin = $("stdin").value;
  const args = parseArgs($("args").value);
  if (stdin) body.stdin = stdin;
  if (args.length) body.args = args;
  if ($("interactive").checked) body.interactive = true;
  return start(body, false);
}

function runTests() {
  const cases = tests.cases();
  if (!cases.length) {
    notify("Add a test case first: its input and the output it expects.");
    return;
  }
  return start({ tests: cases, compare: $("compare").value }, true);
}

$("run").onclick = () => runProgram();
$("run-tests").onclick = () => runTests();
$("add-case").onclick = () => tests.add();
$("typing").onsubmit = (event) => {
  event.preventDefault();
  const line = `${$("typed").value}\n`;
  $("typed").value = "";
  write(line, "typed");
  page.channel?.send(line);
};
$("eof").onclick = () => page.channel?.close();
document.addEventListener("keydown", (event) => {
  // Ctrl/Cmd+Enter runs from anywhere on the page, not only from the editor.
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.defaultPrevented) {
    event.preventDefault();
    runProgram();
  }
});

// --- start -------------------------------------------------------------------------------------------

async function main() {
  showKeyState();
  try {
    await loadLanguages();
    const id = new URLSearchParams(location.search).get("session");
    if (id) {
      try {
        await openSession(id);
      } catch (error) {
        await openDefault();
        throw error;
      }
    } else {
      await openDefault();
    }
  } catch (error) {
    showError(error);
  }
  document.body.dataset.ready = "true";
  editor.focus();
}

main();
