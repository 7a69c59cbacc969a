// Attachments in the composer: a file picked with the paperclip, dropped on the page or
// pasted is uploaded at once (POST /api/attachments/, with a progress bar) and shown as
// a chip; the message then sends the ids (hidden `attachments` inputs), not the files.
// A refused file shows the server's reason on its chip. Names are only ever text.

import { csrfToken } from "./shared.js";

const composer = () => document.getElementById("composer");
const chipList = () => composer()?.querySelector("[data-chips]");

function sizeText(size) {
  if (size < 1024) return `${size} bytes`;
  let value = size / 1024;
  for (const unit of ["KB", "MB"]) {
    if (value < 1024) return `${value.toFixed(1).replace(/\.0$/, "")} ${unit}`;
    value /= 1024;
  }
  return `${value.toFixed(1).replace(/\.0$/, "")} GB`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function chipFor(file) {
  const chip = element("li", "chip chip--uploading");
  const icon = element("span", "chip__icon", file.type.startsWith("image/") ? "IMG" : "FILE");
  icon.setAttribute("aria-hidden", "true");
  const name = element("span", "chip__name", file.name || "pasted file");
  const size = element("span", "chip__size", sizeText(file.size));
  const progress = element("progress", "chip__progress");
  progress.max = 100;
  progress.value = 0;
  progress.setAttribute("aria-label", `Uploading ${file.name || "pasted file"}`);
  const error = element("span", "chip__error");
  error.setAttribute("role", "alert");
  const remove = element("button", "chip__remove", "×");
  remove.type = "button";
  remove.dataset.removeAttachment = "";
  remove.setAttribute("aria-label", `Remove ${file.name || "pasted file"}`);
  chip.append(icon, name, size, progress, error, remove);
  return chip;
}

function uploaded(chip, shown) {
  chip.classList.remove("chip--uploading");
  chip.classList.add("chip--done");
  chip.dataset.id = shown.id;
  chip.dataset.deleteUrl = `/api/attachments/${shown.id}/`;
  chip.querySelector(".chip__progress").remove();
  if (shown.thumbnail_url) {
    const thumbnail = element("img", "chip__thumb");
    thumbnail.src = shown.thumbnail_url;
    thumbnail.alt = "";
    chip.querySelector(".chip__icon").replaceWith(thumbnail);
  }
  const input = element("input");
  input.type = "hidden";
  input.name = "attachments";
  input.value = shown.id;
  chip.append(input);
}

function failed(chip, message) {
  chip.classList.remove("chip--uploading");
  chip.classList.add("chip--error");
  chip.querySelector(".chip__progress")?.remove();
  chip.querySelector(".chip__error").textContent = message;
}

function send(form, file, chip) {
  const body = new FormData();
  body.append("file", file, file.name || "pasted file");
  const request = new XMLHttpRequest();
  request.open("POST", form.dataset.uploadUrl);
  request.setRequestHeader("X-CSRFToken", csrfToken());
  request.responseType = "json";
  request.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) {
      chip.querySelector(".chip__progress").value = Math.round((100 * event.loaded) / event.total);
    }
  });
  request.addEventListener("load", () => {
    if (request.status === 201 && request.response) uploaded(chip, request.response);
    else failed(chip, request.response?.error?.message || `The upload failed (${request.status}).`);
  });
  request.addEventListener("error", () => failed(chip, "The upload failed: check your connection."));
  request.send(body);
}

// Upload each file, within the count and size the server accepts.
export function attachFiles(files) {
  const form = composer();
  const list = chipList();
  if (!form || !list) return;
  const maxFiles = Number(form.dataset.maxFiles);
  const maxBytes = Number(form.dataset.maxBytes);
  for (const file of files) {
    const chip = chipFor(file);
    list.append(chip);
    const kept = list.querySelectorAll(".chip:not(.chip--error)").length;
    if (kept > maxFiles) failed(chip, `At most ${maxFiles} files per message.`);
    else if (file.size > maxBytes) failed(chip, `This file is larger than ${sizeText(maxBytes)}.`);
    else send(form, file, chip);
  }
}

function removeChip(chip) {
  if (chip.dataset.deleteUrl) {
    fetch(chip.dataset.deleteUrl, {
      method: "DELETE",
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    }).catch(() => {}); // an upload never sent is swept after a day anyway
  }
  chip.remove();
}

function clearAll() {
  chipList()?.replaceChildren();
}

function hasFiles(transfer) {
  return Boolean(transfer) && Array.from(transfer.types || []).includes("Files");
}

export function watchAttachments() {
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.matches("[data-attach-input]")) return;
    attachFiles(Array.from(input.files));
    input.value = ""; // the files went up already: the form sends their ids, not them
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remove-attachment]");
    if (button) removeChip(button.closest(".chip"));
  });

  document.addEventListener("dragover", (event) => {
    if (!composer() || !hasFiles(event.dataTransfer)) return;
    event.preventDefault();
    composer().classList.add("is-dropping");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) composer()?.classList.remove("is-dropping");
  });
  document.addEventListener("drop", (event) => {
    const form = composer();
    if (!form || !event.dataTransfer?.files?.length) return;
    event.preventDefault();
    form.classList.remove("is-dropping");
    attachFiles(Array.from(event.dataTransfer.files));
  });

  document.addEventListener("paste", (event) => {
    const files = Array.from(event.clipboardData?.files || []);
    if (!composer() || files.length === 0) return;
    event.preventDefault(); // a pasted image is attached, not its name typed
    attachFiles(files);
  });

  // Capture phase, before composer.js: no sending while a file is still uploading.
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (form.id !== "composer" || !form.querySelector(".chip--uploading")) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      const errors = document.getElementById("composer-errors");
      if (errors) errors.replaceChildren(element("p", "", "Wait for the files to finish uploading."));
    },
    true,
  );

  document.addEventListener("htmx:after:request", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "composer") return;
    const status = event.detail?.ctx?.response?.status ?? 0;
    if (status >= 200 && status < 300) clearAll();
  });
}
