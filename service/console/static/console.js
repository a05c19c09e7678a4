// Behaviour shared by the console's pages: a running job's page refreshes itself, the new-job
// form shows the fields of the chosen source, and forms marked data-confirm ask first.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

function followJob(box) {
  const url = box.dataset.statusUrl;
  const bar = box.querySelector("progress");
  const text = box.querySelector(".progress-text");
  const started = box.dataset.status;
  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const state = await response.json();
        if (!state.active || state.status !== started) {
          window.location.reload();
          return;
        }
        if (state.progress) {
          bar.max = state.progress.total;
          bar.value = state.progress.done;
          text.textContent = `${state.progress.done} of ${state.progress.total} manifest lines done`;
        }
      }
    } catch (error) {
      text.textContent = `Lost contact with the server (${error.message}); retrying…`;
    }
    window.setTimeout(poll, 2000);
  }
  window.setTimeout(poll, 2000);
}

function followTraining(box) {
  window.setTimeout(() => window.location.reload(), Number(box.dataset.refreshMs || 4000));
}

function sourceFields(form) {
  const show = () => {
    const chosen = form.querySelector('input[name="source"]:checked');
    const source = chosen ? chosen.value : "upload";
    form.querySelector(".source-upload").hidden = source !== "upload";
    form.querySelector(".source-manifest").hidden = source !== "manifest";
  };
  form.querySelectorAll('input[name="source"]').forEach((input) => input.addEventListener("change", show));
  show();
}

// A thumbnail that cannot be made (the image was deleted, or is not one) says so in its place.
function markMissing(image) {
  image.hidden = true;
  const note = image.parentElement.querySelector(".thumb-missing");
  if (note) note.hidden = false;
}

// A human review task is claimed by a POST (with the CSRF token), then shown with its claim.
async function claimTask(box) {
  try {
    const response = await fetch(box.dataset.claimUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: "{}",
    });
    if (response.ok) {
      window.location.reload();
      return;
    }
    const answer = await response.json().catch(() => ({}));
    box.className = "error";
    box.textContent = answer.error || `The task could not be claimed (${response.status}).`;
  } catch (error) {
    box.className = "error";
    box.textContent = `The task could not be claimed: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const claim = document.getElementById("claim-needed");
  if (claim) claimTask(claim);
  document.querySelectorAll("img.thumb").forEach((image) => {
    if (image.complete && image.naturalWidth === 0 && image.getAttribute("src")) markMissing(image);
    image.addEventListener("error", () => markMissing(image));
  });
  const progress = document.getElementById("progress");
  if (progress && progress.dataset.statusUrl) followJob(progress);
  const training = document.getElementById("training-refresh");
  if (training) followTraining(training);
  const newJob = document.getElementById("new-job");
  if (newJob) sourceFields(newJob);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
