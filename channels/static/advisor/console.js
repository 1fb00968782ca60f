// Advisor console. Every text that comes from a conversation is set with textContent, never
// innerHTML, so a message holding HTML or script is shown as plain text.
"use strict";

const api = "/advisor/api";
const POLL_MS = 3000;
const state = { token: sessionStorage.getItem("som-token"), status: "waiting", openId: null, seenWaiting: null, seenLines: 0 };
const REASONS = { requested: "Pidió un asesor", not_understood: "El asistente no entendió", sensitive: "Situación sensible" };
const STATES = { waiting: "en espera", active: "en atención", closed: "cerrada", cancelled: "cancelada" };
const AUTHORS = { person: "Persona", assistant: "Asistente", advisor: "Asesor", note: "Nota interna", system: "Sistema" };
// How far a reply got, as WhatsApp reports it (delivery status callbacks).
const DELIVERY = { accepted: "en cola", scheduled: "en cola", queued: "en cola", sending: "enviando", sent: "enviado",
  delivered: "entregado", read: "leído", failed: "no se entregó", undelivered: "no se entregó" };

async function call(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(api + path, { ...options, headers });
  if (res.status === 401 && path !== "/login") { logout(); throw new Error("Su sesión terminó: ingrese de nuevo."); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `Error ${res.status}`);
  return body;
}

function notify(text) {
  $("notice").textContent = text;
  document.title = "(●) Consola de asesores · SOM";
  try {
    const ctx = new AudioContext();
    const tone = ctx.createOscillator();
    tone.frequency.value = 880;
    tone.connect(ctx.destination);
    tone.start();
    tone.stop(ctx.currentTime + 0.2);
  } catch (_) { /* audio may be blocked until the advisor interacts with the page */ }
}

function clearNotice() { $("notice").textContent = ""; document.title = "Consola de asesores · SOM"; }

function logout() {
  state.token = null;
  sessionStorage.removeItem("som-token");
  $("desk").hidden = true; $("login").hidden = false; $("who").hidden = true;
}

$("logout").addEventListener("click", async () => {
  try { await call("/logout", { method: "POST" }); } catch (_) { /* signed out here either way */ }
  sessionStorage.removeItem("som-advisor");
  sessionStorage.removeItem("som-supervisor");
  logout();
});

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const body = await call("/login", { method: "POST", body: JSON.stringify({ username: $("username").value, password: $("password").value }) });
    state.token = body.token;
    sessionStorage.setItem("som-token", body.token);
    sessionStorage.setItem("som-advisor", body.advisor);
    sessionStorage.setItem("som-supervisor", body.supervisor ? "1" : "");
    start();
  } catch (error) { $("login-error").textContent = error.message; }
});

document.querySelectorAll(".tabs button").forEach((tab) => tab.addEventListener("click", () => {
  state.status = tab.dataset.status;
  document.querySelectorAll(".tabs button").forEach((t) => t.setAttribute("aria-selected", String(t === tab)));
  refreshQueue();
}));

document.addEventListener("click", clearNotice);

function when(iso) { return iso ? new Date(iso).toLocaleString("es-PE", { dateStyle: "short", timeStyle: "short" }) : "—"; }

async function refreshQueue() {
  const waiting = (await call("/handoffs?status=waiting")).handoffs;
  $("count-waiting").textContent = waiting.length ? `(${waiting.length})` : "";
  const ids = waiting.map((h) => h.id);
  if (state.seenWaiting && ids.some((id) => !state.seenWaiting.includes(id))) notify("Nueva conversación en espera");
  state.seenWaiting = ids;
  const items = state.status === "waiting" ? waiting : (await call(`/handoffs?status=${state.status}`)).handoffs;
  $("queue").replaceChildren(...items.map((h) => el("li", {
    class: h.priority ? "priority" : "", tabindex: "0", "aria-current": String(h.id === state.openId),
    onclick: () => openHandoff(h.id), onkeydown: (e) => { if (e.key === "Enter") openHandoff(h.id); },
  }, el("strong", {}, `#${h.id} · ${REASONS[h.reason] || h.reason}`), el("div", { class: "meta" },
    `${h.channel} · ${when(h.created_at)}${h.given_back ? " · devuelta a la fila" : h.message_left ? " · dejó un mensaje" : ""}${h.advisor ? ` · ${h.advisor}` : ""}`),
  el("div", { class: "meta" }, h.summary))));
  if (!items.length) $("queue").replaceChildren(el("li", { class: "meta" }, "No hay conversaciones."));
}

