// The sidebar. Search as you type and inline rename are htmx (templates/chat/_sidebar.html);
// the conversations' menus are menus.js. Here: titles are written shortly after a first
// answer, so the list is fetched again when an answer ends and once more a little later,
// not while a menu is open (the user may be renaming); and on narrow screens the sidebar
// is a panel the top bar's button toggles.

import { firstElement } from "./shared.js";

const SIDEBAR_AGAIN_MS = 1500;

export function refreshSidebarSoon() {
  refreshSidebar();
  setTimeout(refreshSidebar, SIDEBAR_AGAIN_MS);
}

async function refreshSidebar() {
  const list = document.querySelector("[data-sidebar-list]");
  const url = document.querySelector("[data-sidebar-url]")?.dataset.sidebarUrl;
  if (!list || !url || list.querySelector("details[open]")) return;
  const query = new URLSearchParams();
  const search = document.getElementById("sidebar-search");
  if (search && search.value) query.set("q", search.value);
  const current = document.querySelector("#sidebar input[name=current]");
  if (current) query.set("current", current.value);
  try {
    const response = await fetch(`${url}?${query}`, { credentials: "same-origin" });
    if (!response.ok || response.redirected) return;
    const fresh = firstElement(await response.text());
    const now = document.querySelector("[data-sidebar-list]");
    if (!fresh || !fresh.matches("[data-sidebar-list]") || !now || now.querySelector("details[open]")) return;
    now.replaceWith(fresh);
  } catch (_) {
    return; // offline: the next answer refreshes it
  }
  // The open conversation's title may have changed: show it in the top bar too.
  const link = document.querySelector("#sidebar .convs__link.is-current");
  const title = document.getElementById("topbar-title");
  if (link && title && document.querySelector("#transcript") && title.textContent !== link.textContent) {
    title.textContent = link.textContent;
    document.title = `${link.textContent} · Chat`;
  }
}

function setSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  document.querySelectorAll("[data-sidebar-open]").forEach((opener) => {
    opener.setAttribute("aria-expanded", String(open));
  });
  if (open) document.querySelector("#sidebar .convs__link, #sidebar a")?.focus();
}

// A click on the sidebar's toggle (narrow screens), or on the dimmed page beside it.
export function sidebarClicked(event) {
  const opener = event.target.closest("[data-sidebar-open]");
  const closer = event.target.closest("[data-sidebar-close]");
  if (opener || closer) {
    event.preventDefault();
    setSidebar(Boolean(opener));
  } else if (document.body.classList.contains("sidebar-open") && !event.target.closest("#sidebar")) {
    setSidebar(false); // a click on the dimmed page beside the open sidebar
  }
}

// Escape: close the open sidebar. True if it was open.
export function closeSidebar() {
  if (!document.body.classList.contains("sidebar-open")) return false;
  setSidebar(false);
  return true;
}
