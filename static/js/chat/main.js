// The chat page's script: streams answers into their bubbles (answer-stream.js, and
// reconnect.js when the reader comes back), and drives the composer (composer.js) and
// its attachments (attachments.js: uploaded on pick, drop or paste).
// Also: Copy buttons (clipboard.js), keyboard shortcuts (Enter sends, Shift+Enter new
// line, Escape stops; the others, listed in the "?" dialog, in shortcuts.js), "jump to
// latest" (scrolling.js), the menus (menus.js), and refreshing the sidebar when an answer
// ends (sidebar.js).
// Here: the wiring, and what follows an htmx swap.

import { closeAll, wireAll } from "./answer-stream.js";
import { watchAttachments } from "./attachments.js";
import { copyClicked, decorate } from "./clipboard.js";
import { growComposer, stopClicked, stopOnEscape, watchComposer } from "./composer.js";
import { closeMenusOutside, closeOpenMenu, openClickedMenu, watchMenus } from "./menus.js";
import { watchReturns } from "./reconnect.js";
import { jumpClicked, toBottom, updateJump, watchScrolling } from "./scrolling.js";
import { watchShortcuts } from "./shortcuts.js";
import { closeSidebar, sidebarClicked } from "./sidebar.js";

watchReturns();
watchAttachments(); // first: its submit check runs before the composer's
watchComposer();
watchMenus();
watchShortcuts();

// A logged-out session answers a post with a redirect to the login page, which fetch
// follows: go there instead of swapping the login page into the transcript.
document.addEventListener("htmx:before:swap", (event) => {
  const response = event.detail?.ctx?.response?.raw;
  if (response && response.redirected) {
    event.preventDefault();
    window.location.assign(response.url);
  }
});

// New content from htmx (the posted message and its streaming answer).
// Only the last answer can be regenerated or continued: after an exchange is appended
// in place, the previous answer's controls are stale. (Any question can be edited.)
function dropStaleControls(transcript) {
  transcript.querySelectorAll(".msg--assistant:not(:last-child) .msg__again").forEach((form) => {
    form.remove();
  });
}

document.addEventListener("htmx:after:swap", (event) => {
  const target = event.detail?.ctx?.target;
  if (target && target.id === "transcript") {
    dropStaleControls(target);
    toBottom();
  }
  decorate(document);
  wireAll(document);
  updateJump();
});

// Clicks: the Stop button, Copy buttons, "jump to latest", the menus, and the sidebar
// toggle on narrow screens.
document.addEventListener("click", (event) => {
  if (stopClicked(event) || copyClicked(event) || jumpClicked(event)) return;
  closeMenusOutside(event);
  openClickedMenu(event);
  sidebarClicked(event);
});

// Escape closes what is open (a menu, then the sidebar), else stops the streaming answer.
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !event.isComposing) {
    if (!closeOpenMenu() && !closeSidebar()) stopOnEscape(event);
  }
});

// Start: the page may already hold a streaming answer (a reload, or just redirected).
document.documentElement.classList.add("js");
growComposer();
decorate(document);
toBottom();
wireAll(document);
watchScrolling();
// Leaving the page closes the streams; coming back from the back/forward cache reopens them.
window.addEventListener("pagehide", closeAll);
window.addEventListener("pageshow", (event) => {
  if (event.persisted) wireAll(document);
});
