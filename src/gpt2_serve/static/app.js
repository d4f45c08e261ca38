// Write With Transformer: the editor, its Tab suggestions (streamed from /v1/completions), autosave to
// /api/documents, settings in localStorage, and the read-only view of a shared document (/d/<share_id>).

const $ = (id) => document.getElementById(id);
const editor = $("editor");
const popover = $("popover");
const listbox = $("suggestions");

// ---- settings ----------------------------------------------------------------------------------------------------

const SETTINGS_KEY = "wwt.settings";
const DEFAULTS = { temperature: 0.9, top_k: 40, top_p: 0.95, max_tokens: 24, time_budget: 5, n: 3, api_key: "" };
const FORMAT = {
  temperature: (v) => v.toFixed(2),
  top_k: (v) => (v === 0 ? "off" : String(v)),
  top_p: (v) => v.toFixed(2),
  max_tokens: (v) => `${v} tokens`,
  time_budget: (v) => `${v} s`,
  n: (v) => String(v),
};

function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}");
    return { ...DEFAULTS, ...saved };
  } catch {
    return { ...DEFAULTS };
  }
}

let settings = loadSettings();

function showSettings() {
  for (const key of Object.keys(DEFAULTS)) {
    const input = $(`set-${key}`);
    input.value = settings[key];
    if (FORMAT[key]) $(`out-${key}`).textContent = FORMAT[key](Number(settings[key]));
  }
}

function readSetting(input) {
  const key = input.name;
  settings[key] = input.type === "range" ? Number(input.value) : input.value.trim();
  if (FORMAT[key]) $(`out-${key}`).textContent = FORMAT[key](settings[key]);
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  if (key === "api_key" && doc.failures) { doc.failures = 0; scheduleSave(0); }
}

// ---- talking to the server ---------------------------------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  if (settings.api_key) h.Authorization = `Bearer ${settings.api_key}`;
  return h;
}

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `The server answered ${status}`);
    this.status = status;
    this.param = err.param;
    this.code = err.code;
  }
}

