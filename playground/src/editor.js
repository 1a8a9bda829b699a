// The code editor: CodeMirror 6 with the language of the session (highlighting, indentation, brackets).
import { basicSetup } from "codemirror";
import { indentWithTab } from "@codemirror/commands";
import { cpp } from "@codemirror/lang-cpp";
import { java } from "@codemirror/lang-java";
import { javascript } from "@codemirror/lang-javascript";
import { php } from "@codemirror/lang-php";
import { python } from "@codemirror/lang-python";
import { StreamLanguage, indentUnit } from "@codemirror/language";
import { go } from "@codemirror/legacy-modes/mode/go";
import { ruby } from "@codemirror/legacy-modes/mode/ruby";
import { Compartment, EditorState } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";

// LCE's language names (GET /languages) to CodeMirror's support and each language's usual indent.
const SUPPORT = {
  python: () => [python(), indentUnit.of("    ")],
  javascript: () => [javascript(), indentUnit.of("  ")],
  c: () => [cpp(), indentUnit.of("    ")],
  cpp: () => [cpp(), indentUnit.of("    ")],
  go: () => [StreamLanguage.define(go), indentUnit.of("\t")],
  java: () => [java(), indentUnit.of("    ")],
  php: () => [php(), indentUnit.of("    ")],
  ruby: () => [StreamLanguage.define(ruby), indentUnit.of("  ")],
};

export class CodeEditor {
  /** `onChange(text)` after each edit by the person; `onRun()` on Ctrl/Cmd+Enter. */
  constructor(parent, { onChange, onRun }) {
    this.language = new Compartment();
    this.quiet = false; // set while the page itself replaces the text: that is no edit to save
    const run = { key: "Mod-Enter", preventDefault: true, run: () => (onRun(), true) };
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        doc: "",
        extensions: [
          keymap.of([run, indentWithTab]),
          basicSetup,
          this.language.of([]),
          EditorView.updateListener.of((update) => {
            if (update.docChanged && !this.quiet) onChange(this.text());
          }),
          EditorView.contentAttributes.of({ "aria-label": "Source code" }),
        ],
      }),
    });
  }

  text() {
    return this.view.state.doc.toString();
  }

  /** Replaces the text and the language without counting it as an edit. */
  load(languageName, text) {
    this.quiet = true;
    try {
      this.view.dispatch({
        changes: { from: 0, to: this.view.state.doc.length, insert: text },
        effects: this.language.reconfigure((SUPPORT[languageName] || (() => []))()),
      });
    } finally {
      this.quiet = false;
    }
  }

  focus() {
    this.view.focus();
  }
}
