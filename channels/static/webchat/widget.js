/*
 * The SOM web chat widget. Any page embeds it with one tag (see README, "Chat web"):
 *   <script src="https://SERVIDOR/webchat/widget.js" data-title="…" defer></script>
 *
 * It loads its texts (strings.js) and the pinned socket.io client from the same server and draws
 * itself in a shadow root, so the host page's styles cannot break it, nor it theirs. Message text
 * is only ever inserted as text nodes: nothing a message contains is interpreted as HTML.
 *
 * The conversation id is a UUIDv4 made by the server and kept in localStorage. After a reload the
 * conversation comes back from the server (the Rasa tracker); the few lines the tracker does not
 * keep (what is said during a hand-off to an advisor) are kept in localStorage, and so are
 * messages typed while offline, which are sent, in order, once the connection is back.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || window.SOMWebchatStarted) return;
  window.SOMWebchatStarted = true;

  var settings = script.dataset;
  // By default the server is where this script came from (…/webchat/widget.js).
  var server = new URL(settings.serverUrl || new URL("../", script.src).href, document.baseURI);
  var base = server.origin + server.pathname.replace(/\/+$/, "");
  var config = {
    title: settings.title,
    initialPayload: settings.initialPayload || "/greet",
    color: settings.color,
    colorText: settings.colorText,
    logo: settings.logo || base + "/webchat/logo.svg",
    token: settings.token || null,
  };
  var MAX_INPUT = 1500; // the server cuts longer messages (bot.messaging.MAX_INPUT_CHARS)
  var MAX_LOCAL_LINES = 100;
  var ADVISOR_TYPING_MS = 25000; // as on WhatsApp: the indicator goes with the message or after 25 s
  var SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  var LIST_ITEM = /^\s*(?:•|-|\*)\s+/;
  // *bold* (as in WhatsApp), web addresses, www. addresses and e-mail addresses.
  var INLINE = /\*([^*\s](?:[^*\n]*[^*\s])?)\*|(https?:\/\/[^\s<>"]+|www\.[^\s<>"]+)|([\w.+-]+@[\w-]+(?:\.[\w-]+)+)/g;
  var TRAILING_PUNCTUATION = /[.,;:!?)\]]+$/;

  var S; // the texts, from strings.js
  var io; // the socket.io client, from the pinned build

  // --- storage that survives a reload (and a browser that refuses it) ----------------------

  var storage = {
    prefix: "som-webchat:" + base + ":",
    get: function (key, fallback) {
      try {
        var value = window.localStorage.getItem(this.prefix + key);
        return value === null ? fallback : JSON.parse(value);
      } catch (error) {
        return fallback;
      }
    },
    set: function (key, value) {
      try {
        window.localStorage.setItem(this.prefix + key, JSON.stringify(value));
      } catch (error) {
        /* private browsing or full storage: the widget still works, without memory */
      }
    },
  };

  var state = {
    sessionId: SESSION_ID.test(storage.get("session", "")) ? storage.get("session", "") : null,
    localLines: storage.get("local", []), // lines the server does not keep
    outbox: storage.get("outbox", []), // messages not yet acknowledged by the server
    inFlight: null,
    advisorTypingUntil: 0, // an advisor is writing (until their message arrives, or this time)
    online: false,
    drawn: false, // the conversation so far is on screen
    keptShown: 0, // lines on screen that the server keeps: fewer than it has means we missed some
    unread: 0,
    socket: null,
    ui: null,
    restoring: Promise.resolve(),
  };

  function uuid4() {
    var bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return String(values[key]); });
  }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = src;
      tag.async = true;
      tag.onload = resolve;
      tag.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(tag);
    });
  }

  // --- DOM helpers: text nodes only ------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function link(href, label) {
    var anchor = el("a", null, label);
    anchor.href = href;
    if (!href.startsWith("mailto:")) {
      anchor.target = "_blank";
      anchor.rel = "noopener noreferrer";
      anchor.append(el("span", "sr-only", " " + S.newTab));
    }
    return anchor;
  }

  /** Text with *bold*, addresses as links; everything else as plain text. */
  function inline(text, parent) {
    var last = 0;
    text.replace(INLINE, function (match, bold, url, email, offset) {
      parent.append(text.slice(last, offset));
      last = offset + match.length;
      if (bold !== undefined) {
        inline(bold, parent.appendChild(el("strong")));
      } else if (email !== undefined) {
        parent.append(link("mailto:" + email, email));
      } else {
        var trailing = (url.match(TRAILING_PUNCTUATION) || [""])[0];
        var address = url.slice(0, url.length - trailing.length);
        parent.append(link(address.startsWith("www.") ? "https://" + address : address, address), trailing);
      }
      return match;
    });
    parent.append(text.slice(last));
    return parent;
  }

  /** Paragraphs (blank lines), line breaks, and "• " or "- " lists. */
  function formatted(text) {
    var container = el("div", "bubble");
    text.split(/\n\s*\n/).forEach(function (block) {
      var list = null;
      var paragraph = null;
      block.split("\n").forEach(function (line) {
        if (LIST_ITEM.test(line)) {
          paragraph = null;
          list = list || container.appendChild(el("ul"));
          inline(line.replace(LIST_ITEM, ""), list.appendChild(el("li")));
        } else if (line.trim()) {
          list = null;
          if (paragraph) paragraph.append(el("br"));
          else paragraph = container.appendChild(el("p"));
          inline(line, paragraph);
        }
      });
    });
    return container;
  }

  // --- the interface -----------------------------------------------------------------------------

  function chatIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "launcher-icon");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
    svg.append(path);
    return svg;
  }

  function build() {
    var host = el("div");
    host.id = "som-webchat";
    if (config.color && CSS.supports("color", config.color)) host.style.setProperty("--som-color", config.color);
    if (config.colorText && CSS.supports("color", config.colorText)) host.style.setProperty("--som-color-text", config.colorText);
    host.hidden = true; // until the stylesheet is in
    var root = host.attachShadow({ mode: "open" });
    var style = el("link");
    style.rel = "stylesheet";
    style.href = base + "/webchat/widget.css";
    style.onload = function () { host.hidden = false; };

    var ui = {};
    ui.frame = el("div", "som");
    ui.launcher = el("button", "launcher");
    ui.launcher.type = "button";
    ui.launcher.setAttribute("aria-expanded", "false");
    ui.launcher.setAttribute("aria-controls", "som-panel");
    ui.badge = el("span", "badge");
    ui.badge.hidden = true;
    ui.badge.setAttribute("aria-hidden", "true");
    ui.launcher.append(chatIcon(), el("span", null, S.launcher), ui.badge);

    ui.panel = el("section", "panel");
    ui.panel.id = "som-panel";
    ui.panel.setAttribute("role", "dialog");
    ui.panel.setAttribute("aria-labelledby", "som-title");
    ui.panel.hidden = true;

    var header = el("div", "header");
    var logo = el("img", "logo");
    logo.src = config.logo;
    logo.alt = "";
    var heading = el("div", "heading");
    var title = el("h2", "title", config.title || S.title);
    title.id = "som-title";
    ui.status = el("p", "status", S.connecting);
    ui.status.setAttribute("role", "status");
    heading.append(title, el("p", "subtitle", S.subtitle));
    ui.restart = el("button", "restart", S.newConversation);
    ui.restart.type = "button";
    ui.close = el("button", "close");
    ui.close.type = "button";
    ui.close.setAttribute("aria-label", S.close);
    var cross = el("span", null, "×");
    cross.setAttribute("aria-hidden", "true");
    ui.close.append(cross);
    var top = el("div", "top");
    top.append(logo, heading, ui.close);
    var bar = el("div", "bar");
    bar.append(ui.status, ui.restart);
    header.append(top, bar);

    ui.log = el("div", "log");
    ui.log.setAttribute("role", "log");
    ui.log.setAttribute("aria-label", S.log);
    ui.log.tabIndex = 0;
    ui.typing = el("p", "typing");
    ui.typing.setAttribute("aria-hidden", "true");
    ui.typing.hidden = true;
    ui.typingText = el("span", "typing-text", S.typing);
    ui.typing.append(el("span", "dots"), ui.typingText);

    ui.form = el("form", "composer");
    var label = el("label", "sr-only", S.inputLabel);
    label.htmlFor = "som-input";
    ui.input = el("textarea");
    ui.input.id = "som-input";
    ui.input.rows = 1;
    ui.input.maxLength = MAX_INPUT;
    ui.input.placeholder = S.placeholder;
    ui.input.autocomplete = "off";
    ui.send = el("button", "send", S.send);
    ui.send.type = "submit";
    ui.form.append(label, ui.input, ui.send);

    ui.panel.append(header, ui.log, ui.typing, ui.form);
    ui.frame.append(ui.launcher, ui.panel);
    root.append(style, ui.frame);
    document.body.appendChild(host);
    ui.host = host;

    ui.launcher.addEventListener("click", function () { (ui.panel.hidden ? open : close)(); });
    ui.close.addEventListener("click", close);
    ui.restart.addEventListener("click", newConversation);
    ui.panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") close();
    });
    ui.form.addEventListener("submit", function (event) {
      event.preventDefault();
      // Typed text never reaches Rasa as a payload: "/restart" typed is read as words.
      var text = ui.input.value.trim().replace(/^\/+/, "").trim();
      if (!text) return;
      ui.input.value = "";
      fitInput();
      say(text, null);
    });
    ui.input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        ui.form.requestSubmit();
      }
    });
    ui.input.addEventListener("input", fitInput);
    if (window.visualViewport) {
      window.visualViewport.addEventListener("resize", fitViewport);
      window.visualViewport.addEventListener("scroll", fitViewport);
    }
    return ui;
  }

  function fitInput() {
    var input = state.ui.input;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
  }

  /** On phones the panel is as tall as what the on-screen keyboard leaves visible. */
  function fitViewport() {
    var viewport = window.visualViewport;
    state.ui.host.style.setProperty("--som-viewport-height", viewport.height + "px");
    state.ui.host.style.setProperty("--som-viewport-top", viewport.offsetTop + "px");
  }

  function open() {
    var ui = state.ui;
    ui.panel.hidden = false;
    ui.frame.classList.add("open");
    ui.launcher.setAttribute("aria-expanded", "true");
    state.unread = 0;
    showUnread();
    if (window.visualViewport) fitViewport();
    scrollToEnd();
    ui.input.focus();
    connect();
  }

  function close() {
    var ui = state.ui;
    ui.panel.hidden = true;
    ui.frame.classList.remove("open");
    ui.launcher.setAttribute("aria-expanded", "false");
    ui.launcher.focus();
  }

  function showUnread() {
    var ui = state.ui;
    ui.badge.hidden = state.unread === 0;
    ui.badge.textContent = String(state.unread);
    if (state.unread) ui.launcher.setAttribute("aria-label", fill(S.launcherUnread, { count: state.unread }));
    else ui.launcher.removeAttribute("aria-label");
  }

  function setStatus(name) {
    state.ui.status.textContent = S[name];
    state.ui.frame.dataset.connection = name;
  }

  function scrollToEnd() {
    state.ui.log.scrollTop = state.ui.log.scrollHeight;
  }

  function who(line) {
    if (line.role === "user") return S.you;
    return line.advisor ? fill(S.advisor, { name: line.advisor }) : S.assistant;
  }

  function lineNode(line) {
    var node = el("div", "msg msg-" + line.role + (line.advisor ? " msg-advisor" : ""));
    node.append(el("p", line.advisor ? "who" : "who sr-only", who(line)), formatted(line.text));
    return node;
  }

  /** Quick replies belong to the latest message only: older ones are gone once answered. */
  function dropReplies() {
    state.ui.log.querySelectorAll(".replies").forEach(function (group) { group.remove(); });
  }

  function addReplies(node, buttons) {
    dropReplies();
    var group = el("div", "replies");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", S.replies);
    buttons.forEach(function (button) {
      var choice = el("button", "reply", button.title);
      choice.type = "button";
      choice.addEventListener("click", function () {
        say(button.payload, button.title);
        state.ui.input.focus();
      });
      group.append(choice);
    });
    node.append(group);
  }

  function append(line) {
    var node = lineNode(line);
    state.ui.log.append(node);
    if (line.buttons && line.buttons.length) addReplies(node, line.buttons);
    scrollToEnd();
    return node;
  }

  function appendPending(item) {
    item.node = append({ role: "user", text: item.shown });
    item.node.append(el("p", "pending-note", S.pending));
    markPending();
  }

  function markPending() {
    state.outbox.forEach(function (item) {
      if (item.node) item.node.classList.toggle("pending", !state.online);
    });
  }

  function showTyping() {
    var advisorWriting = Date.now() < state.advisorTypingUntil;
    state.ui.typing.hidden = !(state.online && (state.inFlight || advisorWriting));
    state.ui.typingText.textContent = state.inFlight ? S.typing : S.advisorTyping;
  }

  function advisorTyping() {
    state.advisorTypingUntil = Date.now() + ADVISOR_TYPING_MS;
    showTyping();
    window.setTimeout(showTyping, ADVISOR_TYPING_MS + 50);
  }

  // --- history --------------------------------------------------------------------------------

  function keepLocally(line) {
    var key = line.role + "|" + line.ts + "|" + line.text;
    if (state.localLines.some(function (l) { return l.role + "|" + l.ts + "|" + l.text === key; })) return;
    state.localLines = state.localLines.concat([line]).slice(-MAX_LOCAL_LINES);
    storage.set("local", state.localLines);
  }

  function fetchHistory(sessionId) {
    var headers = config.token ? { Authorization: "Bearer " + config.token } : {};
    return fetch(base + "/webhooks/socketio/history/" + sessionId, { headers: headers, cache: "no-store" })
      .then(function (reply) {
        if (!reply.ok) throw new Error("history: HTTP " + reply.status);
        return reply.json();
      })
      .then(function (body) { return body.messages; });
  }

  /** Draw the conversation again from the server's lines and ours, in the order they were said. */
  function render(serverLines) {
    var ui = state.ui;
    ui.log.setAttribute("aria-busy", "true");
    ui.log.replaceChildren();
    var lines = serverLines.concat(state.localLines).sort(function (a, b) { return a.ts - b.ts; });
    lines.forEach(function (line) { ui.log.append(lineNode(line)); });
    var last = lines[lines.length - 1];
    if (last && last.role === "bot" && last.buttons && last.buttons.length) {
      addReplies(ui.log.lastElementChild, last.buttons);
    }
    state.keptShown = serverLines.length;
    state.drawn = true;
    state.outbox.forEach(function (item) { if (!item.hidden) appendPending(item); });
    ui.log.removeAttribute("aria-busy");
    scrollToEnd();
  }

  /** After a reload or a lost connection: redraw if the server kept messages we have not shown. */
  function catchUp() {
    var sessionId = state.sessionId;
    state.restoring = state.restoring.then(function () {
      return fetchHistory(sessionId).then(
        function (serverLines) {
          var missed = !state.drawn || serverLines.length > state.keptShown;
          if (sessionId === state.sessionId && missed) render(serverLines);
        },
        function (error) {
          console.warn("SOM webchat:", error.message);
          if (!state.drawn) render([]);
        }
      );
    });
    return state.restoring;
  }

  // --- talking to the server --------------------------------------------------------------------

  function connect() {
    if (state.socket) return;
    var socket = io(server.origin, {
      path: server.pathname.replace(/\/+$/, "") + "/socket.io",
      auth: config.token ? { token: config.token } : undefined,
      // A WebSocket stays on one server process; long-polling (only if WebSockets are blocked)
      // needs sticky sessions behind a load balancer.
      transports: ["websocket", "polling"],
      tryAllTransports: true,
    });
    state.socket = socket;
    socket.on("connect", function () {
      socket.emit("session_request", { session_id: state.sessionId });
    });
    socket.on("session_confirm", confirmSession);
    socket.on("bot_uttered", receive);
    socket.on("advisor_typing", advisorTyping);
    socket.on("disconnect", function () {
      state.online = false;
      state.inFlight = null; // sent again once back: the server ignores a message it already has
      setStatus("offline");
      markPending();
      showTyping();
    });
    socket.on("connect_error", function () {
      setStatus(socket.active ? "offline" : "refused");
    });
  }

  function confirmSession(sessionId) {
    var fresh = sessionId !== state.sessionId;
    if (fresh) startAfresh(sessionId);
    state.online = true;
    setStatus("online");
    markPending();
    if (fresh) queue({ id: uuid4(), message: config.initialPayload, hidden: true }, true);
    else catchUp();
    pump();
  }

  function startAfresh(sessionId) {
    state.sessionId = sessionId;
    state.localLines = [];
    state.outbox = state.outbox.filter(function (item) { return !item.hidden; });
    state.keptShown = 0;
    storage.set("session", sessionId);
    storage.set("local", []);
    storage.set("outbox", state.outbox.map(stored));
    render([]);
  }

  function newConversation() {
    state.sessionId = null;
    state.online = false; // what is typed now waits for the new session
    state.outbox = [];
    state.inFlight = null;
    storage.set("outbox", []);
    state.ui.log.replaceChildren();
    state.ui.status.textContent = S.newConversationDone;
    if (state.socket && state.socket.connected) state.socket.emit("session_request", { session_id: null });
    else connect();
    state.ui.input.focus();
  }

  function receive(message) {
    var meta = message.metadata || {};
    var line = {
      role: "bot",
      text: String(message.text || ""),
      buttons: (message.quick_replies || []).map(function (b) { return { title: String(b.title), payload: String(b.payload) }; }),
      advisor: meta.advisor || null,
      ts: Number(meta.ts) || Date.now() / 1000,
    };
    if (!line.text) return;
    state.advisorTypingUntil = 0;
    showTyping();
    append(line);
    if (meta.kept === false) keepLocally(line);
    else state.keptShown += 1;
    if (state.ui.panel.hidden) {
      state.unread += 1;
      showUnread();
    }
  }

  /** What the person sends: typed text, or a button's payload shown as its title. */
  function say(message, title) {
    dropReplies();
    var item = { id: uuid4(), message: message, title: title, shown: title || message };
    queue(item);
    appendPending(item);
    pump();
  }

  function stored(item) {
    return { id: item.id, message: item.message, title: item.title, shown: item.shown, hidden: item.hidden };
  }

  function queue(item, first) {
    if (first) state.outbox.unshift(item);
    else state.outbox.push(item);
    storage.set("outbox", state.outbox.map(stored));
  }

  /** One message at a time, in order, each acknowledged once the assistant has answered it. */
  function pump() {
    if (!state.online || state.inFlight || !state.outbox.length) return showTyping();
    var item = state.outbox[0];
    state.inFlight = item;
    showTyping();
    var data = { message: item.message, id: item.id, session_id: state.sessionId };
    if (item.title) data.title = item.title;
    state.socket.emit("user_uttered", data, function (ack) {
      var index = state.outbox.indexOf(item);
      if (index === -1) return; // acknowledged already, before a reconnection
      state.outbox.splice(index, 1);
      storage.set("outbox", state.outbox.map(stored));
      if (state.inFlight === item) state.inFlight = null;
      delivered(item, ack || {});
      pump();
    });
  }

  function delivered(item, ack) {
    if (item.node) {
      item.node.classList.remove("pending");
      var note = item.node.querySelector(".pending-note");
      if (note) note.remove();
    }
    if (item.hidden || ack.error) return;
    if (ack.kept === false) keepLocally({ role: "user", text: item.shown, ts: ack.ts });
    else state.keptShown += 1;
  }

  // --- start ------------------------------------------------------------------------------------

  function start() {
    state.ui = build();
    window.addEventListener("offline", function () {
      if (state.socket) state.socket.disconnect();
    });
    window.addEventListener("online", function () {
      if (state.socket && !state.socket.connected) {
        setStatus("connecting");
        state.socket.connect();
      }
    });
    if (state.sessionId) {
      catchUp();
      connect();
    }
  }

  var previousIo = window.io;
  Promise.all([loadScript(base + "/webchat/strings.js"), loadScript(base + "/webchat/socket.io.min.js")])
    .then(function () {
      S = window.SOMWebchatStrings;
      io = window.io;
      if (previousIo === undefined) delete window.io; // leave the host page's globals as they were
      else window.io = previousIo;
      if (document.body) start();
      else document.addEventListener("DOMContentLoaded", start);
    })
    .catch(function (error) {
      console.error("SOM webchat:", error.message);
    });
})();
