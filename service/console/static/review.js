// Human review: one human loop's task. The model's labels as present/absent toggles, a
// searchable picker for a label the model missed, and the keyboard shortcuts of Verify
// predictions (1–9 toggle the Nth label, a or / add a label, Enter submit and go to the next
// open task, ? help, g back to the list), with the claim's time left always in view.
//
// Everything shown is built with textContent / setAttribute: label names are data, never markup.
// The page's data comes from <script type="application/json" id="review-data">.
"use strict";

(() => {
  const dataNode = document.getElementById("review-data");
  if (!dataNode) return;
  const D = JSON.parse(dataNode.textContent);

  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  const $ = (id) => document.getElementById(id);
  const labelsNode = $("labels");
  const notice = $("notice");
  const claimState = $("claim-state");
  const pickerBox = $("picker");
  const pickerSearch = $("picker-search");
  const pickerList = $("picker-list");
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

  function percent(value) {
    return value === null || value === undefined ? "" : `${value.toFixed(1)}%`;
  }

  // --- Labels: the taxonomy and the loop's response, with their parents ------------------------

  const labelInfo = new Map(); // name -> {name, parent, level, index}
  D.taxonomy.forEach((entry, index) => labelInfo.set(entry.name, { ...entry, index }));
  const answered = new Map(D.labels.map((entry) => [entry.name, entry])); // the model's labels
  D.labels.forEach((entry, index) => {
    if (!labelInfo.has(entry.name)) labelInfo.set(entry.name, { name: entry.name, parent: entry.parent, level: entry.level, index: 10000 + index });
  });

  function parentOf(name) {
    const info = labelInfo.get(name);
    return info ? info.parent || "" : "";
  }

  // The label and every label above it, nearest first.
  function chain(name) {
    const names = [name];
    let parent = parentOf(name);
    while (parent && names.length < 8 && !names.includes(parent)) {
      names.push(parent);
      parent = parentOf(parent);
    }
    return names;
  }

  function sortKey(name) {
    return chain(name)
      .reverse()
      .map((n) => (labelInfo.has(n) ? labelInfo.get(n).index : 20000));
  }

  function compareKeys(a, b) {
    for (let i = 0; i < Math.min(a.length, b.length); i += 1) {
      if (a[i] !== b[i]) return a[i] - b[i];
    }
    return a.length - b.length;
  }

  // --- The answer as shown ----------------------------------------------------------------------

  const present = new Map(); // name -> true (present) / false (absent)
  for (const entry of D.labels) present.set(entry.name, false);
  for (const entry of D.labels) if (entry.present) setLabel(entry.name, true);

  // Present makes every label above present; absent makes every label below absent: an answer
  // never contradicts itself.
  function setLabel(name, value) {
    if (value) {
      for (const above of chain(name)) present.set(above, true);
      return;
    }
    present.set(name, false);
    for (const other of [...present.keys()]) {
      if (other !== name && chain(other).includes(name)) present.set(other, false);
    }
  }

  function shownLabels() {
    return [...present.keys()].sort((a, b) => compareKeys(sortKey(a), sortKey(b)));
  }

  function toggleButton(name, number) {
    const isPresent = present.get(name) === true;
    const entry = answered.get(name);
    const button = el(
      "button",
      {
        type: "button",
        class: `toggle level-${chain(name).length}${entry ? "" : " added"}${entry && entry.selected ? " selected" : ""}`,
        "data-name": name,
        "aria-pressed": isPresent ? "true" : "false",
        title: `${name}: ${isPresent ? "present" : "absent"}${number ? ` (press ${number} to change)` : ""}`,
      },
      el("span", { class: "mark", "aria-hidden": "true" }, isPresent ? "✓" : "✗"),
      el("span", { class: "label-name" }, name),
      entry && entry.selected ? el("span", { class: "tag", title: "An activation condition picked this label" }, "flagged") : null,
      el("span", { class: "conf" }, entry ? percent(entry.confidence) : "added"),
      number ? kbd(String(number)) : null,
    );
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      toggle(name);
    });
    return button;
  }

  function renderLabels() {
    const names = shownLabels();
    const items = names.map((name, i) => el("li", null, toggleButton(name, i < 9 ? i + 1 : 0)));
    if (!items.length) items.push(el("li", { class: "none" }, "The model gave no label: submit as safe, or add a label"));
    labelsNode.replaceChildren(...items);
  }

  function toggle(name) {
    setLabel(name, present.get(name) !== true);
    renderLabels();
  }

  function toggleNth(n) {
    const name = shownLabels()[n - 1];
    if (name === undefined) {
      showNotice("info", `This image has no label ${n}.`);
      return;
    }
    toggle(name);
  }

  // Every label shown, present or absent (the server keeps the present ones, as A2I's answer).
  function verdicts() {
    return Object.fromEntries(present);
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

  // --- Talking to the server --------------------------------------------------------------------

  class RequestFailed extends Error {
    constructor(message, status, payload) {
      super(message);
      this.status = status;
      this.payload = payload;
    }
  }

  async function post(url, body) {
    const init = {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    };
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
      if (response.status === 401) message = "Your session has ended: sign in again.";
      throw new RequestFailed(message, response.status, payload);
    }
    return payload;
  }

  // --- The claim ----------------------------------------------------------------------------------

  let skew = D.now * 1000 - Date.now(); // the server's clock less this one's
  let expiresAt = D.claim.expiresAt;
  let expiredShown = false;

  function clockText(seconds) {
    const whole = Math.max(0, Math.ceil(seconds));
    const minutes = Math.floor(whole / 60);
    const rest = String(whole % 60).padStart(2, "0");
    if (minutes < 60) return `${minutes}:${rest}`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  function secondsLeft() {
    return expiresAt - (Date.now() + skew) / 1000;
  }

  function tick() {
    const left = secondsLeft();
    claimState.classList.remove("saved", "expiring", "expired");
    if (left > 0) {
      claimState.textContent = `${clockText(left)} left to answer`;
      claimState.title = "This task is yours until then; after that it returns to the queue.";
      claimState.classList.add(left < 60 ? "expiring" : "saved");
      expiredShown = false;
      return;
    }
    claimState.textContent = "Claim ran out";
    claimState.title = "The task went back to the queue: claim it again to answer.";
    claimState.classList.add("expired");
    if (!expiredShown) {
      expiredShown = true;
      offerClaim("Your claim on this task ran out, and the task went back to the queue.");
    }
  }

  function offerClaim(message) {
    const again = el("button", { type: "button", id: "claim-again", class: "primary" }, "Claim again");
    again.addEventListener("click", claimAgain);
    showNotice("error", [message, " ", again, " ", el("a", { href: D.listUrl }, "Back to the open tasks")]);
  }

  async function claimAgain() {
    let answer;
    try {
      answer = await post(D.claimUrl, {});
    } catch (error) {
      showNotice("error", [`${error.message} `, el("a", { href: D.listUrl }, "Back to the open tasks")]);
      return;
    }
    expiresAt = answer.claim.expiresAt;
    skew = answer.now * 1000 - Date.now();
    expiredShown = false;
    tick();
    showNotice("info", `Claimed again: ${clockText(secondsLeft())} to answer. Enter submits.`);
  }

  // --- Submitting -------------------------------------------------------------------------------

  let submitting = false;

  async function submit() {
    if (submitting) return;
    submitting = true;
    $("submit-answer").disabled = true;
    claimState.textContent = "Submitting…";
    let answer;
    try {
      answer = await post(D.answerUrl, { labels: verdicts() });
    } catch (error) {
      submitting = false;
      $("submit-answer").disabled = false;
      tick();
      if (error.payload && error.payload.claimAgain) {
        expiresAt = Math.min(expiresAt, (Date.now() + skew) / 1000);
        expiredShown = true;
        tick();
        offerClaim(error.message);
      } else if (error.status === 401) {
        const next = encodeURIComponent(location.pathname);
        showNotice("error", [`${error.message} `, el("a", { href: `/console/sign-in?next=${next}` }, "Sign in")]);
      } else {
        showNotice("error", `The answer is not saved: ${error.message}`);
      }
      return;
    }
    claimState.textContent = answer.status === "Completed" ? "Saved: the loop is complete" : "Saved";
    location.assign(answer.next || D.listUrl);
  }

  // --- The label picker -------------------------------------------------------------------------

  const picker = { options: [], active: 0 };

  function pathOf(name) {
    return chain(name).slice(1).reverse().join(" › ");
  }

  function rank(name, query) {
    if (!query) return 0;
    const lower = name.toLowerCase();
    return lower === query ? 0 : lower.startsWith(query) ? 1 : 2;
  }

  function pickerOptions() {
    const query = pickerSearch.value.trim().toLowerCase();
    const matches = (name) => !query || name.toLowerCase().includes(query) || pathOf(name).toLowerCase().includes(query);
    return [...labelInfo.values()]
      .filter((info) => matches(info.name))
      .sort((a, b) => rank(a.name, query) - rank(b.name, query) || compareKeys(sortKey(a.name), sortKey(b.name)))
      .map((info) => ({ name: info.name, path: pathOf(info.name), level: chain(info.name).length }));
  }

  function renderPicker() {
    picker.options = pickerOptions();
    picker.active = Math.max(0, Math.min(picker.active, picker.options.length - 1));
    const nodes = picker.options.map((option, i) => {
      const node = el(
        "li",
        {
          id: `picker-option-${i}`,
          role: "option",
          class: `option kind-label level-${option.level}${i === picker.active ? " active" : ""}`,
          "aria-selected": i === picker.active ? "true" : "false",
          "data-name": option.name,
        },
        el("span", { class: "option-name" }, option.name),
        option.path ? el("span", { class: "option-path" }, option.path) : null,
        present.get(option.name) === true ? el("span", { class: "option-state" }, "✓ present") : null,
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

  function openPicker() {
    picker.active = 0;
    pickerSearch.value = "";
    pickerBox.hidden = false;
    renderPicker();
    pickerSearch.focus();
  }

  function closePicker() {
    pickerBox.hidden = true;
    pickerSearch.blur();
  }

  function choose() {
    const option = picker.options[picker.active];
    if (!option) return;
    setLabel(option.name, true);
    renderLabels();
    closePicker();
  }

  pickerSearch.addEventListener("input", () => {
    picker.active = 0;
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
      closePicker();
    }
    event.stopPropagation();
  });

  pickerBox.addEventListener("click", (event) => {
    if (event.target === pickerBox) closePicker();
  });

  // --- Help -------------------------------------------------------------------------------------

  function setHelp(open) {
    help.hidden = !open;
    helpButton.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) $("help-close").focus();
    else if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  }

  helpButton.addEventListener("click", () => setHelp(help.hidden));
  $("help-close").addEventListener("click", () => setHelp(false));
  help.addEventListener("click", (event) => {
    if (event.target === help) setHelp(false);
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
    if (key === "Enter") submit();
    else if (/^[1-9]$/.test(key)) toggleNth(Number(key));
    else if (key === "a" || key === "/") openPicker();
    else if (key === "?") setHelp(true);
    else if (key === "g") location.assign(D.listUrl);
    else return;
    event.preventDefault();
  });

  $("add-label").addEventListener("click", openPicker);
  $("submit-answer").addEventListener("click", submit);

  // --- Start ------------------------------------------------------------------------------------

  renderLabels();
  tick();
  window.setInterval(tick, 1000);
})();