async function api(method, path, body, { keepalive = false } = {}) {
  const response = await fetch(path, {
    method,
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
    keepalive,
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ---- small UI helpers ---------------------------------------------------------------------------------------------

function explain(error) {
  if (error.status === 401) return "The server needs an API key: enter it in Settings.";
  if (error.status === 503) return "The model is still loading. Try again in a moment.";
  if (error.status === 429) return "The server is busy. Try again in a moment.";
  if (error instanceof TypeError) return "The server cannot be reached.";
  return error.message;
}

let toastTimer = 0;
function toast(message, ms = 4000) {
  const el = $("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, ms);
}

function announce(message) {
  // Clear first so the same words said twice are read twice.
  const el = $("announcer");
  el.textContent = "";
  setTimeout(() => { el.textContent = message; }, 30);
}

function setSaveState(text, isError = false) {
  const el = $("save-state");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function autoGrow() {
  editor.style.height = "auto";
  editor.style.height = `${editor.scrollHeight}px`;
}

function updateWordCount() {
  const words = editor.value.trim() ? editor.value.trim().split(/\s+/).length : 0;
  $("word-count").textContent = `${words} ${words === 1 ? "word" : "words"}`;
}

function timeAgo(seconds) {
  const delta = Date.now() / 1000 - seconds;
  if (delta < 45) return "just now";
  if (delta < 3600) return `${Math.round(delta / 60)} min ago`;
  if (delta < 86400) return `${Math.round(delta / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

// ---- where the caret is on screen ---------------------------------------------------------------------------------

// A textarea does not say where its caret is drawn, so lay the same text out in an invisible twin with the same
// box and font, and measure a marker placed at the caret.
const MIRRORED = ["boxSizing", "width", "paddingTop", "paddingRight", "paddingBottom", "paddingLeft",
  "borderTopWidth", "borderRightWidth", "borderBottomWidth", "borderLeftWidth", "fontFamily", "fontSize",
  "fontWeight", "fontStyle", "lineHeight", "letterSpacing", "wordSpacing", "tabSize", "textIndent", "textTransform"];

function caretPosition(index) {
  const mirror = document.createElement("div");
  const style = getComputedStyle(editor);
  for (const prop of MIRRORED) mirror.style[prop] = style[prop];
  Object.assign(mirror.style, {
    position: "absolute", visibility: "hidden", top: "0", left: "-9999px",
    whiteSpace: "pre-wrap", overflowWrap: "break-word",
  });
  mirror.textContent = editor.value.slice(0, index);
  const marker = document.createElement("span");
  marker.textContent = "\u200b";
  mirror.appendChild(marker);
  document.body.appendChild(mirror);
  const lineHeight = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.5;
  const position = {
    top: editor.offsetTop + marker.offsetTop - editor.scrollTop,
    left: editor.offsetLeft + marker.offsetLeft - editor.scrollLeft,
    lineHeight,
  };
  mirror.remove();
  return position;
}

function placePopover() {
  const sheet = $("sheet");
  const caret = caretPosition(editor.selectionEnd);
  const width = popover.offsetWidth;
  const left = Math.max(12, Math.min(caret.left - 12, sheet.clientWidth - width - 12));
  popover.style.left = `${left}px`;
  popover.style.top = `${caret.top + caret.lineHeight + 4}px`;
}

// ---- suggestions --------------------------------------------------------------------------------------------------

// One session per caret position: every Tab there adds a request's worth of options; typing, moving the caret or
// Esc ends it, cancelling what is still streaming.
let session = null;
let tabLeaves = false; // after Esc with nothing open, the next Tab moves focus out (keyboard users can leave)
let optionCount = 0;

// The context a suggestion continues. No space is forced in: "Hel" is finished as a word. A single trailing space
// is held back from the prompt (GPT-2 writes its spaces at the start of a token, so a prompt ending in one reads
// as a broken word) and given back by the choice: a suggestion that starts with a space uses the typed one.
function contextAt(caret) {
  const before = editor.value.slice(0, caret);
  const typedSpace = / $/.test(before) && !/\s $/.test(before);
  return { prompt: typedSpace ? before.slice(0, -1) : before, typedSpace, caret };
}

// What choosing a suggestion does: insert `text`, after deleting `deleteBefore` characters before the caret.
function placement(completion, ctx) {
  if (!ctx.typedSpace) return { text: completion, deleteBefore: 0 };
  if (completion.startsWith(" ")) return { text: completion.slice(1), deleteBefore: 0 };
  return { text: completion, deleteBefore: 1 }; // "," after "Hello " becomes "Hello,"
}

function openSession() {
  const ctx = contextAt(editor.selectionEnd);
  session = { ctx, requests: new Set(), options: [], active: -1 };
  listbox.replaceChildren();
  popover.hidden = false;
  editor.setAttribute("aria-expanded", "true");
  placePopover();
}

function closeSession() {
  if (!session) return;
  for (const controller of session.requests) controller.abort("closed");
  session = null;
  popover.hidden = true;
  listbox.replaceChildren();
  editor.setAttribute("aria-expanded", "false");
  editor.removeAttribute("aria-activedescendant");
}

function addOption() {
  const el = document.createElement("div");
  el.id = `suggestion-${++optionCount}`;
  el.setAttribute("role", "option");
  el.setAttribute("aria-selected", "false");
  const key = document.createElement("span");
  key.className = "option-key";
  key.setAttribute("aria-hidden", "true");
  key.textContent = String(session.options.length + 1);
  const body = document.createElement("span");
  body.className = "option-text pending";
  const join = document.createElement("span");
  join.className = "option-join";
  join.setAttribute("aria-hidden", "true");
  const text = document.createElement("span");
  text.className = "option-words";
  body.append(join, text);
  el.append(key, body);
  const option = { el, bodyEl: body, joinEl: join, textEl: text, raw: "", done: false, finish: null };
  el.addEventListener("mousedown", (event) => event.preventDefault()); // keep focus (and the caret) in the editor
  el.addEventListener("click", () => choose(session.options.indexOf(option)));
  session.options.push(option);
  listbox.appendChild(el);
  if (session.active < 0) setActive(0);
  return option;
}

function renderOption(option) {
  const { text } = placement(option.raw, session.ctx);
  // The list shows the words; the leading space, if any, is in what gets inserted (data-insert). A suggestion that
  // joins the word at the caret ("Hel" + "lo") shows that word faintly before it, for the eye only. (The prompt is
  // the text before the caret as it will be, a typed space the suggestion replaces left out.)
  option.el.dataset.insert = text;
  const before = session.ctx.prompt;
  option.joinEl.textContent = /^\S/.test(option.raw) && /\S$/.test(before) ? before.match(/\S{1,16}$/)[0] : "";
  option.textEl.textContent = text.replace(/^ /, "");
  option.bodyEl.classList.toggle("pending", !option.done);
  const empty = option.done && !text.trim();
  if (empty) {
    option.joinEl.textContent = "";
    option.textEl.textContent = option.finish ? "nothing: the model ended the text here" : "nothing in the time budget";
  }
  option.el.setAttribute("aria-disabled", String(empty));
}

function setActive(index) {
  if (!session || !session.options.length) return;
  const count = session.options.length;
  session.active = ((index % count) + count) % count;
  session.options.forEach((option, i) => option.el.setAttribute("aria-selected", String(i === session.active)));
  const el = session.options[session.active].el;
  editor.setAttribute("aria-activedescendant", el.id);
  el.scrollIntoView({ block: "nearest" });
}

function choose(index) {
  if (!session || index < 0 || index >= session.options.length) return;
  const option = session.options[index];
  if (option.el.getAttribute("aria-disabled") === "true") return;
  const { text, deleteBefore } = placement(option.raw, session.ctx);
  const caret = session.ctx.caret;
  closeSession();
  editor.focus();
  editor.setSelectionRange(caret - deleteBefore, caret);
  // insertText keeps the browser's undo history (Ctrl+Z takes the suggestion back out); setRangeText is the
  // fallback where execCommand is gone.
  if (!document.execCommand("insertText", false, text)) {
    editor.setRangeText(text, caret - deleteBefore, caret, "end");
    editor.dispatchEvent(new Event("input", { bubbles: true }));
  }
}

// Long documents: send the tail. When the server still finds prompt + length past the model's window, its 400
// (code context_length_exceeded) says how many tokens fit: ask again with a prompt cut to leave room for the length
// (at most half the window), or, when the message cannot be read, with half the prompt.
const MAX_PROMPT_CHARS = 6000;

function tail(text, chars) {
  if (text.length <= chars) return text;
  const cut = text.slice(-chars);
  const space = cut.search(/\s/); // start at a word, not inside one
  return space > 0 && space < 200 ? cut.slice(space) : cut;
}

function refit(error, prompt, maxTokens) {
  const numbers = /context length is (\d+) tokens; the prompt has (\d+) tokens/.exec(error.message);
  if (!numbers) return { chars: Math.floor(prompt.length / 2), maxTokens };
  const [size, used] = [Number(numbers[1]), Number(numbers[2])];
  const tokens = Math.min(maxTokens, Math.floor(size / 2));
  return { chars: Math.floor((prompt.length * (size - tokens)) / Math.max(used, 1) * 0.9), maxTokens: tokens };
}

async function requestSuggestions() {
  if (!session) openSession();
  const current = session;
  const options = Array.from({ length: settings.n }, addOption);
  announce(`Writing ${options.length} more suggestions.`);
  const controller = new AbortController();
  current.requests.add(controller);
  const timer = setTimeout(() => controller.abort("time"), settings.time_budget * 1000);
  let fit = { chars: MAX_PROMPT_CHARS, maxTokens: settings.max_tokens };
  try {
    for (let attempt = 0; ; attempt += 1) {
      const prompt = tail(current.ctx.prompt, fit.chars) || "\n";
      try {
        await streamCompletions(current, prompt, fit.maxTokens, options, controller.signal);
        break;
      } catch (error) {
        const tooLong = error instanceof ApiError && error.status === 400
          && (error.code === "context_length_exceeded" || /context length/i.test(error.message));
        if (!tooLong || attempt === 5) throw error;
        fit = refit(error, prompt, fit.maxTokens);
      }
    }
  } catch (error) {
    if (controller.signal.aborted && controller.signal.reason === "closed") return;
    if (!(controller.signal.aborted && controller.signal.reason === "time")) {
      toast(explain(error));
      if (session === current) {
        for (const option of options) option.el.remove();
        current.options = current.options.filter((option) => !options.includes(option));
        if (!current.options.length) closeSession();
        else setActive(Math.min(current.active, current.options.length - 1));
      }
      return;
    }
  } finally {
    clearTimeout(timer);
    current.requests.delete(controller);
  }
  if (session !== current) return;
  for (const option of options) { option.done = true; renderOption(option); }
  announce(`${current.options.length} suggestions. Up and down to choose, Enter to insert, Escape to close.`);
}

// POST /v1/completions with stream: true, filling `options[choice.index]` as the server-sent events arrive.
async function streamCompletions(current, prompt, maxTokens, options, signal) {
  const body = {
    prompt, n: options.length, stream: true,
    max_tokens: maxTokens, temperature: settings.temperature, top_p: settings.top_p,
  };
  if (settings.top_k > 0) body.top_k = settings.top_k;
  const request = { method: "POST", headers: headers(), body: JSON.stringify(body), signal };
  const response = await fetch("/v1/completions", request);
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk);
      for (const choice of chunk.choices || []) {
        const option = options[choice.index];
        if (!option || session !== current) continue;
        option.raw += choice.text || "";
        if (choice.finish_reason) { option.done = true; option.finish = choice.finish_reason; }
        renderOption(option);
      }
    }
  }
}

// ---- keyboard -----------------------------------------------------------------------------------------------------

editor.addEventListener("keydown", (event) => {
  if (event.isComposing) return;
  const plain = !event.ctrlKey && !event.metaKey && !event.altKey;
  if (event.key === "Tab" && plain && !event.shiftKey && !editor.readOnly) {
    if (tabLeaves) { tabLeaves = false; return; } // let the browser move focus on
    event.preventDefault();
    requestSuggestions();
    return;
  }
  if (event.key === "Escape") {
    if (session) { event.preventDefault(); closeSession(); announce("Suggestions closed."); }
    else if (!editor.readOnly) { tabLeaves = true; announce("Press Tab to leave the editor."); }
    return;
  }
  tabLeaves = false;
  if (!session) return;
  if (event.key === "ArrowDown" && plain) { event.preventDefault(); setActive(session.active + 1); }
  else if (event.key === "ArrowUp" && plain) { event.preventDefault(); setActive(session.active - 1); }
  else if (event.key === "Enter" && plain && !event.shiftKey) { event.preventDefault(); choose(session.active); }
  else if (["ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"].includes(event.key)) closeSession();
});

editor.addEventListener("mousedown", () => closeSession());
editor.addEventListener("blur", () => closeSession());
window.addEventListener("resize", () => { autoGrow(); if (session) placePopover(); });

// ---- documents: load, autosave, conflicts --------------------------------------------------------------------------

const LAST_DOC_KEY = "wwt.lastDocument";
const doc = {
  id: null, shareId: null, revision: 0, savedText: "", saving: null, timer: 0, conflict: false, failures: 0,
};

function setDocument(data) {
  doc.id = data ? data.id : null;
  doc.shareId = data ? data.share_id : null;
  doc.revision = data ? data.revision : 0;
  doc.savedText = data ? data.text : "";
  doc.conflict = false;
  $("conflict-banner").hidden = true;
  editor.value = doc.savedText;
  const url = doc.id ? `/?doc=${encodeURIComponent(doc.id)}` : "/";
  history.replaceState(null, "", url);
  if (doc.id) localStorage.setItem(LAST_DOC_KEY, doc.id);
  else localStorage.removeItem(LAST_DOC_KEY);
  document.title = data && data.title ? `${data.title} · Write With Transformer` : "Write With Transformer";
  setSaveState(doc.id ? "Saved" : "");
  autoGrow();
  updateWordCount();
}

const dirty = () => editor.value !== doc.savedText;

function scheduleSave(delay = 700) {
  clearTimeout(doc.timer);
  doc.timer = setTimeout(save, delay);
}

// One save in flight at a time; a save names the revision it started from, so another window's save is noticed
// (409) instead of overwritten. `force` (Keep mine) drops that check once.
async function save({ force = false } = {}) {
  clearTimeout(doc.timer);
  if (doc.saving) { await doc.saving; if (dirty()) return save({ force }); return; }
  if (!dirty() || (doc.conflict && !force)) return;
  const text = editor.value;
  setSaveState("Saving…");
  doc.saving = (async () => {
    try {
      const saved = doc.id
        ? await api("PUT", `/api/documents/${doc.id}`, force ? { text } : { text, revision: doc.revision })
        : await api("POST", "/api/documents", { text });
      const created = !doc.id;
      doc.id = saved.id;
      doc.shareId = saved.share_id;
      doc.revision = saved.revision;
      doc.savedText = text;
      doc.failures = 0;
      doc.conflict = false;
      $("conflict-banner").hidden = true;
      if (created) {
        history.replaceState(null, "", `/?doc=${encodeURIComponent(doc.id)}`);
        localStorage.setItem(LAST_DOC_KEY, doc.id);
      }
      document.title = `${saved.title || "Untitled"} · Write With Transformer`;
      setSaveState(dirty() ? "Edited" : "Saved");
    } catch (error) {
      if (error.status === 409) {
        doc.conflict = true;
        $("conflict-banner").hidden = false;
        setSaveState("Not saved: changed elsewhere", true);
      } else if (error.status === 404) {
        // Deleted in another window: keep the words, as a new document.
        doc.id = null;
        setSaveState("Saving as a new document…");
        doc.saving = null;
        return save();
      } else if (error.status === 401) {
        doc.failures += 1; // saved again once a key is entered in Settings
        setSaveState("Not saved: the server needs an API key (Settings)", true);
      } else if (error.status === 413) {
        setSaveState("Not saved: the document is too large", true);
        toast(error.message, 8000);
      } else {
        doc.failures += 1;
        setSaveState("Not saved yet: retrying…", true);
        scheduleSave(Math.min(30000, 2000 * 2 ** doc.failures));
      }
    }
  })();
  try { await doc.saving; } finally { doc.saving = null; }
  if (dirty() && !doc.conflict && !doc.failures) scheduleSave(0);
}

editor.addEventListener("input", () => {
  closeSession(); // typing cancels what is in flight: the suggestions were for other text
  tabLeaves = false;
  autoGrow();
  updateWordCount();
  if (editor.readOnly) return;
  setSaveState("Edited");
  scheduleSave();
});

// Leaving the page: send what is unsaved in one last request that outlives the page.
window.addEventListener("pagehide", () => {
  if (!editor.readOnly && dirty() && doc.id && !doc.conflict) {
    const body = { text: editor.value, revision: doc.revision };
    api("PUT", `/api/documents/${doc.id}`, body, { keepalive: true }).catch(() => {});
  }
});
window.addEventListener("beforeunload", (event) => {
  if (!editor.readOnly && dirty() && (!doc.id || doc.conflict || doc.failures)) event.preventDefault();
});

$("load-theirs").addEventListener("click", async () => {
  setDocument(await api("GET", `/api/documents/${doc.id}`));
  editor.focus();
});
$("keep-mine").addEventListener("click", () => { save({ force: true }); editor.focus(); });

async function openDocument(id) {
  if (doc.id !== id) await save();
  try {
    setDocument(await api("GET", `/api/documents/${encodeURIComponent(id)}`));
  } catch (error) {
    if (error.status !== 404) throw error;
    toast("That document no longer exists. Here is a new one.");
    setDocument(null);
  }
}

async function newDocument() {
  await save();
  closeSession();
  setDocument(null);
  editor.focus();
}

// ---- dialogs: documents, share, settings --------------------------------------------------------------------------

async function showDocuments() {
  const list = $("doc-list");
  list.replaceChildren();
  $("docs-dialog").showModal();
  let documents;
  try {
    ({ data: documents } = await api("GET", "/api/documents"));
  } catch (error) {
    $("docs-dialog").close();
    toast(`Could not list the documents. ${explain(error)}`);
    return;
  }
  $("doc-list-empty").hidden = documents.length > 0;
  for (const item of documents) {
    const li = document.createElement("li");
    li.classList.toggle("current", item.id === doc.id);
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = item.title || "Untitled";
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `Edited ${timeAgo(item.updated)} · ${item.size.toLocaleString()} bytes`;
    open.append(title, meta);
    open.addEventListener("click", async () => {
      $("docs-dialog").close();
      if (document.body.classList.contains("read-only")) {
        location.href = `/?doc=${encodeURIComponent(item.id)}`;
        return;
      }
      await openDocument(item.id);
      editor.focus();
    });
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ${item.title || "Untitled"}`);
    del.addEventListener("click", async () => {
      if (!confirm(`Delete "${item.title || "Untitled"}"? This cannot be undone.`)) return;
      await api("DELETE", `/api/documents/${item.id}`);
      if (item.id === doc.id) setDocument(null);
      li.remove();
      $("doc-list-empty").hidden = list.children.length > 0;
    });
    li.append(open, del);
    list.appendChild(li);
  }
  list.querySelector("button")?.focus();
}

async function showShare() {
  if (!editor.value.trim() && !doc.id) { toast("Write something first; then it can be shared."); return; }
  await save();
  if (!doc.shareId) { toast("The document is not saved yet, so it has no link. Try again in a moment."); return; }
  const url = `${location.origin}/d/${doc.shareId}`;
  $("share-link").value = url;
  $("share-open").href = url;
  $("share-dialog").showModal();
  $("share-link").select();
}

$("copy-link").addEventListener("click", async () => {
  const input = $("share-link");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand("copy"); // clipboard API is refused on plain http off localhost
  }
  $("copy-link").textContent = "Copied";
  setTimeout(() => { $("copy-link").textContent = "Copy link"; }, 1600);
});

// Dialogs give focus back to the editor when they close, wherever it was before.
for (const id of ["settings-dialog", "docs-dialog", "share-dialog"]) {
  $(id).addEventListener("close", () => editor.focus());
}

$("open-settings").addEventListener("click", () => { showSettings(); $("settings-dialog").showModal(); });
$("settings-form").addEventListener("input", (event) => { if (event.target.name) readSetting(event.target); });
$("reset-settings").addEventListener("click", () => {
  settings = { ...DEFAULTS, api_key: settings.api_key };
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  showSettings();
});
$("open-docs").addEventListener("click", showDocuments);
// The Suggest button is Tab for touch screens: it leaves the caret (and focus) in the editor.
$("suggest").addEventListener("mousedown", (event) => event.preventDefault());
$("suggest").addEventListener("click", () => { editor.focus(); requestSuggestions(); });
$("share").addEventListener("click", showShare);
$("new-doc").addEventListener("click", newDocument);
$("new-doc-2").addEventListener("click", () => { $("docs-dialog").close(); newDocument(); });

// ---- the read-only view of a shared document ----------------------------------------------------------------------

async function showShared(shareId) {
  document.body.classList.add("read-only");
  editor.readOnly = true;
  editor.setAttribute("aria-readonly", "true");
  editor.removeAttribute("aria-haspopup");
  editor.removeAttribute("aria-autocomplete");
  editor.removeAttribute("placeholder");
  $("read-only-banner").hidden = false;
  let shared;
  try {
    shared = await api("GET", `/api/shared/${encodeURIComponent(shareId)}`);
  } catch (error) {
    $("read-only-banner").querySelector("p").textContent = error.status === 404
      ? "There is no document at this link. It may have been deleted."
      : `This document could not be loaded: ${error.message}`;
    $("duplicate").hidden = true;
    return;
  }
  editor.value = shared.text;
  document.title = `${shared.title || "Untitled"} (read-only) · Write With Transformer`;
  setSaveState(`Read-only · edited ${timeAgo(shared.updated)}`);
  autoGrow();
  updateWordCount();
  $("duplicate").addEventListener("click", async () => {
    const copy = await api("POST", "/api/documents", { text: shared.text });
    location.href = `/?doc=${encodeURIComponent(copy.id)}`;
  });
}

// ---- start ----------------------------------------------------------------------------------------------------------

async function start() {
  const sharedMatch = location.pathname.match(/^\/d\/([^/]+)$/);
  if (sharedMatch) { await showShared(decodeURIComponent(sharedMatch[1])); return; }
  const requested = new URLSearchParams(location.search).get("doc") || localStorage.getItem(LAST_DOC_KEY);
  if (requested) await openDocument(requested);
  else setDocument(null);
  editor.focus();
  editor.setSelectionRange(editor.value.length, editor.value.length);
}

start().catch((error) => toast(`Could not open the document. ${explain(error)}`, 10000));
