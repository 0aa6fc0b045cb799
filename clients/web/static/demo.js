// Helpers shared by the demo pages: the connection pill and a toast.
// Each page's own script shows how herald.js is used.

// showState keeps the header's pill in step with the client's state.
export function showState(herald, pill = document.getElementById("status")) {
  herald.on("state", (e) => {
    pill.dataset.state = e.state;
    let text = e.state;
    if (e.state == "disconnected" && e.code) text += ` (${e.code}${e.reason ? " " + e.reason : ""})`;
    if (e.state == "connected") text += ` · ${herald.node}`;
    pill.textContent = text;
    pill.title = text;
  });
}

let toastTimer;
// toast shows a short notice in the corner.
export function toast(text) {
  let el = document.querySelector(".toast");
  if (!el) {
    el = document.body.appendChild(document.createElement("div"));
    el.className = "toast";
    el.setAttribute("role", "status");
  }
  el.textContent = text;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), 3500);
}

// h creates an element: h("div", {class: "x"}, "text", child).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k == "class") el.className = v;
    else if (k == "style") el.style.cssText = v;
    else el.setAttribute(k, v);
  }
  el.append(...children);
  return el;
}
