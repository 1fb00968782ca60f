// Supervisors' dashboard. The charts come drawn from the server (inline SVG, every data text escaped
// there); this script only asks for a period with the console's token and shows what comes back.
"use strict";

const api = "/advisor/dashboard/api";
const token = sessionStorage.getItem("som-token");

function limaToday() {
  // en-CA formats dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone: "America/Lima" }).format(new Date());
}

function daysBefore(iso, days) {
  const date = new Date(`${iso}T12:00:00Z`);
  date.setUTCDate(date.getUTCDate() - days);
  return date.toISOString().slice(0, 10);
}

function query() {
  return new URLSearchParams({ since: $("since").value, until: $("until").value }).toString();
}

async function call(path) {
  const res = await fetch(`${api}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  if (res.status === 401) { signedOut(); throw new Error("Su sesión terminó: ingrese de nuevo en la consola."); }
  if (res.status === 403) $("board").hidden = true;
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(res.status === 403
      ? "Su cuenta no tiene el rol de supervisor: pida acceso al administrador del SOM."
      : (body.error || `Error ${res.status}`));
  }
  return res;
}

function signedOut() {
  $("board").hidden = true;
  $("signed-out").hidden = false;
}

async function show() {
  $("notice").textContent = "";
  $("charts").setAttribute("aria-busy", "true");
  try {
    const res = await call(`/charts?${query()}`);
    // Server-rendered markup: every text taken from conversations was escaped by the server.
    $("charts").innerHTML = await res.text();
  } catch (error) {
    $("notice").textContent = error.message;
  } finally {
    $("charts").setAttribute("aria-busy", "false");
  }
}

async function download() {
  try {
    const res = await call(`/export.csv?${query()}`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await res.blob());
    link.download = `indicadores-som-${$("since").value}-${$("until").value}.csv`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    $("notice").textContent = error.message;
  }
}

function when(iso) { return new Date(iso).toLocaleString("es-PE", { dateStyle: "short", timeStyle: "short", timeZone: "America/Lima" }); }

// Supervisors pick an answer by its title (as the assistant shows it); editors get its identifier.
const entryIds = new Map(); // title -> identifier

async function loadEntries() {
  const { entries } = await (await call("/entries")).json();
  entries.forEach((e) => entryIds.set(e.title, e.id));
  $("entry-titles").replaceChildren(...entries.map((e) => el("option", { value: e.title })));
}

function chosenEntry(typed) {
  const text = typed.trim();
  return entryIds.get(text) || text; // an identifier typed as such is taken too
}

// Texts from conversations go in with textContent (el), never as markup.
function turnItem(turn, index) {
  const entry = el("input", { list: "entry-titles", required: "", id: `entry-${index}`, "aria-label": "Respuesta que debió dar", placeholder: "Respuesta que debió dar: escriba un tema o un país" });
  const comment = el("input", { "aria-label": "Comentario para los editores", placeholder: "Comentario (opcional)" });
  const item = el("li", {},
    el("span", { class: "meta" }, `${when(turn.at)}${turn.not_understood ? " · no entendido" : ""}`),
    el("p", { class: "said" }, el("strong", {}, "Persona: "), turn.person),
    el("p", { class: "answer" }, el("strong", {}, "Asistente: "), turn.assistant || "—"));
  const form = el("form", { onsubmit: async (event) => {
    event.preventDefault();
    try {
      const res = await fetch(`${api}/reviews`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ conversation_id: turn.conversation_id, person_text: turn.person, assistant_text: turn.assistant, expected_entry: chosenEntry(entry.value), comment: comment.value }),
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.error || `Error ${res.status}`);
      item.classList.add("reviewed");
      form.replaceChildren(el("span", { class: "meta" }, `Revisión guardada: debió responder «${entry.value.trim()}».`));
      $("notice").textContent = "Revisión guardada.";
    } catch (error) { $("notice").textContent = error.message; }
  } }, entry, comment, el("button", { type: "submit", class: "secondary" }, "Marcar como incorrecta"));
  item.append(form);
  return item;
}

async function showTurns() {
  try {
    const all = $("only-fallback").checked ? "" : "&all=1";
    const { turns } = await (await call(`/turns?${query()}${all}`)).json();
    $("turns").replaceChildren(...turns.map(turnItem));
    if (!turns.length) $("turns").replaceChildren(el("li", { class: "meta" }, "No hay mensajes por revisar en el periodo."));
  } catch (error) { $("notice").textContent = error.message; }
}

// Quick periods, in Lima's calendar: the last 7 or 30 days, this month, last month.
function preset(kind) {
  const today = limaToday();
  const firstOfMonth = `${today.slice(0, 8)}01`;
  if (kind === "7") return [daysBefore(today, 6), today];
  if (kind === "30") return [daysBefore(today, 29), today];
  if (kind === "month") return [firstOfMonth, today];
  const lastOfPrevious = daysBefore(firstOfMonth, 1);
  return [`${lastOfPrevious.slice(0, 8)}01`, lastOfPrevious];
}

function showPeriod() { show(); showTurns(); }

$("only-fallback").addEventListener("change", showTurns);
$("filters").addEventListener("submit", (event) => { event.preventDefault(); showPeriod(); });
document.querySelectorAll("#presets button").forEach((button) => button.addEventListener("click", () => {
  [$("since").value, $("until").value] = preset(button.dataset.period);
  showPeriod();
}));
$("export").addEventListener("click", download);

if (!token) {
  signedOut();
} else {
  const today = limaToday();
  $("until").value = today;
  $("since").value = daysBefore(today, 29);
  $("board").hidden = false;
  show().then(() => { if (!$("board").hidden && !$("notice").textContent) { loadEntries().catch(() => {}); showTurns(); } });
}
