// Verify predictions: a grid of a job's images (confirm many at once) and a one-image view
// (labels as present/absent toggles), a searchable label picker, custom labels, keyboard
// shortcuts for every action, and every decision saved the moment it is made.
//
// Everything shown is built with textContent / setAttribute: source-refs and label names are
// data, never markup. The page's data comes from <script type="application/json"
// id="verify-data">; paging and stepping fetch the same from verify/items.json.
"use strict";

(() => {
  const dataNode = document.getElementById("verify-data");
  if (!dataNode) return;
  const D = JSON.parse(dataNode.textContent);

  const GRID_THUMB = 320;
  const IMAGE_THUMB = 1024;
  const POLL_MS = 20000;
  const jobBase = `/console/jobs/${encodeURIComponent(D.jobId)}`;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  const $ = (id) => document.getElementById(id);
  const grid = $("verify-grid");
  const one = $("one-image");
  const viewBar = $("view-bar");
  const keyHints = $("key-hints");
  const notice = $("notice");
  const saveState = $("save-state");
  const progressCount = $("progress-count");
  const progressBar = $("progress-bar");
  const pickerBox = $("picker");
  const pickerSearch = $("picker-search");
  const pickerList = $("picker-list");
  const pickerTitle = $("picker-title");
  const pickerTarget = $("picker-target");
  const pickerError = $("picker-error");
  const help = $("help");
  const helpButton = $("help-button");

  // --- Building DOM nodes (text only) ----------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
    return node;
  }

  const kbd = (key) => el("kbd", null, key);

  function thumbnail(ref, size) {
    return `/console/thumbnail?ref=${encodeURIComponent(ref)}&size=${size}`;
  }

  function shortRef(ref) {
    const path = ref.split("?")[0];
    const name = path.slice(path.lastIndexOf("/") + 1);
    return name || ref;
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function when(seconds) {
    return new Date(seconds * 1000).toLocaleString();
  }

  function percent(value) {
    return value === null || value === undefined ? "" : `${value.toFixed(1)}%`;
  }

  // --- Labels: the taxonomy, the job's custom labels, and their parents -------------------------

  const labelInfo = new Map(); // name -> {name, parent, level, custom, index}
  D.taxonomy.forEach((entry, index) => {
    labelInfo.set(entry.name, { ...entry, custom: false, index });
  });

  function setCustomLabels(list) {
    D.customLabels = list;
    list.forEach((entry, index) => {
      const known = labelInfo.get(entry.name);
      if (!known || known.custom) {
        labelInfo.set(entry.name, { ...entry, custom: true, index: 10000 + index });
      }
    });
    renderCustomList();
  }

  function parentOf(name, item) {
    const info = labelInfo.get(name);
    if (info) return info.parent || "";
    if (item) {
      const predicted = item.labels.find((entry) => entry.name === name);
      if (predicted) return predicted.parent || "";
    }
    return "";
  }

  // The label and every label above it, nearest first.
  function chain(name, item) {
    const names = [name];
    let parent = parentOf(name, item);
    while (parent && names.length < 8 && !names.includes(parent)) {
      names.push(parent);
      parent = parentOf(parent, item);
    }
    return names;
  }

  function sortKey(name, item) {
    return chain(name, item)
      .reverse()
      .map((n) => (labelInfo.has(n) ? labelInfo.get(n).index : 20000));
  }

  function compareKeys(a, b) {
    for (let i = 0; i < Math.min(a.length, b.length); i += 1) {
      if (a[i] !== b[i]) return a[i] - b[i];
    }
    return a.length - b.length;
  }

  // --- Images and their decisions ---------------------------------------------------------------

  const itemCache = new Map(); // results line position -> item (one object per line per visit)
  const known = new Map(); // source-ref -> {decision, at}: the latest the page knows of
  const undoStack = []; // each entry: [{ref, before}] of one user action
  let inFlight = 0;
  let lastError = "";

  const state = {
    view: D.view,
    items: [],
    total: D.total,
    offset: D.offset,
    limit: D.limit,
    position: D.position,
    neighbours: D.neighbours,
    index: null, // the image's place among the filtered images (one-image view), when known
    focus: 0, // the focused card of the grid
    selected: new Set(), // positions selected in the grid
    reviewed: D.reviewed,
    images: D.images,
  };

  function makeItem(raw) {
    const item = {
      position: raw.position,
      sourceRef: raw.sourceRef,
      labels: raw.labels,
      contentTypes: raw.contentTypes,
      decision: raw.decision,
      confidence: new Map(),
      predicted: new Set(),
      present: new Map(),
      saving: false,
      dirty: false,
      error: "",
    };
    for (const entry of raw.labels) {
      const best = item.confidence.get(entry.name);
      if (entry.confidence !== null && (best === undefined || entry.confidence > best)) {
        item.confidence.set(entry.name, entry.confidence);
      }
    }
    for (const entry of raw.labels) {
      // A predicted label implies its parents, as the ground-truth builder counts them.
      if (entry.predicted) chain(entry.name, item).forEach((name) => item.predicted.add(name));
    }
    resetFromDecision(item);
    return item;
  }

  function presentFrom(item, decision) {
    const present = new Map();
    for (const name of item.predicted) present.set(name, true);
    if (decision) {
      for (const [name, verdict] of Object.entries(decision.labels)) present.set(name, verdict === true);
    }
    return present;
  }

  function resetFromDecision(item) {
    item.present = presentFrom(item, item.decision);
  }

  // What is sent: every predicted label present or absent, and the labels added as present.
  function verdictsOf(item, present) {
    const labels = {};
    for (const [name, verdict] of present) {
      if (item.predicted.has(name)) labels[name] = verdict;
      else if (verdict) labels[name] = true;
    }
    return labels;
  }

  function canonical(labels) {
    return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  function changedSinceSaved(item) {
    if (!item.decision) return true;
    return canonical(verdictsOf(item, item.present)) !== canonical(verdictsOf(item, presentFrom(item, item.decision)));
  }

  function shownLabels(item) {
    return [...item.present.keys()].sort((a, b) => compareKeys(sortKey(a, item), sortKey(b, item)));
  }

  // Present makes every label above present; absent makes every label below absent: a decision
  // is never self-contradictory.
  function setLabel(item, name, present) {
    if (present) {
      for (const above of chain(name, item)) item.present.set(above, true);
      return;
    }
    item.present.set(name, false);
    for (const other of [...item.present.keys()]) {
      if (other !== name && chain(other, item).includes(name)) item.present.set(other, false);
    }
  }

  function itemFrom(raw, startedAt) {
    let item = itemCache.get(raw.position);
    const latest = known.get(raw.sourceRef);
    const decision = latest && latest.at > startedAt ? latest.decision : raw.decision;
    if (!latest || latest.at <= startedAt) known.set(raw.sourceRef, { decision: raw.decision, at: startedAt });
    if (!item || item.sourceRef !== raw.sourceRef) {
      item = makeItem({ ...raw, decision });
      itemCache.set(raw.position, item);
      return item;
    }
    if (!item.saving && !item.dirty && revision(decision) !== revision(item.decision)) {
      item.decision = decision;
      resetFromDecision(item);
    }
    return item;
  }

  const revision = (decision) => (decision ? decision.revision : 0);

  // A decision the server answered with: kept, and shown on every line of that image.
  function remember(ref, decision, except) {
    known.set(ref, { decision, at: performance.now() });
    for (const item of itemCache.values()) {
      if (item.sourceRef !== ref || item === except || item.saving) continue;
      item.decision = decision;
      item.dirty = false;
      resetFromDecision(item);
      paint(item);
    }
  }

  // --- Talking to the server --------------------------------------------------------------------

  class RequestFailed extends Error {
    constructor(message, status, payload) {
      super(message);
      this.status = status;
      this.payload = payload;
    }
  }

  async function request(method, url, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = csrf;
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      throw new RequestFailed(`the server could not be reached (${error.message})`, 0, null);
    }
    const text = await response.text();
    let payload = null;
    try {
      payload = text ? JSON.parse(text) : null;
    } catch (error) {
      payload = null;
    }
    if (!response.ok) {
      let message = payload && typeof payload.error === "string" ? payload.error : `the server answered ${response.status}`;
      if (response.status === 401) message = "your session has ended: sign in again";
      throw new RequestFailed(message, response.status, payload);
    }
    return payload;
  }

  function viewQuery({ offset, position }) {
    const query = new URLSearchParams(D.filters);
    if (position) query.set("position", String(position));
    else if (offset) query.set("offset", String(offset));
    return query;
  }

  const prefetched = new Map(); // position -> {promise, at}

  async function fetchView(params) {
    const startedAt = performance.now();
    if (params.position && prefetched.has(params.position)) {
      const cached = prefetched.get(params.position);
      prefetched.delete(params.position);
      try {
        return { data: await cached.promise, startedAt: cached.at };
      } catch (error) {
        // fetched again below
      }
    }
    const data = await request("GET", `${jobBase}/verify/items.json?${viewQuery(params)}`);
    return { data, startedAt };
  }

  function prefetch(position) {
    if (!position || prefetched.has(position)) return;
    const at = performance.now();
    const promise = request("GET", `${jobBase}/verify/items.json?${viewQuery({ position })}`);
    promise.catch(() => prefetched.delete(position));
    prefetched.set(position, { promise, at });
    promise.then((data) => {
      if (data.items[0]) new Image().src = thumbnail(data.items[0].sourceRef, IMAGE_THUMB);
    }, () => {});
  }

  function busy(delta) {
    inFlight += delta;
    paintSaveState();
  }

  function paintSaveState() {
    saveState.classList.remove("saving", "failed", "saved");
    if (inFlight > 0) {
      saveState.textContent = "Saving…";
      saveState.classList.add("saving");
    } else if (lastError) {
      saveState.textContent = "Not saved";
      saveState.title = lastError;
      saveState.classList.add("failed");
    } else {
      saveState.textContent = "All decisions saved";
      saveState.title = "";
      saveState.classList.add("saved");
    }
  }

  function failed(error, what) {
    lastError = `${what}: ${error.message}`;
    const parts = [`${what}: ${error.message}.`];
    if (error.status === 401) {
      const next = encodeURIComponent(location.pathname + location.search);
      parts.push(" ", el("a", { href: `/console/sign-in?next=${next}` }, "Sign in"));
    } else if (error.status === 0 || error.status >= 500) {
      parts.push(" Nothing was lost on the server; try again (c saves the image again).");
    }
    showNotice("error", parts);
    paintSaveState();
  }

  function staleMessage(ref, current) {
    const image = shortRef(ref);
    if (!current) {
      return `${image}: another reviewer took back the decision on this image since you opened it; it is shown as not reviewed.`;
    }
    return `${image}: ${current.reviewer} changed this image at ${clock(current.decidedAt)}; their decision is shown.`;
  }

  // Saves the items' decisions as shown, in one request. An item already being saved is saved
  // again, with what it shows then, when its save returns.
  async function save(items, { undoable = true } = {}) {
    const seen = new Set();
    const batch = [];
    for (const item of items) {
      if (item.saving) {
        item.dirty = true;
        continue;
      }
      if (seen.has(item.sourceRef)) continue;
      seen.add(item.sourceRef);
      batch.push(item);
    }
    if (!batch.length) return;
    const before = new Map(batch.map((item) => [item.sourceRef, item.decision]));
    const entries = batch.map((item) => ({
      sourceRef: item.sourceRef,
      labels: verdictsOf(item, item.present),
      expectedRevision: revision(item.decision),
    }));
    for (const item of batch) {
      item.saving = true;
      item.dirty = false;
      item.error = "";
      paint(item);
    }
    busy(1);
    let answer;
    try {
      answer = await request("POST", `${jobBase}/decisions`, { decisions: entries });
    } catch (error) {
      for (const item of batch) {
        item.saving = false;
        item.dirty = true;
        item.error = error.message;
        paint(item);
      }
      busy(-1);
      failed(error, batch.length === 1 ? `${shortRef(batch[0].sourceRef)} is not saved` : `${batch.length} images are not saved`);
      return;
    }
    const byRef = new Map(batch.map((item) => [item.sourceRef, item]));
    const done = [];
    const stale = [];
    for (const decision of answer.saved) {
      const item = byRef.get(decision.sourceRef);
      item.decision = decision;
      remember(decision.sourceRef, decision, item);
      done.push({ ref: decision.sourceRef, before: before.get(decision.sourceRef) });
    }
    for (const entry of answer.stale) {
      const item = byRef.get(entry.sourceRef);
      item.decision = entry.current;
      item.dirty = false;
      resetFromDecision(item);
      remember(entry.sourceRef, entry.current, item);
      stale.push(staleMessage(entry.sourceRef, entry.current));
    }
    const invalid = [];
    for (const entry of answer.invalid) {
      const item = byRef.get(entry.sourceRef);
      item.dirty = false;
      item.error = entry.message;
      resetFromDecision(item);
      invalid.push(`${shortRef(entry.sourceRef)} was not saved: ${entry.message}`);
    }
    for (const item of batch) {
      item.saving = false;
      paint(item);
    }
    if (undoable && done.length) undoStack.push(done);
    lastError = invalid.length ? invalid[0] : "";
    busy(-1);
    if (stale.length || invalid.length) {
      showNotice(invalid.length ? "error" : "warning", [...stale, ...invalid].join(" "));
      answer.stale.forEach((entry) => flash(byRef.get(entry.sourceRef)));
    }
    setProgress(answer.reviewed, state.images);
    if (answer.customLabels) setCustomLabels(answer.customLabels);
    scheduleStats();
    const again = batch.filter((item) => item.dirty);
    if (again.length) save(again, { undoable });
  }

  async function undo() {
    if (inFlight > 0) {
      showNotice("info", "Wait for the save to finish, then undo.");
      return;
    }
    const entry = undoStack.pop();
    if (!entry) {
      showNotice("info", "Nothing to undo.");
      return;
    }
    const restore = [];
    const withdraw = [];
    for (const { ref, before } of entry) {
      const latest = known.get(ref);
      const current = latest ? latest.decision : null;
      if (before) restore.push({ sourceRef: ref, labels: before.labels, expectedRevision: revision(current) });
      else if (current) withdraw.push({ sourceRef: ref, expectedRevision: current.revision });
    }
    const messages = [];
    busy(1);
    try {
      if (restore.length) {
        const answer = await request("POST", `${jobBase}/decisions`, { decisions: restore });
        answer.saved.forEach((decision) => remember(decision.sourceRef, decision));
        answer.stale.forEach((stale) => {
          remember(stale.sourceRef, stale.current);
          messages.push(staleMessage(stale.sourceRef, stale.current));
        });
        answer.invalid.forEach((bad) => messages.push(`${shortRef(bad.sourceRef)}: ${bad.message}`));
        setProgress(answer.reviewed, state.images);
      }
      const results = await Promise.allSettled(
        withdraw.map((body) => request("POST", `${jobBase}/decisions/withdraw`, body)),
      );
      results.forEach((result, i) => {
        const ref = withdraw[i].sourceRef;
        if (result.status === "fulfilled") {
          remember(ref, null);
          setProgress(result.value.reviewed, state.images);
        } else if (result.reason.status === 409) {
          remember(ref, result.reason.payload.current);
          messages.push(staleMessage(ref, result.reason.payload.current));
        } else {
          messages.push(`${shortRef(ref)}: ${result.reason.message}`);
        }
      });
    } catch (error) {
      undoStack.push(entry);
      busy(-1);
      failed(error, "The undo is not saved");
      return;
    }
    busy(-1);
    lastError = "";
    paintSaveState();
    const count = entry.length;
    if (messages.length) showNotice("warning", messages.join(" "));
    else showNotice("info", `Undone: ${count === 1 ? shortRef(entry[0].ref) : `${count} images`} back as before.`);
    scheduleStats();
  }

  // --- Progress and statistics ------------------------------------------------------------------

  function setProgress(reviewed, images) {
    if (typeof reviewed === "number") state.reviewed = reviewed;
    if (typeof images === "number") state.images = images;
    progressCount.textContent = `${state.reviewed} of ${state.images} reviewed`;
    progressBar.max = Math.max(state.images, 1);
    progressBar.value = state.reviewed;
  }

  let statsTimer = 0;
  function scheduleStats() {
    window.clearTimeout(statsTimer);
    statsTimer = window.setTimeout(refreshStats, 250);
  }

  async function refreshStats() {
    try {
      renderStats(await request("GET", `${jobBase}/verification.json`));
    } catch (error) {
      showNotice("error", `The statistics could not be refreshed: ${error.message}.`);
    }
  }

  // "19 more false positives or 50 more false negatives" -> "19 FP or 50 FN more"
  function compactMissing(text) {
    const found = /^(\d+) more false positives? or (\d+) more false negatives?$/.exec(text);
    return found ? `${found[1]} FP or ${found[2]} FN more` : text;
  }

  function renderStats(stats) {
    setProgress(stats.reviewed, stats.images);
    const reason = $("train-reason");
    reason.textContent = stats.reason;
    reason.className = `train-reason ${stats.canTrain ? "ready" : "not-ready"}`;
    const rows = stats.labels.map((row) => {
      const name = el("td", { class: `name level-${row.level}` }, row.name);
      if (row.custom) name.append(" ", el("span", { class: "tag" }, "custom"));
      const missing = row.meets_training_minimum
        ? el("td", { class: `missing ready level-${row.level}`, title: "The training minimum is met" }, "Met")
        : el("td", { class: `missing level-${row.level}`, title: `Still missing for training: ${row.missing}` }, compactMissing(row.missing));
      return el(
        "tr",
        { "data-label": row.name, class: row.meets_training_minimum ? "ready" : null },
        name,
        el("td", { class: "num tp" }, row.true_positives),
        el("td", { class: "num fp" }, row.false_positives),
        el("td", { class: "num fn" }, row.false_negatives),
        missing,
      );
    });
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, el("td", { colspan: 5 }, "No image verified yet.")));
    }
    $("stats").tBodies[0].replaceChildren(...rows);
    const errors = $("stats-errors");
    errors.replaceChildren(...(stats.errors || []).map((text) => el("li", null, text)));
    errors.hidden = !(stats.errors || []).length;
  }

  // --- Notices ----------------------------------------------------------------------------------

  let noticeTimer = 0;
  function showNotice(kind, content) {
    window.clearTimeout(noticeTimer);
    const parts = Array.isArray(content) ? content : [content];
    const close = el("button", { type: "button", class: "notice-close", "aria-label": "Dismiss" }, "×");
    close.addEventListener("click", hideNotice);
    notice.replaceChildren(el("span", { class: "notice-text" }, ...parts), close);
    notice.className = `verify-notice ${kind === "error" ? "error" : kind === "warning" ? "warning" : "notice"}`;
    notice.hidden = false;
    if (kind === "info") noticeTimer = window.setTimeout(hideNotice, 6000);
  }

  function hideNotice() {
    notice.hidden = true;
  }

  notice.querySelectorAll(".notice-close").forEach((button) => button.addEventListener("click", hideNotice));

  // --- Toggles ----------------------------------------------------------------------------------

  function toggleButton(item, name, number) {
    const present = item.present.get(name) === true;
    const predicted = item.predicted.has(name);
    const level = chain(name, item).length;
    const confidence = item.confidence.get(name);
    const button = el(
      "button",
      {
        type: "button",
        class: `toggle level-${level}${predicted ? "" : " added"}`,
        "data-name": name,
        "aria-pressed": present ? "true" : "false",
        title: `${name}: ${present ? "present" : "absent"}${number ? ` (press ${number} to change)` : ""}`,
      },
      el("span", { class: "mark", "aria-hidden": "true" }, present ? "✓" : "✗"),
      el("span", { class: "label-name" }, name),
      el("span", { class: "conf" }, predicted ? percent(confidence) : "added"),
      number ? kbd(String(number)) : null,
    );
    // A click keeps the keyboard focus where it was (the grid's card, or the page).
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      toggle(item, name);
    });
    return button;
  }

  function toggle(item, name) {
    setLabel(item, name, item.present.get(name) !== true);
    paint(item);
    save([item]);
  }

  function toggleNth(item, n) {
    const name = shownLabels(item)[n - 1];
    if (name === undefined) {
      showNotice("info", `This image has no label ${n}.`);
      return;
    }
    toggle(item, name);
  }

  function labelList(item, attrs) {
    const names = shownLabels(item);
    const list = el("ul", attrs);
    names.forEach((name, i) => list.append(el("li", null, toggleButton(item, name, i < 9 ? i + 1 : 0))));
    if (!names.length) list.append(el("li", { class: "none" }, "No labels predicted: confirm as safe"));
    return list;
  }

  function reviewText(item) {
    if (item.saving) return "Saving…";
    if (item.error) return `Not saved: ${item.error}`;
    if (item.decision) return `✓ ${item.decision.reviewer} · ${clock(item.decision.decidedAt)}`;
    return "Not reviewed";
  }

  function reviewTitle(item) {
    return item.decision ? `Reviewed by ${item.decision.reviewer} at ${when(item.decision.decidedAt)}` : "Not reviewed yet";
  }

  function flash(item) {
    const node = state.view === "grid" ? cardNode(item) : one.querySelector(".image-side");
    if (!node) return;
    node.classList.remove("changed");
    void node.offsetWidth; // restart the animation
    node.classList.add("changed");
  }

  // --- The grid ---------------------------------------------------------------------------------

  function cardNode(item) {
    const node = grid.querySelector(`.card[data-position="${Number(item.position)}"]`);
    return node && state.items.includes(item) ? node : null;
  }

  function card(item, index) {
    const image = el("img", { src: thumbnail(item.sourceRef, GRID_THUMB), alt: `Image ${shortRef(item.sourceRef)}`, loading: "lazy" });
    const thumb = el("div", { class: "thumb", title: "Open (Enter)" }, image);
    thumb.addEventListener("click", () => openImage(index));
    const node = el(
      "li",
      { class: "card verify-card", "data-position": item.position, tabindex: "-1" },
      thumb,
      el("div", { class: "card-head" },
        el("span", { class: "badge", "aria-hidden": "true" }),
        el("span", { class: "ref", title: item.sourceRef }, shortRef(item.sourceRef)),
      ),
      el("div", { class: "review" }),
      el("ul", { class: "card-labels" }),
      item.contentTypes.length
        ? el("ul", { class: "types" }, ...item.contentTypes.map((t) => el("li", null, `${t.name} ${t.confidence === null ? "" : Math.round(t.confidence) + "%"}`)))
        : null,
    );
    node.addEventListener("click", () => focusCard(index));
    node.addEventListener("dblclick", () => openImage(index));
    node.addEventListener("focus", () => {
      if (state.focus !== index) focusCard(index, { move: false });
    });
    return node;
  }

  function paintCard(item) {
    const node = cardNode(item);
    if (!node) return;
    node.classList.toggle("reviewed", Boolean(item.decision));
    node.classList.toggle("saving", item.saving);
    node.classList.toggle("failed", Boolean(item.error));
    node.classList.toggle("selected", state.selected.has(item.position));
    const badge = node.querySelector(".badge");
    badge.textContent = item.decision ? "✓" : "";
    badge.title = reviewTitle(item);
    const review = node.querySelector(".review");
    review.textContent = reviewText(item);
    review.title = reviewTitle(item);
    const selected = state.selected.has(item.position) ? ", selected" : "";
    node.setAttribute("aria-label", `${item.sourceRef}: ${item.decision ? "reviewed" : "not reviewed"}${selected}`);
    node.querySelector(".card-labels").replaceWith(labelList(item, { class: "card-labels" }));
  }

  function renderGrid() {
    one.hidden = true;
    one.replaceChildren();
    grid.hidden = false;
    grid.replaceChildren(...state.items.map(card));
    state.items.forEach(paintCard);
    if (!state.items.length) grid.append(el("li", { class: "empty" }, "No image matches these filters."));
    renderGridBar();
    renderHints();
  }

  function renderGridBar() {
    const first = state.total ? state.offset + 1 : 0;
    const last = state.offset + state.items.length;
    const pages = Math.max(1, Math.ceil(state.total / state.limit));
    const page = Math.floor(state.offset / state.limit) + 1;
    const previous = el("button", { type: "button", id: "page-previous", disabled: state.offset <= 0 }, "‹ Previous ", kbd("p"));
    previous.addEventListener("click", () => gridPage(-1));
    const next = el("button", { type: "button", id: "page-next", disabled: last >= state.total }, "Next ", kbd("n"), " ›");
    next.addEventListener("click", () => gridPage(1));
    const confirmPage = el("button", { type: "button", class: "primary", id: "confirm-page" }, "Confirm unreviewed as predicted ", kbd("Shift+C"));
    confirmPage.addEventListener("click", confirmPageAsPredicted);
    const add = el("button", { type: "button", id: "add-to-selected" }, state.selected.size ? `Add label to ${state.selected.size} selected ` : "Add label ", kbd("a"));
    add.addEventListener("click", () => openPicker(gridTargets()));
    viewBar.replaceChildren(
      el("span", { class: "range", id: "range" }, state.total ? `Images ${first}–${last} of ${state.total} · page ${page} of ${pages}` : "No image"),
      el("span", { class: "bar-actions" }, previous, next, add, confirmPage),
    );
  }

  function focusCard(index, { move = true } = {}) {
    const cards = grid.querySelectorAll(".card[data-position]");
    if (!cards.length) return;
    index = Math.max(0, Math.min(cards.length - 1, index));
    state.focus = index;
    cards.forEach((node, i) => {
      node.setAttribute("tabindex", i === index ? "0" : "-1");
      node.classList.toggle("focused", i === index);
    });
    if (move) {
      cards[index].focus({ preventScroll: true });
      cards[index].scrollIntoView({ block: "nearest" });
    }
  }

  function columns() {
    const cards = grid.querySelectorAll(".card[data-position]");
    if (!cards.length) return 1;
    const top = cards[0].offsetTop;
    let count = 0;
    for (const node of cards) {
      if (node.offsetTop !== top) break;
      count += 1;
    }
    return Math.max(1, count);
  }

  const focused = () => state.items[state.focus];

  function gridTargets() {
    const selected = state.items.filter((item) => state.selected.has(item.position));
    if (selected.length) return selected;
    return focused() ? [focused()] : [];
  }

  function toggleSelected(item) {
    if (!item) return;
    if (state.selected.has(item.position)) state.selected.delete(item.position);
    else state.selected.add(item.position);
    paintCard(item);
    renderGridBar();
  }

  function clearSelection() {
    const was = state.items.filter((item) => state.selected.has(item.position));
    state.selected.clear();
    was.forEach(paintCard);
    renderGridBar();
  }

  function confirmItem(item) {
    if (!item) return;
    if (item.saving) item.dirty = true;
    else if (changedSinceSaved(item) || item.error) save([item]);
  }

  function confirmPageAsPredicted() {
    const pending = state.items.filter((item) => !item.decision && !item.saving);
    if (!pending.length) {
      showNotice("info", "Every image of this page is reviewed already.");
      return;
    }
    pending.forEach((item) => {
      item.error = "";
      resetFromDecision(item);
    });
    save(pending);
    showNotice("info", `Confirming ${pending.length} image${pending.length === 1 ? "" : "s"} as predicted (u undoes).`);
  }

  async function gridPage(step) {
    const offset = state.offset + step * state.limit;
    if (offset < 0 || offset >= state.total) {
      showNotice("info", step > 0 ? "This is the last page." : "This is the first page.");
      return;
    }
    await showGrid(offset, { focus: 0 });
  }

  async function showGrid(offset, { focus = 0, push = true, focusPosition = null } = {}) {
    const answer = await navigate({ offset }, "The page could not be loaded");
    if (!answer) return;
    ingest(answer.data, answer.startedAt);
    state.selected.clear();
    if (push) history.pushState(null, "", urlFor({ offset: state.offset }));
    renderGrid();
    const index = focusPosition ? state.items.findIndex((item) => item.position === focusPosition) : focus;
    focusCard(index >= 0 ? index : 0);
    replayKeys();
  }

  // --- The one-image view -----------------------------------------------------------------------

  function renderOne() {
    grid.hidden = true;
    grid.replaceChildren();
    one.hidden = false;
    const item = state.items[0];
    const where = state.index !== null ? `Image ${state.index + 1} of ${state.total}` : `Results line ${state.position}`;
    const previous = el("button", { type: "button", id: "image-previous", disabled: !state.neighbours.previous }, "← Previous ", kbd("k"));
    previous.addEventListener("click", () => step(-1));
    const next = el("button", { type: "button", id: "image-next", disabled: !state.neighbours.next }, "Next ", kbd("j"), " →");
    next.addEventListener("click", () => step(1));
    const back = el("button", { type: "button", id: "back-to-grid" }, "Grid ", kbd("g"));
    back.addEventListener("click", backToGrid);
    viewBar.replaceChildren(el("span", { class: "range", id: "range" }, where), el("span", { class: "bar-actions" }, back, previous, next));
    renderHints();
    if (!item) {
      one.replaceChildren(el("p", { class: "empty" }, "This image is not in the job's results."));
      return;
    }
    const frame = el("figure", { class: "image-frame" }, el("img", { src: thumbnail(item.sourceRef, IMAGE_THUMB), alt: `Image ${shortRef(item.sourceRef)}` }));
    const side = el("div", { class: "image-side" });
    one.replaceChildren(el("div", { class: "image-body" }, frame, side));
    paintOne(item);
    if (state.neighbours.next) prefetch(state.neighbours.next);
    if (state.neighbours.previous) prefetch(state.neighbours.previous);
  }

  function paintOne(item) {
    if (state.view !== "image" || state.items[0] !== item) return;
    const side = one.querySelector(".image-side");
    if (!side) return;
    const add = el("button", { type: "button", id: "add-label" }, "Add a missed label ", kbd("a"));
    add.addEventListener("click", () => openPicker([item]));
    const confirm = el("button", { type: "button", class: "primary", id: "confirm-image" }, "Confirm and next ", kbd("Enter"));
    confirm.addEventListener("click", confirmAndNext);
    side.classList.toggle("reviewed", Boolean(item.decision));
    side.classList.toggle("saving", item.saving);
    side.classList.toggle("failed", Boolean(item.error));
    const types = item.contentTypes.map((t) => `${t.name} ${t.confidence === null ? "" : Math.round(t.confidence) + "%"}`);
    side.replaceChildren(
      el("p", { class: "ref full-ref" }, el("code", null, item.sourceRef)),
      el("p", { class: "review", id: "image-review", title: reviewTitle(item) }, reviewText(item)),
      el("h2", null, "Labels"),
      labelList(item, { id: "labels", class: "image-labels" }),
      el("p", { class: "hint" }, "✓ present · ✗ absent. Marking a label absent marks the labels below it absent; present marks the labels above it present."),
      el("p", { class: "image-actions" }, add, confirm),
      el("p", { class: "hint" }, types.length ? `Content types: ${types.join(", ")}` : ""),
    );
  }

  function openImage(index) {
    const item = state.items[index];
    if (!item) return;
    state.focus = index;
    openPosition(item.position, state.offset + index);
  }

  async function openPosition(position, index, { push = true } = {}) {
    const answer = await navigate({ position }, "The image could not be loaded");
    if (!answer) return;
    ingest(answer.data, answer.startedAt);
    state.index = index;
    if (push) history.pushState(null, "", urlFor({ position, index }));
    renderOne();
    replayKeys();
  }

  // One view is loaded at a time: the answer of a view left before it came is dropped, and keys
  // pressed meanwhile are kept and replayed on the view they were meant for.
  let navigation = 0;
  let navigating = false;
  const pendingKeys = [];

  async function navigate(params, what) {
    const ticket = ++navigation;
    navigating = true;
    try {
      const answer = await fetchView(params);
      return ticket === navigation ? answer : null;
    } catch (error) {
      if (ticket === navigation) {
        pendingKeys.length = 0;
        failed(error, what);
      }
      return null;
    } finally {
      if (ticket === navigation) navigating = false;
    }
  }

  function replayKeys() {
    while (pendingKeys.length && !navigating) {
      const key = pendingKeys.shift();
      if (state.view === "grid") gridKey({ key });
      else imageKey({ key });
    }
  }

  function step(direction) {
    const target = direction > 0 ? state.neighbours.next : state.neighbours.previous;
    if (!target) {
      showNotice("info", direction > 0 ? "That is the last image of this selection: g goes back to the grid." : "That is the first image of this selection.");
      return false;
    }
    openPosition(target, state.index === null ? null : state.index + direction);
    return true;
  }

  function confirmAndNext() {
    const item = state.items[0];
    if (!item) return;
    confirmItem(item);
    step(1);
  }

  function gridOffsetFor(index) {
    if (index === null || index === undefined) return Math.floor(state.offset / state.limit) * state.limit;
    return Math.floor(index / state.limit) * state.limit;
  }

  function backToGrid() {
    showGrid(gridOffsetFor(state.index), { focusPosition: state.position });
  }

  // --- Views, URLs, refreshing ------------------------------------------------------------------

  function ingest(data, startedAt) {
    state.view = data.view;
    state.total = data.total;
    if (data.view === "grid") state.offset = data.offset; // the image view keeps its grid page
    state.limit = data.limit;
    state.position = data.position;
    state.neighbours = data.neighbours;
    setCustomLabels(data.customLabels);
    state.items = data.items.map((raw) => itemFrom(raw, startedAt));
    setProgress(data.reviewed, data.images);
  }

  function urlFor({ offset, position, index }) {
    const query = new URLSearchParams(D.filters);
    if (position) {
      query.set("position", String(position));
      const back = gridOffsetFor(index);
      if (back) query.set("offset", String(back));
      if (index !== null && index !== undefined) query.set("i", String(index));
    } else if (offset) {
      query.set("offset", String(offset));
    }
    const text = query.toString();
    return location.pathname + (text ? `?${text}` : "");
  }

  function paint(item) {
    if (state.view === "grid") paintCard(item);
    else paintOne(item);
  }

  function render() {
    if (state.view === "grid") renderGrid();
    else renderOne();
  }

  function fromLocation() {
    const query = new URLSearchParams(location.search);
    const position = Number.parseInt(query.get("position") || "", 10);
    const offset = Number.parseInt(query.get("offset") || "0", 10) || 0;
    const index = Number.parseInt(query.get("i") || "", 10);
    return { position: position > 0 ? position : null, offset, index: index >= 0 ? index : null };
  }

  window.addEventListener("popstate", () => {
    const where = fromLocation();
    if (where.position) openPosition(where.position, where.index, { push: false });
    else showGrid(where.offset, { push: false });
  });

  async function poll() {
    if (document.visibilityState !== "visible" || inFlight > 0 || navigating || !pickerBox.hidden) return;
    try {
      const params = state.view === "grid" ? { offset: state.offset } : { position: state.position };
      const ticket = navigation;
      const startedAt = performance.now();
      const data = await request("GET", `${jobBase}/verify/items.json?${viewQuery(params)}`);
      if (ticket !== navigation || navigating || data.view !== state.view || inFlight > 0) return;
      const before = state.items.map((item) => `${item.position}:${revision(item.decision)}`).join();
      const positions = state.items.map((item) => item.position).join();
      ingest(data, startedAt);
      if (state.items.map((item) => item.position).join() !== positions) render();
      else if (state.items.map((item) => `${item.position}:${revision(item.decision)}`).join() !== before) state.items.forEach(paint);
      refreshStats();
    } catch (error) {
      // The next save says what is wrong; a missed refresh is not worth a notice.
    }
  }

  // --- Hints and help ---------------------------------------------------------------------------

  function hint(keys, text) {
    return el("span", { class: "key-hint" }, ...keys.map(kbd), ` ${text}`);
  }

  function renderHints() {
    const hints =
      state.view === "grid"
        ? [hint(["←", "→", "↑", "↓"], "move"), hint(["Enter"], "open"), hint(["x"], "select"), hint(["1–9"], "toggle label"), hint(["c"], "confirm"), hint(["Shift+C"], "confirm page"), hint(["a"], "add label"), hint(["n", "p"], "page"), hint(["u"], "undo"), hint(["?"], "all shortcuts")]
        : [hint(["j", "→"], "next"), hint(["k", "←"], "previous"), hint(["1–9"], "toggle label"), hint(["Enter"], "confirm and next"), hint(["a"], "add label"), hint(["u"], "undo"), hint(["g"], "grid"), hint(["?"], "all shortcuts")];
    keyHints.replaceChildren(...hints);
  }

  function setHelp(open) {
    help.hidden = !open;
    helpButton.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) $("help-close").focus();
    else restoreFocus();
  }

  helpButton.addEventListener("click", () => setHelp(help.hidden));
  $("help-close").addEventListener("click", () => setHelp(false));
  help.addEventListener("click", (event) => {
    if (event.target === help) setHelp(false);
  });

  function restoreFocus() {
    if (state.view === "grid") focusCard(state.focus);
    else if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  }

  // --- The label picker -------------------------------------------------------------------------

  const picker = { targets: [], mode: "label", name: "", options: [], active: 0 };

  function openPicker(targets) {
    if (!targets.length) {
      showNotice("info", "Focus or select an image first.");
      return;
    }
    picker.targets = targets;
    picker.mode = "label";
    picker.name = "";
    pickerSearch.value = "";
    pickerError.textContent = "";
    pickerBox.hidden = false;
    renderPicker();
    pickerSearch.focus();
  }

  function closePicker() {
    pickerBox.hidden = true;
    restoreFocus();
  }

  function pathOf(name) {
    return chain(name).slice(1).reverse().join(" › ");
  }

  // An exact name first, then names that start with the search, then the others.
  function rank(name, query) {
    if (!query) return 0;
    const lower = name.toLowerCase();
    return lower === query ? 0 : lower.startsWith(query) ? 1 : 2;
  }

  function pickerOptions() {
    const query = pickerSearch.value.trim().toLowerCase();
    const matches = (name) => !query || name.toLowerCase().includes(query) || pathOf(name).toLowerCase().includes(query);
    if (picker.mode === "parent") {
      const parents = [...labelInfo.values()].filter((info) => !info.custom && info.level < 3 && matches(info.name));
      const none = { kind: "parent", name: "", text: "None: a new level-1 label", path: "" };
      return [...(query ? [] : [none]), ...parents.map((info) => ({ kind: "parent", name: info.name, text: info.name, path: pathOf(info.name), level: info.level }))];
    }
    const labels = [...labelInfo.values()]
      .filter((info) => matches(info.name))
      .sort((a, b) => rank(a.name, query) - rank(b.name, query) || compareKeys(sortKey(a.name), sortKey(b.name)))
      .map((info) => ({ kind: "label", name: info.name, text: info.name, path: pathOf(info.name), level: info.level, custom: info.custom }));
    const typed = pickerSearch.value.trim();
    if (typed && !labelInfo.has(typed) && ![...labelInfo.keys()].some((name) => name.toLowerCase() === typed.toLowerCase())) {
      labels.push({ kind: "new", name: typed, text: `New custom label “${typed}”…`, path: "choose its parent next" });
    }
    return labels;
  }

  function renderPicker() {
    const count = picker.targets.length;
    const parentMode = picker.mode === "parent";
    if (parentMode) {
      pickerTitle.textContent = `Parent of the custom label “${picker.name}”`;
      pickerSearch.setAttribute("placeholder", "Type to search parents (level 1 or 2)");
    } else {
      pickerTitle.textContent = "Add a label the model missed";
      pickerSearch.setAttribute("placeholder", "Type to search labels, or a new name");
    }
    $("picker-enter").textContent = parentMode ? "declare it and add it as present" : "add as present";
    $("picker-escape").textContent = parentMode ? "back to the labels" : "close";
    pickerTarget.textContent = count === 1 ? `Marked present on ${shortRef(picker.targets[0].sourceRef)}` : `Marked present on ${count} images`;
    picker.options = pickerOptions();
    picker.active = Math.max(0, Math.min(picker.active, picker.options.length - 1));
    const nodes = picker.options.map((option, i) => {
      const present = option.kind === "label" && picker.targets.every((item) => item.present.get(option.name) === true);
      const node = el(
        "li",
        {
          id: `picker-option-${i}`,
          role: "option",
          class: `option kind-${option.kind} level-${option.level || 1}${i === picker.active ? " active" : ""}`,
          "aria-selected": i === picker.active ? "true" : "false",
          "data-name": option.name,
        },
        el("span", { class: "option-name" }, option.text),
        option.custom ? el("span", { class: "tag" }, "custom") : null,
        option.path ? el("span", { class: "option-path" }, option.path) : null,
        present ? el("span", { class: "option-state" }, "✓ present") : null,
      );
      node.addEventListener("mousedown", (event) => event.preventDefault());
      node.addEventListener("click", () => {
        picker.active = i;
        choose();
      });
      return node;
    });
    if (!nodes.length) nodes.push(el("li", { class: "option empty" }, "No label matches."));
    pickerList.replaceChildren(...nodes);
    if (picker.options.length) {
      pickerSearch.setAttribute("aria-activedescendant", `picker-option-${picker.active}`);
      const active = pickerList.children[picker.active];
      if (active) active.scrollIntoView({ block: "nearest" });
    } else {
      pickerSearch.removeAttribute("aria-activedescendant");
    }
  }

  async function choose() {
    const option = picker.options[picker.active];
    if (!option) return;
    if (option.kind === "label") {
      addLabel(picker.targets, option.name);
      closePicker();
    } else if (option.kind === "new") {
      picker.mode = "parent";
      picker.name = option.name;
      picker.active = 0;
      pickerSearch.value = "";
      pickerError.textContent = "";
      renderPicker();
    } else {
      try {
        await declare(picker.name, option.name);
      } catch (error) {
        pickerError.textContent = error.message;
        return;
      }
      addLabel(picker.targets, picker.name);
      closePicker();
    }
  }

  function addLabel(targets, name) {
    targets.forEach((item) => {
      item.error = "";
      setLabel(item, name, true);
      paint(item);
    });
    save(targets);
    if (state.view === "grid" && state.selected.size) clearSelection();
  }

  pickerSearch.addEventListener("input", () => {
    picker.active = 0;
    pickerError.textContent = "";
    renderPicker();
  });

  pickerSearch.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const count = picker.options.length;
      if (!count) return;
      picker.active = (picker.active + (event.key === "ArrowDown" ? 1 : count - 1)) % count;
      renderPicker();
    } else if (event.key === "Enter") {
      event.preventDefault();
      choose();
    } else if (event.key === "Escape") {
      event.preventDefault();
      if (picker.mode === "parent") {
        picker.mode = "label";
        pickerSearch.value = picker.name;
        picker.active = 0;
        renderPicker();
      } else {
        closePicker();
      }
    }
    event.stopPropagation();
  });

  pickerBox.addEventListener("click", (event) => {
    if (event.target === pickerBox) closePicker();
  });

  // --- Custom labels ----------------------------------------------------------------------------

  async function declare(name, parent) {
    const answer = await request("POST", `${jobBase}/custom-labels`, { name, parent });
    setCustomLabels(answer.customLabels);
    return answer;
  }

  function renderCustomList() {
    const list = $("custom-labels");
    if (!list) return;
    const items = D.customLabels.map((entry) =>
      el("li", { "data-name": entry.name }, el("strong", null, entry.name), " ", el("span", { class: "hint" }, entry.parent ? `under ${entry.parent} (level ${entry.level})` : "level 1")),
    );
    if (!items.length) items.push(el("li", { class: "empty" }, "None declared."));
    list.replaceChildren(...items);
  }

  const customForm = $("custom-label-form");
  const customOpen = $("custom-label-open");

  function setCustomForm(open) {
    customForm.hidden = !open;
    customOpen.hidden = open;
    customOpen.setAttribute("aria-expanded", open ? "true" : "false");
    $("custom-label-error").textContent = "";
    if (open) $("custom-label-name").focus();
  }

  customOpen.addEventListener("click", () => setCustomForm(true));
  $("custom-label-cancel").addEventListener("click", () => {
    setCustomForm(false);
    restoreFocus();
  });
  customForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      setCustomForm(false);
      restoreFocus();
    }
  });

  customForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("custom-label-name").value.trim();
    const parent = $("custom-label-parent").value;
    if (!name) return;
    try {
      await declare(name, parent);
    } catch (failure) {
      $("custom-label-error").textContent = failure.message;
      return;
    }
    $("custom-label-name").value = "";
    setCustomForm(false);
    restoreFocus(); // the keyboard goes back to the images
    showNotice("info", `Custom label “${name}” declared; add it to an image with a.`);
  });

  // --- Export -----------------------------------------------------------------------------------

  const exportForm = $("export-form");
  exportForm.addEventListener("submit", () => {
    $("export-back").value = location.search;
  });

  // --- Keyboard ---------------------------------------------------------------------------------

  function typing(target) {
    if (!(target instanceof HTMLElement)) return false;
    return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!pickerBox.hidden) return; // the picker's own input handles its keys
    const target = event.target;
    if (typing(target)) return;
    const key = event.key;
    if (!help.hidden) {
      if (key === "Escape" || key === "?") {
        event.preventDefault();
        setHelp(false);
      }
      return;
    }
    // A focused button or link keeps its own Enter and Space.
    if ((key === "Enter" || key === " ") && target instanceof HTMLElement && ["BUTTON", "A"].includes(target.tagName)) return;
    if (navigating && VIEW_KEYS.test(key) && !(key === "?" || key === "e")) {
      if (pendingKeys.length < 8) pendingKeys.push(key);
      event.preventDefault();
      return;
    }
    const handled = state.view === "grid" ? gridKey(event) : imageKey(event);
    if (handled !== false) event.preventDefault();
  });

  // The keys of the views (what is replayed after a view loads).
  const VIEW_KEYS = /^(Arrow(Left|Right|Up|Down)|Enter|Escape|Home|End| |[1-9acCgjknopuxe/?])$/;

  function commonKey(key) {
    if (key === "?") setHelp(true);
    else if (key === "u") undo();
    else if (key === "e") exportForm.requestSubmit();
    else return false;
    return true;
  }

  function gridKey(event) {
    const key = event.key;
    const cols = columns();
    if (key === "ArrowRight") focusCard(state.focus + 1);
    else if (key === "ArrowLeft") focusCard(state.focus - 1);
    else if (key === "ArrowDown") focusCard(state.focus + cols);
    else if (key === "ArrowUp") focusCard(state.focus - cols);
    else if (key === "Home") focusCard(0);
    else if (key === "End") focusCard(state.items.length - 1);
    else if (key === "Enter" || key === "o") openImage(state.focus);
    else if (key === "x" || key === " ") toggleSelected(focused());
    else if (key === "C") confirmPageAsPredicted();
    else if (key === "c") {
      confirmItem(focused());
      focusCard(state.focus + 1);
    } else if (key === "a" || key === "/") openPicker(gridTargets());
    else if (key === "n") gridPage(1);
    else if (key === "p") gridPage(-1);
    else if (key === "Escape") clearSelection();
    else if (/^[1-9]$/.test(key) && focused()) toggleNth(focused(), Number(key));
    else return commonKey(key);
    return true;
  }

  function imageKey(event) {
    const key = event.key;
    const item = state.items[0];
    if (key === "ArrowRight" || key === "j") step(1);
    else if (key === "ArrowLeft" || key === "k") step(-1);
    else if (key === "Enter" || key === "c") confirmAndNext();
    else if (key === "a" || key === "/") {
      if (item) openPicker([item]);
    } else if (key === "g" || key === "Escape") backToGrid();
    else if (/^[1-9]$/.test(key) && item) toggleNth(item, Number(key));
    else return commonKey(key);
    return true;
  }

  window.addEventListener("beforeunload", (event) => {
    if (inFlight > 0 || [...itemCache.values()].some((item) => item.dirty)) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // --- Start ------------------------------------------------------------------------------------

  const started = performance.now();
  ingest(D, started);
  renderStats(D.stats);
  const where = fromLocation();
  state.index = where.index;
  paintSaveState();
  render();
  if (state.view === "grid") focusCard(0);
  window.setInterval(poll, POLL_MS);
})();