async function openHandoff(id) {
  state.openId = id; state.seenLines = 0;
  await renderDetail(true);
  refreshQueue();
}

async function renderDetail(focus = false) {
  if (state.openId === null) return;
  // "opened": the advisor chose this case (audited every time); otherwise a refresh.
  const { handoff: h, transcript, earlier = [], media = [] } = await call(`/handoffs/${state.openId}${focus ? "?opened=1" : ""}`);
  const statuses = transcript.map((line) => (line.delivery ? line.delivery.status : "")).join(",");
  const signature = `${h.id}:${h.state}:${transcript.length}:${statuses}`;
  if (!focus && signature === state.signature) return;  // keep what the advisor is typing
  state.signature = signature;
  if (!focus && transcript.length > state.seenLines && transcript.at(-1).author === "person") notify("Nuevo mensaje de la persona");
  const mine = h.state === "active" && h.advisor === sessionStorage.getItem("som-advisor");
  const profile = Object.entries(h.profile).filter(([, v]) => v).map(([k, v]) => el("span", {}, el("strong", {}, `${k}: `), v));
  const log = el("ol", { class: "transcript", "aria-label": "Conversación" }, ...[...earlier, ...transcript].map((line) =>
    el("li", { class: line.author + (line.delivery && line.delivery.failed ? " delivery-failed" : "") },
      el("div", { class: "meta" }, `${AUTHORS[line.author] || line.author}${line.advisor ? ` (${line.advisor})` : ""} · ${when(line.at)}`,
        ...(line.delivery ? [deliveryBadge(line.delivery)] : [])),
      el("p", { class: "text" }, line.text),
      ...(line.media ? [mediaButtons(h.id, line.media)] : []))));
  // Files of the session whose line is not shown above (the record starts with it) still open.
  const onLines = new Set([...earlier, ...transcript].flatMap((line) => (line.media || []).map((m) => m.n)));
  const loose = media.filter((m) => !onLines.has(m.n));
  const parts = [
    el("h2", { tabindex: "-1", id: "detail-title" }, `Conversación #${h.id} · ${REASONS[h.reason] || h.reason}`),
    el("p", { class: "meta" }, `Canal: ${h.channel} · Estado: ${STATES[h.state] || h.state}${h.advisor ? ` · Asesor: ${h.advisor}` : ""} · Desde ${when(h.created_at)}`),
    el("div", { class: "profile" }, ...(profile.length ? profile : [el("span", { class: "meta" }, "Sin datos del perfil")])),
    log,
    ...(loose.length ? [el("div", { class: "files" }, el("span", { class: "meta" }, "Archivos de la conversación: "), mediaButtons(h.id, loose))] : []),
  ];
  if (h.state === "waiting") parts.push(el("div", { class: "actions" }, el("button", { onclick: () => act(`/handoffs/${h.id}/claim`) }, "Atender esta conversación")));
  if (mine) parts.push(await replyForm(h));
  else if (h.state === "active" && sessionStorage.getItem("som-supervisor") === "1") parts.push(el("div", { class: "actions" }, releaseButton(h)));
  parts.push(noteForm(h));
  $("detail").replaceChildren(...parts);
  log.scrollTop = log.scrollHeight;
  state.seenLines = transcript.length;
  if (focus) $("detail-title").focus();
}

// A person's file is fetched from WhatsApp only when the advisor asks (with the session's token),
// shown here (images, audio) or saved (anything else), and never kept by the console.
function mediaButtons(handoffId, files) {
  const box = el("div", { class: "media" });
  for (const file of files) {
    const kind = file.type.startsWith("image/") ? "imagen" : file.type.startsWith("audio/") ? "audio" : "archivo";
    box.append(el("button", { type: "button", class: "secondary", "data-media": String(file.n),
      onclick: (e) => openMedia(handoffId, file, e.currentTarget) }, `Ver ${kind} (${file.type || "sin tipo"})`));
  }
  return box;
}

