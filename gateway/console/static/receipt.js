// Receipt page: the print button (no inline script: the console's CSP forbids it).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const b = document.getElementById("print-button");
  if (b) b.addEventListener("click", () => window.print());
});
