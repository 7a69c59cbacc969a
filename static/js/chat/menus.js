// Menus: the <details data-menu> of the sidebar's conversations and of the top bar, and a
// question's Edit box (<details class="msg__edit">). They open and close without
// JavaScript; here only one is open at a time, a click outside or Escape closes it, and
// an opened one puts the cursor in its rename (or message) box.

const MENUS = "details[data-menu], details.msg__edit";

// Close the others, and put the cursor in the menu's box (unless it is there already: the
// `toggle` of a menu opened on a click comes after the click has done this).
function opened(menu) {
  if (menu.matches("[data-menu]")) {
    document.querySelectorAll("details[data-menu][open]").forEach((other) => {
      if (other !== menu) other.open = false;
    });
    const input = menu.querySelector(".rename__input");
    if (input && document.activeElement !== input) {
      input.focus();
      input.select();
    }
  } else {
    const textarea = menu.querySelector("textarea");
    if (textarea && document.activeElement !== textarea) textarea.focus();
  }
}

// A click outside an open menu closes it.
export function closeMenusOutside(event) {
  document.querySelectorAll("details[data-menu][open]").forEach((menu) => {
    if (!menu.contains(event.target)) menu.open = false;
  });
}

// A click (or Enter, or Space) on a closed menu's summary opens it here and now, with
// the cursor in its box. Left to the browser, the menu opens on the click but its
// `toggle` event, which moves the cursor, comes a task later: a key pressed at once
// would go to the summary.
export function openClickedMenu(event) {
  const summary = event.target.closest("summary");
  const menu = summary?.parentElement;
  if (!menu || menu.open || !menu.matches(MENUS) || menu.querySelector(":scope > summary") !== summary) {
    return;
  }
  event.preventDefault();
  menu.open = true;
  opened(menu);
}

// Escape: close the open menu, back to its summary. True if one was open.
export function closeOpenMenu() {
  const menu = document.querySelector("details[data-menu][open], details.msg__edit[open]");
  if (!menu) return false;
  menu.open = false;
  menu.querySelector("summary")?.focus();
  return true;
}

// A menu opened any other way (by a script, say): the same.
export function watchMenus() {
  document.addEventListener(
    "toggle",
    (event) => {
      const menu = event.target;
      if (menu instanceof HTMLDetailsElement && menu.open && menu.matches(MENUS)) opened(menu);
    },
    true,
  );
}