async function openMedia(handoffId, file, button) {
  button.disabled = true;
  try {
    const res = await fetch(`${api}/handoffs/${handoffId}/media/${file.n}`, { headers: { Authorization: `Bearer ${state.token}` } });
    if (res.status === 401) { logout(); throw new Error("Su sesión terminó: ingrese de nuevo."); }
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || `Error ${res.status}`);
    const type = (res.headers.get("Content-Type") || "").split(";")[0];
    const url = URL.createObjectURL(await res.blob());
    const inline = (res.headers.get("Content-Disposition") || "").startsWith("inline");
    let shown;
    if (inline && type.startsWith("image/")) shown = el("img", { src: url, alt: "Imagen enviada por la persona", class: "media-view" });
    else if (inline && type.startsWith("audio/")) shown = el("audio", { src: url, controls: "", class: "media-view" });
    else {
      const link = el("a", { href: url, download: `archivo-${file.n}` }, `Guardar archivo (${type})`);
      link.click();
      shown = link;
    }
    button.replaceWith(shown);
    if (shown.tagName === "A") setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    $("notice").textContent = error.message;
    button.disabled = false;
  }
}

function deliveryBadge(delivery) {
  const label = DELIVERY[delivery.status] || delivery.status;
  const template = delivery.template ? " · como plantilla" : "";
  if (!delivery.failed) return el("span", { class: "delivery" }, ` · ${label}${template}`);
  const code = delivery.error_code ? ` (error ${delivery.error_code})` : "";
  return el("strong", { class: "delivery delivery-failed", role: "status" },
    ` · ⚠ ${label}${code}${template}: intente de nuevo o contacte a la persona por otro medio`);
}

async function replyForm(h) {
  // While the advisor writes, the person sees "typing…" (WhatsApp, Telegram, web chat; at most every 20 s, best effort).
  let typingAt = 0;
  const box = el("textarea", { id: "reply", rows: "3", "aria-label": "Respuesta para la persona", oninput: () => {
    if (Date.now() - typingAt < 20000) return;
    typingAt = Date.now();
    call(`/handoffs/${h.id}/typing`, { method: "POST", body: "{}" }).catch(() => {});
  } });
  const canned = (await call("/canned")).canned;
  const picker = el("select", { "aria-label": "Respuestas predefinidas", onchange: (e) => { box.value = e.target.value; box.focus(); } },
    el("option", { value: "" }, "Respuestas predefinidas…"), ...canned.map((c) => el("option", { value: c.text }, c.title)));
  const form = el("form", { class: "actions", onsubmit: async (e) => {
    e.preventDefault();
    if (box.value.trim()) await act(`/handoffs/${h.id}/messages`, { text: box.value });
  } }, picker, box, el("button", { type: "submit" }, "Enviar"),
  el("button", { type: "button", class: "secondary", onclick: () => act(`/handoffs/${h.id}/close`) }, "Cerrar conversación"),
  releaseButton(h));
  return form;
}

// Back to the queue, first in line: the advisor leaves (end of shift), or a supervisor reassigns.
function releaseButton(h) {
  return el("button", { type: "button", class: "secondary", onclick: () => act(`/handoffs/${h.id}/release`) }, "Devolver a la fila");
}

function noteForm(h) {
  const box = el("input", { "aria-label": "Nota interna (no la ve la persona)", placeholder: "Nota interna (no la ve la persona)" });
  return el("form", { class: "actions", onsubmit: async (e) => {
    e.preventDefault();
    if (box.value.trim()) await act(`/handoffs/${h.id}/notes`, { text: box.value });
  } }, box, el("button", { type: "submit", class: "secondary" }, "Guardar nota"));
}

async function act(path, body) {
  try {
    const done = await call(path, { method: "POST", body: JSON.stringify(body || {}) });
    if (done.template) {
      $("notice").textContent = "Pasaron más de 24 horas desde el último mensaje de la persona: se envió como plantilla aprobada de WhatsApp.";
    } else if (done.delivered === false) {
      $("notice").textContent = (done.reachable === false
        ? "Quedó en el registro, pero este canal no permite enviarlo a la persona: contáctela por otro medio."
        : "Parte del mensaje no llegó a la persona: revise la conversación e intente de nuevo.");
    }
    await renderDetail(); await refreshQueue();
  } catch (error) { $("notice").textContent = error.message; }
}

async function poll() {
  if (!state.token) return;
  try { await refreshQueue(); await renderDetail(); } catch (error) { $("notice").textContent = error.message; }
}

function start() {
  $("login").hidden = true; $("desk").hidden = false;
  $("who").hidden = false; $("who-name").textContent = sessionStorage.getItem("som-advisor") || "";
  $("dashboard-link").hidden = sessionStorage.getItem("som-supervisor") !== "1";
  poll();
}

setInterval(poll, POLL_MS);
if (state.token) start();
