// Asks before a console form that destroys something or changes credentials is sent
// (forms with data-confirm="Really …?"; data-confirm-if-purge when their policy is purge;
// data-confirm-if-restricting when their scope limits a plugin to some tenants);
// without scripts the server asks on a page instead.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const purging = form.elements.namedItem("policy")?.value === "purge";
  const restricting = form.elements.namedItem("scope")?.value === "selected";
  const question =
    form.dataset.confirm ||
    (purging && form.dataset.confirmIfPurge) ||
    (restricting && form.dataset.confirmIfRestricting);
  if (!question || form.elements.namedItem("confirm")?.value === "yes") return;
  event.preventDefault();
  const dialog = document.createElement("dialog");
  dialog.setAttribute("aria-label", "Confirm");
  const text = document.createElement("p");
  text.textContent = question;
  const yes = document.createElement("button");
  yes.type = "button";
  yes.className = "danger";
  yes.textContent = form.dataset.confirmButton || "Confirm";
  const no = document.createElement("button");
  no.type = "button";
  no.textContent = "Cancel";
  dialog.append(text, yes, " ", no);
  dialog.addEventListener("close", () => dialog.remove());
  no.addEventListener("click", () => dialog.close());
  yes.addEventListener("click", () => {
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "confirm";
    field.value = "yes";
    form.append(field);
    dialog.close();
    form.submit();
  });
  document.body.append(dialog);
  dialog.showModal();
  no.focus();
});
