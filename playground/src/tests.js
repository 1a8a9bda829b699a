// The test-cases panel (judge mode): cases of input and expected output, and each one's verdict.
export class TestsPanel {
  constructor(list, summary) {
    this.list = list;
    this.summary = summary;
    this.add();
  }

  add({ name = "", stdin = "", expected = "" } = {}) {
    const number = this.list.children.length + 1;
    const item = document.createElement("div");
    item.className = "case";
    item.innerHTML = `
      <div class="case-head">
        <input type="text" class="case-name" aria-label="Case name">
        <span class="verdict"></span>
        <button type="button" class="quiet case-remove" aria-label="Remove this case">✕</button>
      </div>
      <div class="case-io">
        <textarea class="case-stdin" spellcheck="false" placeholder="Input"></textarea>
        <textarea class="case-expected" spellcheck="false" placeholder="Expected output"></textarea>
      </div>
      <pre class="case-actual" hidden></pre>`;
    item.querySelector(".case-name").value = name || `case ${number}`;
    item.querySelector(".case-stdin").value = stdin;
    item.querySelector(".case-expected").value = expected;
    item.querySelector(".case-remove").onclick = () => item.remove();
    this.list.append(item);
    return item;
  }

  /** The run body's `tests`: every case with an input or an expected output. */
  cases() {
    return [...this.list.children]
      .map((item) => ({
        name: item.querySelector(".case-name").value.trim(),
        stdin: item.querySelector(".case-stdin").value,
        expected_output: item.querySelector(".case-expected").value,
      }))
      .filter((test) => test.stdin || test.expected_output);
  }

  clearResults() {
    this.summary.textContent = "";
    for (const item of this.list.children) this.mark(item, null, "", "");
  }

  /** A `test` event of the stream: {index, name, status, passed, reason}. */
  showVerdict(verdict) {
    const item = this.sent()[verdict.index];
    if (item) this.mark(item, verdict.passed, this.label(verdict), "");
  }

  /** The result's `tests`, in request order. */
  showResults(results) {
    const items = this.sent();
    results.forEach((result, index) => {
      if (!items[index]) return;
      const actual = result.passed ? "" : `got: ${result.stdout}${result.stderr ? `\nstderr: ${result.stderr}` : ""}`;
      this.mark(items[index], result.passed, this.label(result), actual);
    });
    const passed = results.filter((result) => result.passed).length;
    this.summary.textContent = `${passed}/${results.length} passed`;
  }

  label(verdict) {
    if (verdict.passed) return "✓ passed";
    if (verdict.status === "SKIPPED") return "skipped";
    return `✗ ${verdict.reason || (verdict.status === "COMPLETED" ? "wrong answer" : verdict.status.toLowerCase())}`;
  }

  /** The cases that went into the run, in its order (those left empty were not sent). */
  sent() {
    return [...this.list.children].filter(
      (item) => item.querySelector(".case-stdin").value || item.querySelector(".case-expected").value,
    );
  }

  mark(item, passed, label, actual) {
    item.classList.toggle("passed", passed === true);
    item.classList.toggle("failed", passed === false);
    const verdict = item.querySelector(".verdict");
    verdict.textContent = label;
    verdict.className = `verdict ${passed === true ? "pass" : passed === false ? "fail" : ""}`;
    const shown = item.querySelector(".case-actual");
    shown.textContent = actual;
    shown.hidden = !actual;
  }
}
